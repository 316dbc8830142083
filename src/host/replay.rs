//! The DPoP proofs this Envoy has accepted (RFC 9449 §11.1), shared by all
//! its workers through the host's shared data.
//!
//! The proofs are spread over [`SHARDS`] stores by their replay key, each a
//! [`ReplayStore`] of [`SHARD_CAPACITY`] entries kept under its own key and
//! updated with compare-and-swap: read, decode, check and insert, encode,
//! swap; on a conflict, again. A request thus copies one shard (at most
//! about 6 KiB), not every proof of the window. What happens when a shard
//! is full is the store's rule: the oldest proof leaves and the window of
//! that shard shrinks; no new proof is refused for lack of room, and no
//! replay is accepted (see [`crate::binding::dpop::replay`]).

use crate::binding::dpop::ReplayStore;
use crate::decide::binding::ProofUse;
use crate::error::AuthError;
use crate::host::Host;

/// How many stores the proofs are spread over.
pub const SHARDS: usize = 64;
/// Proofs kept per store: [`SHARDS`] × this many in all.
pub const SHARD_CAPACITY: usize = 256;
/// Compare-and-swap attempts before the request is refused (closed).
const ATTEMPTS: usize = 16;

/// Records `proof` as seen, or refuses it if it was seen before.
/// `window_secs` is the longest window of any provider, so that no shard
/// forgets a proof another provider would still accept. A host whose
/// shared data keeps failing refuses the request with a 500: a proof that
/// cannot be recorded cannot be accepted.
pub fn check_and_record(
    host: &dyn Host,
    proof: &ProofUse,
    window_secs: u64,
    now: i64,
) -> Result<(), AuthError> {
    let shard = usize::from(proof.replay_key.0[0]) % SHARDS;
    let key = format!("certbound.dpop.seen.{shard}");
    for _ in 0..ATTEMPTS {
        let (bytes, cas) = host.shared_data(&key);
        let mut store = bytes
            .as_deref()
            .and_then(|b| ReplayStore::decode(b, SHARD_CAPACITY, window_secs, now))
            .unwrap_or_else(|| ReplayStore::new(SHARD_CAPACITY, window_secs));
        store
            .check_and_insert(proof.replay_key, proof.iat, now)
            .map_err(AuthError::Dpop)?;
        if host.set_shared_data(&key, &store.encode(), cas) {
            return Ok(());
        }
    }
    Err(AuthError::Internal)
}
