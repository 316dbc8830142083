//! The per-VM verified-token cache (`jwt_cache_size`).
//!
//! Keyed by SHA-256 of the token, it holds what signature verification
//! produced until the token expires or the provider's key set changes. A
//! hit skips only the signature: time, audience and, above all, the
//! certificate binding are checked again on every request, against that
//! request's connection.

use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::config::MAX_CLOCK_SKEW;
use crate::jwt::VerifiedToken;

pub type TokenDigest = [u8; 32];

#[derive(Debug)]
struct Entry {
    token: Arc<VerifiedToken>,
    generation: u64,
}

/// Values by token digest: at most `capacity` of them, the oldest
/// insertion evicted first. Capacity 0 keeps nothing.
#[derive(Debug)]
pub struct DigestMap<V> {
    capacity: usize,
    map: HashMap<TokenDigest, V>,
    order: VecDeque<TokenDigest>,
}

impl<V> DigestMap<V> {
    pub fn new(capacity: usize) -> DigestMap<V> {
        DigestMap {
            capacity,
            map: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    pub fn get(&self, digest: &TokenDigest) -> Option<&V> {
        self.map.get(digest)
    }

    pub fn remove(&mut self, digest: &TokenDigest) {
        if self.map.remove(digest).is_some() {
            self.order.retain(|d| d != digest);
        }
    }

    /// Inserts or replaces; a new key may evict the oldest ones.
    pub fn insert(&mut self, digest: TokenDigest, value: V) {
        if self.capacity == 0 {
            return;
        }
        if let Some(v) = self.map.get_mut(&digest) {
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
        self.order.push_back(digest);
        self.map.insert(digest, value);
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// Verified tokens, by digest.
#[derive(Debug)]
pub struct TokenCache {
    entries: DigestMap<Entry>,
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
            entries: DigestMap::new(capacity),
            hits: 0,
            misses: 0,
        }
    }

    pub fn digest(token: &str) -> TokenDigest {
        Sha256::digest(token.as_bytes()).into()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// A verification made with key generation `generation` of its provider.
    pub fn get(
        &mut self,
        digest: &TokenDigest,
        generation_of: impl Fn(usize) -> u64,
        now: i64,
    ) -> Option<Arc<VerifiedToken>> {
        if self.entries.capacity == 0 {
            return None;
        }
        let fresh = self.entries.get(digest).map(|e| {
            let expired = e
                .token
                .expires_at
                .is_some_and(|exp| i128::from(now) >= i128::from(exp) + i128::from(MAX_CLOCK_SKEW));
            (!expired && e.generation == generation_of(e.token.provider))
                .then(|| Arc::clone(&e.token))
        });
        match fresh {
            Some(Some(token)) => {
                self.hits += 1;
                Some(token)
            }
            Some(None) => {
                self.entries.remove(digest);
                self.misses += 1;
                None
            }
            None => {
                self.misses += 1;
                None
            }
        }
    }

    pub fn insert(&mut self, digest: TokenDigest, token: Arc<VerifiedToken>, generation: u64) {
        self.entries.insert(digest, Entry { token, generation });
    }
}
