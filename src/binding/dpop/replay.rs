//! The replay store (RFC 9449 §11.1): the proofs accepted within the
//! window, so that a proof is accepted once.
//!
//! An entry is a [`ReplayKey`] (128 bits of SHA-256 over the proof key's
//! thumbprint and the `jti`, so clients cannot collide with each other's
//! `jti`s) and the proof's `iat`. It is kept until `iat + window` has
//! passed, `window` being `max_age + clock skew`: from then on the `iat`
//! check refuses the proof anyway.
//!
//! # At the bound
//!
//! The store holds at most `capacity` entries. When an insertion would
//! exceed it, the entry that is smallest in `(iat, key)` order (the one
//! closest to expiry) is evicted and becomes the *horizon* (or the new
//! proof itself, if it is the smallest): the proof is still accepted. From
//! then on every proof whose `(iat, key)` is at or below the horizon is
//! refused with [`DpopError::BelowReplayHorizon`]. So:
//!
//! * a replay within the window is never accepted: every proof accepted
//!   and not yet expired is either in the store (refused as
//!   [`DpopError::Replayed`]) or at or below the horizon (refused as
//!   [`DpopError::BelowReplayHorizon`]);
//! * a new proof is never refused for lack of room: it is inserted, and
//!   the oldest entry leaves;
//! * what pressure costs is the window: under a flood of more than
//!   `capacity` proofs per window, the accepted window shrinks from
//!   `max_age + skew` to the age of the oldest entry held. A valid proof is
//!   refused only if it is older than that, i.e. if `capacity` proofs at
//!   least as recent as it were accepted since. Clients sign right before
//!   sending, so with `capacity` above the peak number of proofs per second
//!   the shrunken window still spans at least a second.
//!
//! The horizon is dropped once it falls out of the window.
//!
//! The store is pure (time is an argument) and serialises to a compact,
//! canonical byte string ([`ReplayStore::encode`], [`ReplayStore::decode`]),
//! so that a host can share one store between workers with
//! compare-and-swap (read, decode, check and insert, encode, swap; retry on
//! a conflict), or keep stores apart and [`ReplayStore::merge`] them.

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};

use super::error::DpopError;
use crate::binding::Thumbprint;

/// The identity of a proof in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReplayKey(pub [u8; 16]);

impl ReplayKey {
    /// The first 128 bits of `SHA-256(jkt || jti)`.
    pub fn new(jkt: &Thumbprint, jti: &str) -> ReplayKey {
        let digest = Sha256::new()
            .chain_update(jkt.0)
            .chain_update(jti.as_bytes())
            .finalize();
        let mut key = [0u8; 16];
        for (k, d) in key.iter_mut().zip(digest.iter()) {
            *k = *d;
        }
        ReplayKey(key)
    }
}

/// An entry, in eviction order: by `iat`, then key.
type Entry = (i64, ReplayKey);

/// Format tag of [`ReplayStore::encode`].
const MAGIC: &[u8; 4] = b"CBR1";
/// Bytes of an encoded entry: `iat` (i64 big-endian), then the key.
const ENTRY_BYTES: usize = 8 + 16;
/// Encoded horizon `iat` meaning "no horizon".
const NO_HORIZON: i64 = i64::MIN;

/// The proofs seen within the window, at most `capacity` of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayStore {
    capacity: usize,
    window_secs: u64,
    /// Every entry, in eviction order.
    by_age: BTreeSet<Entry>,
    /// The same entries by key: the `iat` of each.
    by_key: BTreeMap<ReplayKey, i64>,
    /// The largest entry evicted while still in the window.
    horizon: Option<Entry>,
}

impl ReplayStore {
    /// An empty store of at most `capacity` entries (at least 1), each kept
    /// `window_secs` after its `iat` (`max_age + clock skew`).
    pub fn new(capacity: usize, window_secs: u64) -> ReplayStore {
        ReplayStore {
            capacity: capacity.max(1),
            window_secs,
            by_age: BTreeSet::new(),
            by_key: BTreeMap::new(),
            horizon: None,
        }
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The `iat` at or below which proofs are refused for want of room
    /// (the `key` order breaks ties within that second), if any.
    pub fn horizon(&self) -> Option<i64> {
        self.horizon.map(|(iat, _)| iat)
    }

    /// Whether an entry of `iat` is past the window at `now`.
    fn expired(&self, iat: i64, now: i64) -> bool {
        iat.saturating_add_unsigned(self.window_secs) < now
    }

    /// Drops the entries, and the horizon, that the window has left.
    pub fn purge(&mut self, now: i64) {
        while let Some(&(iat, key)) = self.by_age.first() {
            if !self.expired(iat, now) {
                break;
            }
            self.by_age.pop_first();
            self.by_key.remove(&key);
        }
        if self.horizon.is_some_and(|(iat, _)| self.expired(iat, now)) {
            self.horizon = None;
        }
    }

    /// Records the proof `key` issued at `iat`, or refuses it: seen before
    /// ([`DpopError::Replayed`]), at or below the horizon
    /// ([`DpopError::BelowReplayHorizon`]), or outside the window
    /// ([`DpopError::Stale`], [`DpopError::IssuedInFuture`]; the proof's
    /// `iat` check refuses those first).
    pub fn check_and_insert(
        &mut self,
        key: ReplayKey,
        iat: i64,
        now: i64,
    ) -> Result<(), DpopError> {
        self.purge(now);
        if self.expired(iat, now) {
            return Err(DpopError::Stale);
        }
        // An entry must leave the store within the window.
        if iat > now.saturating_add_unsigned(self.window_secs) {
            return Err(DpopError::IssuedInFuture);
        }
        if self.by_key.contains_key(&key) {
            return Err(DpopError::Replayed);
        }
        if self.horizon.is_some_and(|h| (iat, key) <= h) {
            return Err(DpopError::BelowReplayHorizon);
        }
        self.insert((iat, key));
        Ok(())
    }

    /// Inserts an entry, evicting the smallest beyond capacity.
    fn insert(&mut self, entry: Entry) {
        let (iat, key) = entry;
        if let Some(old) = self.by_key.insert(key, iat) {
            // The same key seen at two times (only by a merge): keep the
            // later, which expires last.
            self.by_age.remove(&(old, key));
            let latest = old.max(iat);
            self.by_key.insert(key, latest);
            self.by_age.insert((latest, key));
        } else {
            self.by_age.insert(entry);
        }
        while self.by_age.len() > self.capacity {
            let Some(evicted) = self.by_age.pop_first() else {
                break;
            };
            self.by_key.remove(&evicted.1);
            self.raise_horizon(evicted);
        }
    }

    fn raise_horizon(&mut self, entry: Entry) {
        if self.horizon.is_none_or(|h| entry > h) {
            self.horizon = Some(entry);
        }
    }

    /// Adds `other`'s entries and horizon to this store (capacity and
    /// window stay this store's). The result refuses every proof that
    /// either store would refuse as seen.
    pub fn merge(&mut self, other: &ReplayStore, now: i64) {
        if let Some(h) = other.horizon {
            self.raise_horizon(h);
        }
        self.drop_below_horizon();
        for &entry in &other.by_age {
            if self.horizon.is_none_or(|h| entry > h) {
                self.insert(entry);
            }
        }
        self.purge(now);
    }

    /// Removes the entries at or below the horizon: it refuses them already.
    fn drop_below_horizon(&mut self) {
        while let Some(&first) = self.by_age.first() {
            if self.horizon.is_none_or(|h| first > h) {
                break;
            }
            self.by_age.pop_first();
            self.by_key.remove(&first.1);
        }
    }

    /// `"CBR1"`, the horizon (`iat` as i64 big-endian, `i64::MIN` for
    /// none, then its key), the number of entries (u32 big-endian), then
    /// each entry (`iat`, key) in eviction order: 32 bytes, then 24 per
    /// entry.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + ENTRY_BYTES + 4 + self.len() * ENTRY_BYTES);
        out.extend_from_slice(MAGIC);
        let (h_iat, h_key) = self.horizon.unwrap_or((NO_HORIZON, ReplayKey([0; 16])));
        out.extend_from_slice(&h_iat.to_be_bytes());
        out.extend_from_slice(&h_key.0);
        let count = u32::try_from(self.by_age.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&count.to_be_bytes());
        for (iat, key) in self.by_age.iter().take(count as usize) {
            out.extend_from_slice(&iat.to_be_bytes());
            out.extend_from_slice(&key.0);
        }
        out
    }

    /// A store of `capacity` and `window_secs` holding what `bytes` (from
    /// [`ReplayStore::encode`]) holds, expired entries dropped and, if
    /// there are more than `capacity`, the smallest evicted. `None` if
    /// `bytes` is not such an encoding.
    pub fn decode(
        bytes: &[u8],
        capacity: usize,
        window_secs: u64,
        now: i64,
    ) -> Option<ReplayStore> {
        let rest = bytes.strip_prefix(MAGIC.as_slice())?;
        let (horizon, rest) = rest.split_at_checked(ENTRY_BYTES)?;
        let (count, rest) = rest.split_at_checked(4)?;
        let count = usize::try_from(u32::from_be_bytes(count.try_into().ok()?)).ok()?;
        if rest.len() != count.checked_mul(ENTRY_BYTES)? {
            return None;
        }
        let mut store = ReplayStore::new(capacity, window_secs);
        let horizon = entry(horizon)?;
        if horizon.0 != NO_HORIZON {
            store.horizon = Some(horizon);
        }
        for chunk in rest.chunks_exact(ENTRY_BYTES) {
            store.insert(entry(chunk)?);
        }
        store.drop_below_horizon();
        store.purge(now);
        Some(store)
    }
}

fn entry(bytes: &[u8]) -> Option<Entry> {
    let (iat, key) = bytes.split_at_checked(8)?;
    Some((
        i64::from_be_bytes(iat.try_into().ok()?),
        ReplayKey(key.try_into().ok()?),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;
    const WINDOW: u64 = 65;

    fn key(i: u32) -> ReplayKey {
        ReplayKey::new(&Thumbprint([7; 32]), &format!("jti-{i}"))
    }

    #[test]
    fn replays_are_refused() {
        let mut s = ReplayStore::new(16, WINDOW);
        assert_eq!(s.check_and_insert(key(1), NOW, NOW), Ok(()));
        assert_eq!(
            s.check_and_insert(key(1), NOW, NOW + 1),
            Err(DpopError::Replayed)
        );
        // The same jti with another iat is a reuse too.
        assert_eq!(
            s.check_and_insert(key(1), NOW + 1, NOW + 1),
            Err(DpopError::Replayed)
        );
        assert_eq!(s.check_and_insert(key(2), NOW, NOW + 1), Ok(()));
        // The same jti under another key is another proof.
        let other = ReplayKey::new(&Thumbprint([8; 32]), "jti-1");
        assert_eq!(s.check_and_insert(other, NOW, NOW + 1), Ok(()));
    }

    #[test]
    fn expired_entries_are_evicted() {
        let mut s = ReplayStore::new(16, WINDOW);
        s.check_and_insert(key(1), NOW, NOW).unwrap();
        s.check_and_insert(key(2), NOW + 10, NOW + 10).unwrap();
        s.purge(NOW + WINDOW as i64);
        assert_eq!(s.len(), 2);
        s.purge(NOW + WINDOW as i64 + 1);
        assert_eq!(s.len(), 1);
        // Expired proofs cannot be recorded: the iat check refuses them.
        assert_eq!(
            s.check_and_insert(key(1), NOW, NOW + WINDOW as i64 + 1),
            Err(DpopError::Stale)
        );
        assert_eq!(
            s.check_and_insert(key(3), NOW + 500, NOW),
            Err(DpopError::IssuedInFuture)
        );
    }

    #[test]
    fn a_flood_keeps_the_bound_and_lets_no_replay_through() {
        const CAP: usize = 64;
        let mut s = ReplayStore::new(CAP, WINDOW);
        let mut accepted = Vec::new();
        // 1000 distinct proofs over 50 seconds: 20 a second, iat = now.
        for i in 0..1000u32 {
            let now = NOW + i64::from(i / 20);
            assert_eq!(s.check_and_insert(key(i), now, now), Ok(()), "{i}");
            assert!(s.len() <= CAP);
            accepted.push((key(i), now));
        }
        let now = NOW + 50;
        // Every accepted proof still in the window is refused when replayed.
        for &(k, iat) in &accepted {
            let r = s.clone().check_and_insert(k, iat, now);
            assert!(
                matches!(r, Err(DpopError::Replayed | DpopError::BelowReplayHorizon)),
                "{r:?}"
            );
        }
        // New proofs signed now pass: the window shrank to about
        // CAP / 20 seconds.
        assert!(s.horizon().unwrap() < now);
        for i in 0..10 {
            assert_eq!(s.check_and_insert(key(5000 + i), now, now), Ok(()));
        }
        // An older, never-seen proof in the nominal window is refused.
        assert_eq!(
            s.check_and_insert(key(9999), now - 30, now),
            Err(DpopError::BelowReplayHorizon)
        );
        // The horizon leaves with the window.
        s.purge(now + WINDOW as i64 + 1);
        assert_eq!(s.horizon(), None);
        assert!(s.is_empty());
    }

    #[test]
    fn the_smallest_new_proof_is_accepted_and_becomes_the_horizon() {
        let mut s = ReplayStore::new(2, WINDOW);
        s.check_and_insert(key(1), NOW, NOW).unwrap();
        s.check_and_insert(key(2), NOW, NOW).unwrap();
        assert_eq!(s.check_and_insert(key(3), NOW - 5, NOW), Ok(()));
        assert_eq!(s.len(), 2);
        assert_eq!(s.horizon(), Some(NOW - 5));
        assert_eq!(
            s.check_and_insert(key(3), NOW - 5, NOW),
            Err(DpopError::BelowReplayHorizon)
        );
    }

    #[test]
    fn encoding_round_trips_and_merges() {
        let mut a = ReplayStore::new(4, WINDOW);
        for i in 0..6 {
            a.check_and_insert(key(i), NOW + i64::from(i), NOW + 5)
                .unwrap();
        }
        let bytes = a.encode();
        assert_eq!(bytes.len(), 4 + 24 + 4 + 4 * 24);
        let b = ReplayStore::decode(&bytes, 4, WINDOW, NOW + 5).unwrap();
        assert_eq!(a, b);
        assert_eq!(b.encode(), bytes);
        // Decoding into a smaller store evicts and raises the horizon.
        let small = ReplayStore::decode(&bytes, 2, WINDOW, NOW + 5).unwrap();
        assert_eq!(small.len(), 2);
        assert_eq!(small.horizon(), Some(NOW + 3));
        // Garbage.
        assert!(ReplayStore::decode(b"", 4, WINDOW, NOW).is_none());
        assert!(ReplayStore::decode(&bytes[..bytes.len() - 1], 4, WINDOW, NOW).is_none());
        let mut wrong = bytes.clone();
        wrong[0] = b'X';
        assert!(ReplayStore::decode(&wrong, 4, WINDOW, NOW).is_none());

        // Two workers' stores, merged, refuse what either saw.
        let mut x = ReplayStore::new(8, WINDOW);
        let mut y = ReplayStore::new(8, WINDOW);
        x.check_and_insert(key(100), NOW, NOW).unwrap();
        y.check_and_insert(key(200), NOW, NOW).unwrap();
        x.merge(&y, NOW + 1);
        assert_eq!(
            x.check_and_insert(key(100), NOW, NOW + 1),
            Err(DpopError::Replayed)
        );
        assert_eq!(
            x.check_and_insert(key(200), NOW, NOW + 1),
            Err(DpopError::Replayed)
        );
        assert_eq!(x.len(), 2);
    }
}
