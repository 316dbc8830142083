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

/// A bounded map, evicting the oldest insertion first.
#[derive(Debug, Default)]
pub struct TokenCache {
    capacity: usize,
    map: HashMap<TokenDigest, Entry>,
    order: VecDeque<TokenDigest>,
    pub hits: u64,
    pub misses: u64,
}

impl TokenCache {
    pub fn new(capacity: usize) -> TokenCache {
        TokenCache {
            capacity,
            ..TokenCache::default()
        }
    }

    pub fn digest(token: &str) -> TokenDigest {
        Sha256::digest(token.as_bytes()).into()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// A verification made with key generation `generation` of its provider.
    pub fn get(
        &mut self,
        digest: &TokenDigest,
        generation_of: impl Fn(usize) -> u64,
        now: i64,
    ) -> Option<Arc<VerifiedToken>> {
        if self.capacity == 0 {
            return None;
        }
        let fresh = self.map.get(digest).map(|e| {
            let expired = e
                .token
                .expires_at
                .is_some_and(|exp| i128::from(now) >= i128::from(exp) + i128::from(MAX_CLOCK_SKEW));
            !expired && e.generation == generation_of(e.token.provider)
        });
        match fresh {
            Some(true) => {
                self.hits += 1;
                self.map.get(digest).map(|e| Arc::clone(&e.token))
            }
            Some(false) => {
                self.map.remove(digest);
                self.order.retain(|d| d != digest);
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
        if self.capacity == 0 {
            return;
        }
        if let Some(e) = self.map.get_mut(&digest) {
            *e = Entry { token, generation };
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
        self.map.insert(digest, Entry { token, generation });
    }

    /// Forgets everything (a key set changed for every provider, say).
    pub fn clear(&mut self) {
        self.map.clear();
        self.order.clear();
    }
}
