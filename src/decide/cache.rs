//! The per-VM verified-token cache (`jwt_cache_size`), and the cache that
//! the runtimes of one configuration on several threads may share behind it
//! ([`SharedTokenCache`], the native build's).
//!
//! It holds what signature verification produced until the token expires or
//! the provider's key set changes. A hit skips only the signature: time,
//! audience and, above all, the certificate binding are checked again on
//! every request, against that request's connection.
//!
//! Keyed by the token itself, as Envoy's `jwt_authn` keys its cache: a hit
//! means these exact bytes were verified before. Entries are found by a
//! keyed mix (random per-VM seed) of the token's length and tail, and the
//! whole token is compared on a hit, so no hash collision can ever stand in
//! for a verification; and only verified tokens are ever inserted, so
//! nobody who lacks the issuer's key can choose the slots the map holds.
//! A keyed mix rather than SHA-256 because wasm has no SHA instructions
//! and a cached request would spend most of its time hashing. The
//! introspection cache keys by SHA-256 ([`token_digest`]).

use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher, RandomState};
use std::sync::{Arc, Mutex};

use crate::decide::claims::{Audiences, check_cached_claims};
use crate::decide::keys::KeyRing;
use crate::decide::token::{Rejection, VerifiedToken};
use crate::decide::verify::verify;
use crate::policy::{MAX_CLOCK_SKEW, Policy, ProviderId};

pub type TokenDigest = [u8; 32];

/// SHA-256 of a token, the key of the introspection cache.
pub fn token_digest(token: &str) -> TokenDigest {
    Sha256::digest(token.as_bytes()).into()
}

/// A map of at most `capacity` entries; the oldest insertion goes first.
#[derive(Debug)]
pub struct BoundedMap<K, V, S = RandomState> {
    capacity: usize,
    map: HashMap<K, V, S>,
    order: VecDeque<K>,
}

impl<K: Hash + Eq + Copy, V, S: BuildHasher + Default> BoundedMap<K, V, S> {
    pub fn new(capacity: usize) -> BoundedMap<K, V, S> {
        BoundedMap {
            capacity,
            map: HashMap::default(),
            order: VecDeque::new(),
        }
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        self.map.get(key)
    }

    pub fn remove(&mut self, key: &K) {
        if self.map.remove(key).is_some() {
            self.order.retain(|k| k != key);
        }
    }

    /// Inserts or replaces `key`'s value; a no-op at capacity 0.
    pub fn insert(&mut self, key: K, value: V) {
        if self.capacity == 0 {
            return;
        }
        if let Some(v) = self.map.get_mut(&key) {
            *v = value;
            return;
        }
        while self.map.len() >= self.capacity {
            match self.order.pop_front() {
                Some(old) => {
                    self.map.remove(&old);
                }
                None => break,
            }
        }
        self.order.push_back(key);
        self.map.insert(key, value);
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[derive(Debug)]
struct Entry {
    /// The token, compared in full on every hit.
    key: Box<str>,
    token: Arc<VerifiedToken>,
    generation: u64,
}

/// The map's hasher for slots, which are already keyed mixes: the slot
/// itself, not hashed a second time.
#[derive(Debug, Default)]
struct SlotHasher(u64);

impl Hasher for SlotHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    /// Only `u64` slots are hashed; any other input is still folded in.
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = mix(self.0 ^ u64::from(b), 0);
        }
    }

    fn write_u64(&mut self, slot: u64) {
        self.0 = slot;
    }
}

#[derive(Debug)]
pub struct TokenCache {
    /// Drawn at random when the VM starts ([`TokenCache::slot`]).
    seed: u64,
    /// By [`TokenCache::slot`]: one entry per slot.
    entries: BoundedMap<u64, Entry, BuildHasherDefault<SlotHasher>>,
    /// Behind this cache: the one shared with the other threads' runtimes.
    shared: Option<Arc<SharedTokenCache>>,
    pub hits: u64,
    pub misses: u64,
}

impl Default for TokenCache {
    fn default() -> Self {
        TokenCache::new(0)
    }
}

impl TokenCache {
    pub fn new(capacity: usize) -> TokenCache {
        TokenCache {
            // std's per-process random keys (the host's `random_get` in wasm).
            seed: RandomState::new().hash_one(0x6365_7274_626f_756e_u64),
            entries: BoundedMap::new(capacity),
            shared: None,
            hits: 0,
            misses: 0,
        }
    }

    /// Puts `shared` behind this cache: a miss here looks there (and keeps
    /// what it finds), and what is inserted here goes there too.
    pub fn share(&mut self, shared: Arc<SharedTokenCache>) {
        self.shared = Some(shared);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether exactly `token` is filed: this VM verified these bytes (its
    /// freshness is [`TokenCache::get`]'s to judge).
    pub fn contains(&self, token: &str) -> bool {
        self.entries.capacity > 0
            && self
                .entries
                .get(&self.slot(token))
                .is_some_and(|e| same_bytes(e.key.as_bytes(), token.as_bytes()))
    }

    /// The verification of exactly `token`, if it is cached, has not
    /// expired (with the largest allowed skew; the caller checks time with
    /// the provider's own) and its provider's keys are still those of
    /// `generation_of`. A stale entry is dropped.
    pub fn get(
        &mut self,
        token: &str,
        generation_of: impl Fn(ProviderId) -> u64,
        now: i64,
    ) -> Option<Arc<VerifiedToken>> {
        if self.entries.capacity == 0 {
            return None;
        }
        let found = self.get_local(token, &generation_of, now);
        let found = match (found, &self.shared) {
            (None, Some(shared)) => {
                let hit = shared.get(token, &generation_of, now);
                if let Some(t) = &hit {
                    self.insert_local(token, Arc::clone(t), generation_of(t.provider));
                }
                hit
            }
            (found, _) => found,
        };
        if found.is_some() {
            self.hits += 1;
        } else {
            self.misses += 1;
        }
        found
    }

    /// This cache's entry for `token`, if it is still good; a stale one is
    /// dropped.
    fn get_local(
        &mut self,
        token: &str,
        generation_of: impl Fn(ProviderId) -> u64,
        now: i64,
    ) -> Option<Arc<VerifiedToken>> {
        let slot = self.slot(token);
        let fresh = self
            .entries
            .get(&slot)
            .filter(|e| same_bytes(e.key.as_bytes(), token.as_bytes()))
            .map(|e| {
                let expired = e.token.expires_at().is_some_and(|exp| {
                    i128::from(now) >= i128::from(exp) + i128::from(MAX_CLOCK_SKEW)
                });
                (!expired && e.generation == generation_of(e.token.provider))
                    .then(|| Arc::clone(&e.token))
            });
        match fresh {
            Some(Some(token)) => Some(token),
            Some(None) => {
                self.entries.remove(&slot);
                None
            }
            None => None,
        }
    }

    /// The slot a token is filed under: a mix of the VM's seed, its length
    /// and its last 32 bytes. A JWS ends in its signature, which differs
    /// between any two tokens an issuer signs and which nobody without the
    /// issuer's key can choose, so this spreads entries as well as hashing
    /// the whole token would, for four multiplies. Correctness does not
    /// rest on it: the whole token is compared on a hit, and only verified
    /// tokens are inserted, so two tokens with the same slot only evict
    /// each other.
    fn slot(&self, token: &str) -> u64 {
        let bytes = token.as_bytes();
        let tail = bytes.get(bytes.len().saturating_sub(32)..).unwrap_or(bytes);
        let mut words = [0u8; 32];
        if let Some(w) = words.get_mut(..tail.len()) {
            w.copy_from_slice(tail);
        }
        let word = |i: usize| {
            words
                .get(i * 8..i * 8 + 8)
                .and_then(|w| <[u8; 8]>::try_from(w).ok())
                .map_or(0, u64::from_le_bytes)
        };
        let len = bytes.len() as u64;
        let a = mix(word(0) ^ self.seed, word(1) ^ len);
        let b = mix(word(2) ^ self.seed.rotate_left(32), word(3) ^ !len);
        mix(a, b ^ self.seed)
    }

    /// Files `token`'s verification, made under key set `generation`.
    pub fn insert(&mut self, token: &str, verified: Arc<VerifiedToken>, generation: u64) {
        if self.entries.capacity == 0 {
            return;
        }
        if let Some(shared) = &self.shared {
            shared.insert(token, Arc::clone(&verified), generation);
        }
        self.insert_local(token, verified, generation);
    }

    fn insert_local(&mut self, token: &str, verified: Arc<VerifiedToken>, generation: u64) {
        self.entries.insert(
            self.slot(token),
            Entry {
                key: token.into(),
                token: verified,
                generation,
            },
        );
    }
}

/// `token` verified with `keys` against the provider its `iss` names. A
/// verification cached for the same key set skips the signature; the
/// claims are always checked against `now` and `audiences`. A new
/// verification is filed. The size cap is [`verify`]'s: a filed token
/// passed it when it was verified.
/// Verified tokens shared by the runtimes of one configuration on all of
/// Envoy's worker threads (the native build; a wasm VM has no memory to
/// share). A token verified on one worker is a hit on the others, so each
/// token is verified once per Envoy rather than once per worker; each
/// worker still answers its own hot tokens from its own cache, without a
/// lock. Sharded, a lock per shard.
#[derive(Debug)]
pub struct SharedTokenCache {
    shards: Box<[Mutex<TokenCache>]>,
    /// Picks a token's shard (std's random keys).
    pick: RandomState,
}

/// Shards of a [`SharedTokenCache`]: enough that workers seldom meet on a
/// lock.
const SHARDS: usize = 16;

impl SharedTokenCache {
    /// A cache of about `capacity` tokens in all.
    pub fn new(capacity: usize) -> SharedTokenCache {
        let per_shard = capacity.div_ceil(SHARDS);
        SharedTokenCache {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(TokenCache::new(per_shard)))
                .collect(),
            pick: RandomState::new(),
        }
    }

    fn shard(&self, token: &str) -> Option<&Mutex<TokenCache>> {
        let bytes = token.as_bytes();
        let tail = bytes.get(bytes.len().saturating_sub(16)..).unwrap_or(bytes);
        let i = usize::try_from(self.pick.hash_one(tail)).unwrap_or(0) % SHARDS;
        self.shards.get(i)
    }

    fn get(
        &self,
        token: &str,
        generation_of: impl Fn(ProviderId) -> u64,
        now: i64,
    ) -> Option<Arc<VerifiedToken>> {
        let mut shard = self.shard(token)?.lock().ok()?;
        shard.get_local(token, generation_of, now)
    }

    fn insert(&self, token: &str, verified: Arc<VerifiedToken>, generation: u64) {
        if let Some(Ok(mut shard)) = self.shard(token).map(Mutex::lock) {
            shard.insert_local(token, verified, generation);
        }
    }
}

pub fn verify_cached(
    policy: &Policy,
    keys: &KeyRing,
    cache: &mut TokenCache,
    token: &str,
    now: i64,
    audiences: Audiences<'_>,
) -> Result<Arc<VerifiedToken>, Rejection> {
    if let Some(hit) = cache.get(token, |p| keys.generation(p), now) {
        let id = hit.provider;
        let provider = policy.provider(id);
        check_cached_claims(provider, audiences.of(id, provider), &hit, now)
            .map_err(Rejection::routed(id))?;
        return Ok(hit);
    }
    let verified = Arc::new(verify(policy, keys, token, now, audiences)?);
    cache.insert(
        token,
        Arc::clone(&verified),
        keys.generation(verified.provider),
    );
    Ok(verified)
}

/// The folded 128-bit product of `a` and `b` (with a constant, so neither
/// zero nor equal inputs collapse): the mixing step of wyhash-style hashes.
fn mix(a: u64, b: u64) -> u64 {
    let p = u128::from(a ^ 0xa076_1d64_78bd_642f) * u128::from(b ^ 0xe703_7ed1_a0b4_28db);
    (p as u64) ^ ((p >> 64) as u64)
}

/// `a == b`, as fast as the target allows: every cache hit compares a
/// whole token. Natively `memcmp` is vectorised; in wasm it is a byte loop.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if cfg!(target_arch = "wasm32") {
        same_words(a, b)
    } else {
        a == b
    }
}

/// `a == b`, eight bytes at a time.
fn same_words(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (wa, wb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tails_equal = wa.remainder() == wb.remainder();
    tails_equal
        && wa.zip(wb).all(|(x, y)| {
            let word = |c: &[u8]| <[u8; 8]>::try_from(c).ok().map(u64::from_ne_bytes);
            word(x) == word(y)
        })
}

#[cfg(test)]
mod tests {
    use super::{TokenCache, same_bytes, same_words};

    #[test]
    fn slots_spread_over_tails_and_lengths() {
        let cache = TokenCache::new(8);
        let mut seen = std::collections::HashSet::new();
        for i in 0..2000u32 {
            // Same head, tails differing in one position; and short tokens.
            let long = format!("eyJhbGciOiJFUzI1NiJ9.e30.{i:0>40}");
            let short = format!("{i}");
            assert!(seen.insert(cache.slot(&long)), "collision at {i}");
            assert!(seen.insert(cache.slot(&short)), "collision at short {i}");
        }
        // A token and the same token one byte longer differ.
        assert_ne!(cache.slot("abc"), cache.slot("abc\0"));
        // The slot is a function of the token (per VM seed).
        assert_eq!(cache.slot("a.b.c"), cache.slot("a.b.c"));
        assert_ne!(TokenCache::new(8).seed, 0);
    }

    #[test]
    fn same_bytes_compares_every_byte() {
        for len in 0..40usize {
            let a: Vec<u8> = (0..len).map(|i| i as u8).collect();
            for same in [same_bytes, same_words] {
                assert!(same(&a, &a.clone()));
                for i in 0..len {
                    let mut b = a.clone();
                    b[i] ^= 0x80;
                    assert!(!same(&a, &b), "len {len}, byte {i}");
                }
                assert!(!same(&a, &a[..len.saturating_sub(1)]) || len == 0);
            }
        }
    }
}
