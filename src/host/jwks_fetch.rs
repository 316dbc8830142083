//! `remote_jwks`: when to fetch, and what every worker VM shares.
//!
//! Envoy runs one VM per worker. They share two proxy-wasm shared-data
//! entries per JWKS URI, updated with compare-and-swap:
//!
//! * the **fetch state** ([`FetchState`]): a lease that one VM takes
//!   before it dispatches the HTTP call (so at most one fetch is in flight
//!   per Envoy), the time of the last attempt (for `min_refetch_interval`),
//!   and the failure count (for backoff);
//! * the **key set** ([`SharedJwks`]): the last good JWKS document, with a
//!   sequence number that every VM compares with the one it has installed.
//!
//! This module is pure: times come in as milliseconds since the epoch.

use serde::{Deserialize, Serialize};

use crate::jose::jwk::{JwksError, KeySet, MAX_JWKS_BYTES, SkippedKey};
use crate::policy::RemoteJwks;

/// The first retry after a failure, and the cap of the exponential backoff.
pub const BACKOFF_BASE_MS: u64 = 500;
pub const BACKOFF_MAX_MS: u64 = 30_000;
/// A lease outlives the HTTP call's own timeout by this much, so a VM that
/// died mid-fetch does not block the others for longer.
pub const LEASE_SLACK_MS: u64 = 1_000;
/// Keys are refreshed when this fraction (per mille) of `cache_duration` has passed.
pub const REFRESH_AT_PER_MILLE: u64 = 900;

/// Shared fetch bookkeeping for one JWKS URI.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchState {
    /// A fetch is in flight until this time.
    pub lease_until_ms: u64,
    /// When the last fetch was started.
    pub last_attempt_ms: u64,
    /// Consecutive failures.
    pub failures: u32,
    /// No retry before this time after a failure.
    pub next_retry_ms: u64,
}

impl FetchState {
    /// Decodes the shared entry; anything unreadable is a fresh state.
    pub fn decode(bytes: Option<&[u8]>) -> FetchState {
        bytes
            .and_then(|b| serde_json::from_slice(b).ok())
            .unwrap_or_default()
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn in_flight(&self, now_ms: u64) -> bool {
        self.lease_until_ms > now_ms
    }

    fn backing_off(&self, now_ms: u64) -> bool {
        self.failures > 0 && now_ms < self.next_retry_ms
    }

    /// A scheduled fetch is due: no keys yet, or keys about to reach
    /// `cache_duration`, and no fetch in flight or backoff in force.
    pub fn scheduled_due(&self, cfg: &RemoteJwks, fetched_at_ms: Option<u64>, now_ms: u64) -> bool {
        if self.in_flight(now_ms) || self.backing_off(now_ms) {
            return false;
        }
        match fetched_at_ms {
            None => true,
            Some(t) => now_ms >= refresh_at(cfg, t),
        }
    }

    /// An unknown `kid` may trigger a fetch at most once per
    /// `min_refetch_interval`, counted from the last attempt of any VM.
    pub fn refetch_allowed(&self, cfg: &RemoteJwks, now_ms: u64) -> bool {
        !self.in_flight(now_ms)
            && now_ms
                >= self
                    .last_attempt_ms
                    .saturating_add(cfg.min_refetch_interval_ms)
    }

    /// Takes the lease.
    pub fn begin(&mut self, cfg: &RemoteJwks, now_ms: u64) {
        self.lease_until_ms = now_ms
            .saturating_add(cfg.timeout_ms)
            .saturating_add(LEASE_SLACK_MS);
        self.last_attempt_ms = now_ms;
    }

    pub fn succeed(&mut self) {
        self.lease_until_ms = 0;
        self.failures = 0;
        self.next_retry_ms = 0;
    }

    /// Releases the lease and backs off: 0.5 s, 1 s, 2 s, … up to 30 s.
    pub fn fail(&mut self, now_ms: u64) {
        self.lease_until_ms = 0;
        self.failures = self.failures.saturating_add(1);
        let exp = self.failures.saturating_sub(1).min(16);
        let backoff = BACKOFF_BASE_MS
            .saturating_mul(1u64 << exp)
            .min(BACKOFF_MAX_MS);
        self.next_retry_ms = now_ms.saturating_add(backoff);
    }

    /// When this VM should look again, in milliseconds from `now_ms`.
    pub fn next_check_in(&self, cfg: &RemoteJwks, fetched_at_ms: Option<u64>, now_ms: u64) -> u64 {
        let at = if self.in_flight(now_ms) {
            self.lease_until_ms
        } else if self.backing_off(now_ms) {
            self.next_retry_ms
        } else {
            match fetched_at_ms {
                None => now_ms,
                Some(t) => refresh_at(cfg, t),
            }
        };
        at.saturating_sub(now_ms)
    }
}

fn refresh_at(cfg: &RemoteJwks, fetched_at_ms: u64) -> u64 {
    fetched_at_ms.saturating_add(cfg.cache_duration_ms.saturating_mul(REFRESH_AT_PER_MILLE) / 1000)
}

/// The last good JWKS of one URI, as every VM sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedJwks {
    pub seq: u64,
    pub fetched_at_ms: u64,
    pub jwks: String,
}

impl SharedJwks {
    pub fn decode(bytes: &[u8]) -> Option<SharedJwks> {
        if bytes.len() > MAX_JWKS_BYTES * 2 {
            return None;
        }
        serde_json::from_slice(bytes).ok()
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Shared-data keys for a JWKS URI: (key set, fetch state).
pub fn shared_keys(cfg: &RemoteJwks) -> (String, String) {
    (
        format!("certbound.jwks.{}", cfg.uri),
        format!("certbound.jwks_fetch.{}", cfg.uri),
    )
}

/// The request headers of the JWKS fetch.
pub fn request_headers(cfg: &RemoteJwks) -> Vec<(&str, &str)> {
    vec![
        (":method", "GET"),
        (":path", cfg.path.as_str()),
        (":authority", cfg.authority.as_str()),
        (":scheme", cfg.scheme.as_str()),
        ("accept", "application/jwk-set+json, application/json"),
        ("user-agent", "certbound"),
    ]
}

/// Why a fetch did not yield keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// No response (connection refused, timeout, reset): no `:status`.
    NoResponse,
    Status(String),
    Jwks(JwksError),
}

impl core::fmt::Display for FetchError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FetchError::NoResponse => f.write_str("no response (refused, reset or timed out)"),
            FetchError::Status(s) => write!(f, "HTTP status {s}"),
            FetchError::Jwks(e) => write!(f, "{e}"),
        }
    }
}

/// Judges a fetch response: a 200 with a JWKS that has at least one usable key.
pub fn parse_response(
    status: Option<&str>,
    body: Option<&[u8]>,
) -> Result<(String, KeySet, Vec<SkippedKey>), FetchError> {
    match status {
        None => return Err(FetchError::NoResponse),
        Some("200") => {}
        Some(other) => return Err(FetchError::Status(other.chars().take(8).collect())),
    }
    let body = body.unwrap_or_default();
    if body.len() > MAX_JWKS_BYTES {
        return Err(FetchError::Jwks(JwksError::TooLarge(body.len())));
    }
    let text = core::str::from_utf8(body)
        .map_err(|_| FetchError::Jwks(JwksError::NotJson("not UTF-8".into())))?;
    let (keys, skipped) = KeySet::parse(text).map_err(FetchError::Jwks)?;
    Ok((text.to_string(), keys, skipped))
}

/// A `remote_jwks` provider's view of the shared key set.
#[derive(Debug)]
pub struct RemoteSlot {
    pub cfg: RemoteJwks,
    pub jwks_key: String,
    pub state_key: String,
    /// The shared sequence number installed in this VM's key ring.
    pub seq: u64,
    /// CAS of the shared entry last read, to skip re-parsing it.
    pub seen_cas: Option<u32>,
    pub fetched_at_ms: Option<u64>,
    pub refetch_requested: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> RemoteJwks {
        RemoteJwks {
            uri: "https://idp/jwks".into(),
            cluster: "idp".into(),
            scheme: "https".into(),
            authority: "idp".into(),
            path: "/jwks".into(),
            timeout_ms: 2_000,
            cache_duration_ms: 600_000,
            min_refetch_interval_ms: 30_000,
        }
    }

    #[test]
    fn first_fetch_is_due_at_once_and_leased() {
        let c = cfg();
        let mut s = FetchState::default();
        assert!(s.scheduled_due(&c, None, 1_000));
        s.begin(&c, 1_000);
        assert!(s.in_flight(1_000));
        assert!(!s.scheduled_due(&c, None, 2_000), "one fetch in flight");
        // A lease left by a dead VM expires.
        assert!(s.scheduled_due(&c, None, 1_000 + 2_000 + LEASE_SLACK_MS));
    }

    #[test]
    fn refresh_before_cache_duration() {
        let c = cfg();
        let s = FetchState::default();
        assert!(!s.scheduled_due(&c, Some(0), 539_999));
        assert!(s.scheduled_due(&c, Some(0), 540_000));
        assert_eq!(s.next_check_in(&c, Some(0), 40_000), 500_000);
        // Fractions of a second count: 90 % of 1.9 s is 1.71 s.
        let c = RemoteJwks {
            cache_duration_ms: 1_900,
            ..cfg()
        };
        assert!(!s.scheduled_due(&c, Some(0), 1_709));
        assert!(s.scheduled_due(&c, Some(0), 1_710));
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let c = cfg();
        let mut s = FetchState::default();
        let mut waits = vec![];
        for _ in 0..10 {
            s.begin(&c, 0);
            s.fail(0);
            waits.push(s.next_retry_ms);
            assert!(!s.scheduled_due(&c, None, s.next_retry_ms - 1));
            assert!(s.scheduled_due(&c, None, s.next_retry_ms));
        }
        assert_eq!(&waits[..4], &[500, 1_000, 2_000, 4_000]);
        assert_eq!(waits[9], BACKOFF_MAX_MS);
        s.succeed();
        assert_eq!(s.failures, 0);
    }

    #[test]
    fn refetch_is_rate_limited() {
        let c = cfg();
        let mut s = FetchState::default();
        s.begin(&c, 10_000);
        s.succeed();
        assert!(!s.refetch_allowed(&c, 39_999));
        assert!(s.refetch_allowed(&c, 40_000));
    }

    #[test]
    fn garbage_state_is_fresh() {
        assert_eq!(FetchState::decode(Some(b"garbage")), FetchState::default());
        assert_eq!(FetchState::decode(None), FetchState::default());
        let s = FetchState {
            lease_until_ms: 1,
            last_attempt_ms: 2,
            failures: 3,
            next_retry_ms: 4,
        };
        assert_eq!(FetchState::decode(Some(&s.encode())), s);
    }

    #[test]
    fn responses() {
        assert_eq!(
            parse_response(None, None).err(),
            Some(FetchError::NoResponse)
        );
        assert_eq!(
            parse_response(Some("503"), Some(b"{}")).err(),
            Some(FetchError::Status("503".into()))
        );
        assert!(matches!(
            parse_response(Some("200"), Some(b"<html>")),
            Err(FetchError::Jwks(JwksError::NotJson(_)))
        ));
        assert!(matches!(
            parse_response(Some("200"), Some(br#"{"keys":[]}"#)),
            Err(FetchError::Jwks(JwksError::NoUsableKey(_)))
        ));
    }
}
