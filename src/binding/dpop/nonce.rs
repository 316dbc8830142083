//! Stateless server nonces (RFC 9449 §8-9): the nonce is its own record.
//!
//! A nonce is base64url (no padding) of 24 bytes: the issue window, a
//! big-endian `u64` counting [`NONCE_STEP_SECS`] periods since the epoch,
//! then the first 16 bytes (128 bits) of
//! `HMAC-SHA256(secret, "certbound dpop nonce v1" || window)`. Nothing is
//! stored: any filter holding the same secret accepts the nonces of the
//! others, and within one window they all issue the same value. A nonce is
//! accepted while it is younger than the configured lifetime (its age
//! counted from the start of its window, so never under-estimated) and
//! made with the current or the previous secret, which lets operators
//! rotate secrets without refusing the nonces clients hold. The MAC is
//! compared in constant time.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::error::DpopError;

/// The length of a window, in seconds: nonces issued within the same
/// window are identical.
pub const NONCE_STEP_SECS: i64 = 5;
/// The MAC's length in a nonce, in bytes.
const TAG_BYTES: usize = 16;
/// The window counter's length in a nonce, in bytes.
const COUNTER_BYTES: usize = 8;
/// The length of a nonce's text: base64url of 24 bytes.
pub const NONCE_CHARS: usize = 32;
/// Domain separation: the secret authenticates nothing else.
const LABEL: &[u8] = b"certbound dpop nonce v1";

/// Issues and checks nonces.
#[derive(Debug, Clone, Copy)]
pub struct Nonce;

impl Nonce {
    /// The nonce for `now` (Unix seconds) under `secret`.
    pub fn issue(secret: &[u8], now: i64) -> String {
        let counter = window_of(now);
        let mut bytes = [0u8; COUNTER_BYTES + TAG_BYTES];
        let (head, tail) = bytes.split_at_mut(COUNTER_BYTES);
        head.copy_from_slice(&counter.to_be_bytes());
        let tag = mac(secret, counter).finalize().into_bytes();
        for (t, m) in tail.iter_mut().zip(tag.iter()) {
            *t = *m;
        }
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Accepts `nonce` if one of `secrets` (current first, then previous)
    /// issued it less than `lifetime_secs` ago, counted from the start of
    /// its window. A nonce of a later window than now's next is refused:
    /// it cannot come from a filter whose clock is close to this one's.
    pub fn verify(
        nonce: &str,
        secrets: &[&[u8]],
        now: i64,
        lifetime_secs: u64,
    ) -> Result<(), DpopError> {
        let (counter, tag) = decode(nonce).ok_or(DpopError::NonceInvalid)?;
        if !fresh(counter, now, lifetime_secs) {
            return Err(DpopError::NonceInvalid);
        }
        // Every secret is tried, so the time taken does not say which one
        // matched.
        let mut valid = false;
        for secret in secrets {
            valid |= mac(secret, counter).verify_truncated_left(&tag).is_ok();
        }
        if valid {
            Ok(())
        } else {
            Err(DpopError::NonceInvalid)
        }
    }

    /// Whether a response should carry a fresh nonce: `nonce` has lived
    /// half of `lifetime_secs` or more, or is no nonce at all. The MAC is
    /// not checked (call it on a nonce that [`Nonce::verify`] accepted).
    pub fn needs_refresh(nonce: &str, now: i64, lifetime_secs: u64) -> bool {
        match decode(nonce) {
            Some((counter, _)) => age(counter, now).is_none_or(|a| a >= lifetime_secs / 2),
            None => true,
        }
    }
}

/// The window of a time: periods of [`NONCE_STEP_SECS`] since the epoch
/// (0 before it).
fn window_of(now: i64) -> u64 {
    u64::try_from(now.div_euclid(NONCE_STEP_SECS)).unwrap_or(0)
}

/// Seconds from the start of window `counter` to `now`; `None` if the
/// window starts after `now`.
fn age(counter: u64, now: i64) -> Option<u64> {
    let start = i64::try_from(counter).ok()?.checked_mul(NONCE_STEP_SECS)?;
    u64::try_from(now.checked_sub(start)?).ok()
}

fn fresh(counter: u64, now: i64, lifetime_secs: u64) -> bool {
    if counter > window_of(now).saturating_add(1) {
        return false;
    }
    // A window starting within the next step counts as age 0.
    age(counter, now).unwrap_or(0) < lifetime_secs
}

fn mac(secret: &[u8], counter: u64) -> Hmac<Sha256> {
    // HMAC takes keys of any length.
    let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => <Hmac<Sha256> as KeyInit>::new(&Default::default()),
    };
    mac.update(LABEL);
    mac.update(&counter.to_be_bytes());
    mac
}

fn decode(nonce: &str) -> Option<(u64, [u8; TAG_BYTES])> {
    if nonce.len() != NONCE_CHARS {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(nonce).ok()?;
    let (counter, tag) = bytes.split_at_checked(COUNTER_BYTES)?;
    Some((
        u64::from_be_bytes(counter.try_into().ok()?),
        tag.try_into().ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;
    const CURRENT: &[u8] = b"0123456789abcdef0123456789abcdef";
    const PREVIOUS: &[u8] = b"fedcba9876543210fedcba9876543210";

    #[test]
    fn issued_nonces_verify() {
        let n = Nonce::issue(CURRENT, NOW);
        assert_eq!(n.len(), NONCE_CHARS);
        assert_eq!(Nonce::verify(&n, &[CURRENT], NOW, 300), Ok(()));
        assert_eq!(Nonce::verify(&n, &[CURRENT], NOW + 299, 300), Ok(()));
        // The same window, the same nonce, on any filter.
        assert_eq!(Nonce::issue(CURRENT, NOW + 1), n);
        assert_ne!(Nonce::issue(CURRENT, NOW + NONCE_STEP_SECS), n);
    }

    #[test]
    fn rotation_accepts_the_previous_secret() {
        let old = Nonce::issue(PREVIOUS, NOW);
        assert_eq!(
            Nonce::verify(&old, &[CURRENT, PREVIOUS], NOW + 10, 300),
            Ok(())
        );
        assert_eq!(
            Nonce::verify(&old, &[CURRENT], NOW + 10, 300),
            Err(DpopError::NonceInvalid)
        );
    }

    #[test]
    fn expired_nonces_are_refused() {
        let n = Nonce::issue(CURRENT, NOW);
        assert_eq!(
            Nonce::verify(&n, &[CURRENT], NOW + 300, 300),
            Err(DpopError::NonceInvalid)
        );
        assert_eq!(
            Nonce::verify(&n, &[CURRENT], NOW + 10_000, 300),
            Err(DpopError::NonceInvalid)
        );
    }

    #[test]
    fn future_nonces_are_refused_beyond_one_step() {
        let next = Nonce::issue(CURRENT, NOW + NONCE_STEP_SECS);
        assert_eq!(Nonce::verify(&next, &[CURRENT], NOW, 300), Ok(()));
        let later = Nonce::issue(CURRENT, NOW + 10 * NONCE_STEP_SECS);
        assert_eq!(
            Nonce::verify(&later, &[CURRENT], NOW, 300),
            Err(DpopError::NonceInvalid)
        );
    }

    #[test]
    fn tampered_nonces_are_refused() {
        let n = Nonce::issue(CURRENT, NOW);
        let mut bytes = URL_SAFE_NO_PAD.decode(&n).unwrap();
        for i in 0..bytes.len() {
            bytes[i] ^= 1;
            let t = URL_SAFE_NO_PAD.encode(&bytes);
            assert_eq!(
                Nonce::verify(&t, &[CURRENT, PREVIOUS], NOW, 300),
                Err(DpopError::NonceInvalid),
                "byte {i}"
            );
            bytes[i] ^= 1;
        }
        // Another window with the old MAC.
        let mut moved = bytes.clone();
        moved[7] = moved[7].wrapping_sub(1);
        assert!(Nonce::verify(&URL_SAFE_NO_PAD.encode(&moved), &[CURRENT], NOW, 300).is_err());
        for junk in [
            "",
            "abc",
            &format!("{n}A"),
            &n[1..],
            &"!".repeat(NONCE_CHARS),
        ] {
            assert_eq!(
                Nonce::verify(junk, &[CURRENT], NOW, 300),
                Err(DpopError::NonceInvalid)
            );
        }
        assert_eq!(
            Nonce::verify(&n, &[], NOW, 300),
            Err(DpopError::NonceInvalid)
        );
    }

    #[test]
    fn refresh_after_half_the_lifetime() {
        let n = Nonce::issue(CURRENT, NOW);
        assert!(!Nonce::needs_refresh(&n, NOW, 300));
        assert!(!Nonce::needs_refresh(&n, NOW + 149, 300));
        assert!(Nonce::needs_refresh(&n, NOW + 150, 300));
        assert!(Nonce::needs_refresh("junk", NOW, 300));
        let next = Nonce::issue(CURRENT, NOW + NONCE_STEP_SECS);
        assert!(Nonce::needs_refresh(&next, NOW, 300));
    }
}
