//! Why a DPoP proof is refused: one variant per check of RFC 9449 §4.3
//! (and of the replay store and nonces), each with a fixed description, a
//! metric reason and the error code of its challenge (RFC 9449 §7.1, §9).

use core::fmt;

/// A failed DPoP check. Descriptions are static and carry no proof or
/// token bytes: safe to log and to put in `error_description`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DpopError {
    /// No `DPoP` header, while a proof is needed.
    Missing,
    /// More than one `DPoP` header (RFC 9449 §4.3 step 1).
    Multiple,
    /// The header value is over [`crate::binding::dpop::MAX_PROOF_BYTES`],
    /// refused before anything is decoded.
    TooLarge,
    /// Not a compact JWS, a segment is not base64url, a JSON part is not a
    /// strict object, or a claim is missing or of the wrong type
    /// (RFC 9449 §4.3 steps 2-3).
    Malformed(&'static str),
    /// `typ` is not exactly `dpop+jwt` (RFC 9449 §4.3 step 4).
    WrongType,
    /// `alg` is `none`, symmetric or unknown (RFC 9449 §4.3 step 5).
    UnsupportedAlgorithm,
    /// `alg` is supported but not in the configured list.
    AlgorithmNotAllowed,
    /// The `jwk` header is missing or is no valid public key.
    KeyInvalid(&'static str),
    /// The `jwk` header holds private key members (RFC 9449 §4.3 step 7).
    PrivateKeyInJwk,
    /// The `jwk` header is a symmetric (`oct`) key.
    SymmetricKey,
    /// The `jwk` is a key of another type or curve than `alg` needs.
    KeyAlgorithmMismatch,
    /// The signature does not verify with the `jwk` (RFC 9449 §4.3 step 6).
    BadSignature,
    /// `htm` differs from the request method (RFC 9449 §4.3 step 8).
    MethodMismatch,
    /// `htu` differs from the request URI, after normalisation
    /// (RFC 9449 §4.3 step 9).
    UriMismatch,
    /// `iat` is older than the accepted window (RFC 9449 §4.3 step 11).
    Stale,
    /// `iat` is later than now plus the allowed skew.
    IssuedInFuture,
    /// An access token is presented and the proof has no `ath`
    /// (RFC 9449 §4.3 step 12).
    MissingAth,
    /// `ath` is not the hash of the presented access token.
    AccessTokenHashMismatch,
    /// The proof's key is not the one the token is bound to (`cnf.jkt`,
    /// RFC 9449 §6.1, §4.3 step 12).
    KeyMismatch,
    /// The token carries no `cnf.jkt` while DPoP is required, or it was
    /// sent with the `DPoP` scheme (RFC 9449 §7.1).
    UnboundToken,
    /// A DPoP-bound token sent with the `Bearer` scheme (RFC 9449 §7.2).
    BearerScheme,
    /// Nonces are required and the proof has no `nonce` (RFC 9449 §9).
    NonceRequired,
    /// The `nonce` is not one this server issued, or it expired.
    NonceInvalid,
    /// The proof's `jti` was already seen within the window (RFC 9449 §11.1).
    Replayed,
    /// The replay store, full, has raised its horizon above this proof's
    /// `iat`: it can no longer tell whether the proof was seen, so the proof
    /// is refused (see [`crate::binding::dpop::replay`]).
    BelowReplayHorizon,
}

/// The `error` code of the `DPoP` challenge for a failed check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorCode {
    /// RFC 9449 §7.1: the proof is invalid.
    InvalidDpopProof,
    /// RFC 9449 §9: the client must retry with the nonce of the
    /// `DPoP-Nonce` response header.
    UseDpopNonce,
    /// RFC 6750 §3.1: the token is not usable with this proof (RFC 9449
    /// §7.1 uses it for a key binding mismatch).
    InvalidToken,
    /// RFC 6750 §3.1: the token lacks a scope the route needs.
    InsufficientScope,
    /// RFC 6750 §3.1: the request is malformed (several tokens).
    InvalidRequest,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidDpopProof => "invalid_dpop_proof",
            ErrorCode::UseDpopNonce => "use_dpop_nonce",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::InsufficientScope => "insufficient_scope",
            ErrorCode::InvalidRequest => "invalid_request",
        }
    }
}

impl DpopError {
    /// Every value [`DpopError::reason`] can return, for metric definitions.
    pub const REASONS: [&'static str; 25] = [
        "dpop_missing",
        "dpop_multiple",
        "dpop_too_large",
        "dpop_malformed",
        "dpop_wrong_type",
        "dpop_unsupported_algorithm",
        "dpop_algorithm_not_allowed",
        "dpop_key_invalid",
        "dpop_private_key",
        "dpop_symmetric_key",
        "dpop_key_algorithm_mismatch",
        "dpop_bad_signature",
        "dpop_method_mismatch",
        "dpop_uri_mismatch",
        "dpop_stale",
        "dpop_issued_in_future",
        "dpop_missing_ath",
        "dpop_ath_mismatch",
        "dpop_key_mismatch",
        "dpop_unbound_token",
        "dpop_bearer_scheme",
        "dpop_nonce_required",
        "dpop_nonce_invalid",
        "dpop_replayed",
        "dpop_replay_horizon",
    ];

    /// The stable metric label of this failure.
    pub fn reason(&self) -> &'static str {
        match self {
            DpopError::Missing => "dpop_missing",
            DpopError::Multiple => "dpop_multiple",
            DpopError::TooLarge => "dpop_too_large",
            DpopError::Malformed(_) => "dpop_malformed",
            DpopError::WrongType => "dpop_wrong_type",
            DpopError::UnsupportedAlgorithm => "dpop_unsupported_algorithm",
            DpopError::AlgorithmNotAllowed => "dpop_algorithm_not_allowed",
            DpopError::KeyInvalid(_) => "dpop_key_invalid",
            DpopError::PrivateKeyInJwk => "dpop_private_key",
            DpopError::SymmetricKey => "dpop_symmetric_key",
            DpopError::KeyAlgorithmMismatch => "dpop_key_algorithm_mismatch",
            DpopError::BadSignature => "dpop_bad_signature",
            DpopError::MethodMismatch => "dpop_method_mismatch",
            DpopError::UriMismatch => "dpop_uri_mismatch",
            DpopError::Stale => "dpop_stale",
            DpopError::IssuedInFuture => "dpop_issued_in_future",
            DpopError::MissingAth => "dpop_missing_ath",
            DpopError::AccessTokenHashMismatch => "dpop_ath_mismatch",
            DpopError::KeyMismatch => "dpop_key_mismatch",
            DpopError::UnboundToken => "dpop_unbound_token",
            DpopError::BearerScheme => "dpop_bearer_scheme",
            DpopError::NonceRequired => "dpop_nonce_required",
            DpopError::NonceInvalid => "dpop_nonce_invalid",
            DpopError::Replayed => "dpop_replayed",
            DpopError::BelowReplayHorizon => "dpop_replay_horizon",
        }
    }

    /// A short, fixed description for logs and `error_description`.
    pub fn description(&self) -> &'static str {
        match self {
            DpopError::Missing => "DPoP proof required",
            DpopError::Multiple => "more than one DPoP proof",
            DpopError::TooLarge => "DPoP proof too large",
            DpopError::Malformed(what) => what,
            DpopError::WrongType => "DPoP proof typ is not dpop+jwt",
            DpopError::UnsupportedAlgorithm => "DPoP proof algorithm not supported",
            DpopError::AlgorithmNotAllowed => "DPoP proof algorithm not allowed",
            DpopError::KeyInvalid(what) => what,
            DpopError::PrivateKeyInJwk => "DPoP proof jwk holds a private key",
            DpopError::SymmetricKey => "DPoP proof jwk is a symmetric key",
            DpopError::KeyAlgorithmMismatch => "DPoP proof jwk does not fit alg",
            DpopError::BadSignature => "DPoP proof signature verification failed",
            DpopError::MethodMismatch => "DPoP proof htm does not match the request method",
            DpopError::UriMismatch => "DPoP proof htu does not match the request URI",
            DpopError::Stale => "DPoP proof is too old",
            DpopError::IssuedInFuture => "DPoP proof iat is in the future",
            DpopError::MissingAth => "DPoP proof has no ath",
            DpopError::AccessTokenHashMismatch => "DPoP proof ath does not match the access token",
            DpopError::KeyMismatch => "DPoP key binding mismatch",
            DpopError::UnboundToken => "access token is not DPoP-bound",
            DpopError::BearerScheme => "DPoP-bound token sent with the Bearer scheme",
            DpopError::NonceRequired => "DPoP proof nonce required",
            DpopError::NonceInvalid => "DPoP proof nonce invalid or expired",
            DpopError::Replayed => "DPoP proof replayed",
            DpopError::BelowReplayHorizon => "DPoP proof too old to check for replay",
        }
    }

    /// The `error` code of the challenge: `use_dpop_nonce` for the nonce
    /// checks (the client retries with the `DPoP-Nonce` it is sent),
    /// `invalid_token` when the token is not bound to the proof's key (as
    /// in RFC 9449 §7.1's example), `invalid_dpop_proof` for the rest.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            DpopError::NonceRequired | DpopError::NonceInvalid => ErrorCode::UseDpopNonce,
            DpopError::KeyMismatch | DpopError::UnboundToken | DpopError::BearerScheme => {
                ErrorCode::InvalidToken
            }
            _ => ErrorCode::InvalidDpopProof,
        }
    }

    /// Whether the answer carries a fresh `DPoP-Nonce` (RFC 9449 §9).
    pub fn wants_nonce(&self) -> bool {
        self.error_code() == ErrorCode::UseDpopNonce
    }
}

impl fmt::Display for DpopError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

impl std::error::Error for DpopError {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every variant, one `Malformed` and one `KeyInvalid` standing for
    /// their kind.
    const ALL: [DpopError; 25] = [
        DpopError::Missing,
        DpopError::Multiple,
        DpopError::TooLarge,
        DpopError::Malformed("x"),
        DpopError::WrongType,
        DpopError::UnsupportedAlgorithm,
        DpopError::AlgorithmNotAllowed,
        DpopError::KeyInvalid("x"),
        DpopError::PrivateKeyInJwk,
        DpopError::SymmetricKey,
        DpopError::KeyAlgorithmMismatch,
        DpopError::BadSignature,
        DpopError::MethodMismatch,
        DpopError::UriMismatch,
        DpopError::Stale,
        DpopError::IssuedInFuture,
        DpopError::MissingAth,
        DpopError::AccessTokenHashMismatch,
        DpopError::KeyMismatch,
        DpopError::UnboundToken,
        DpopError::BearerScheme,
        DpopError::NonceRequired,
        DpopError::NonceInvalid,
        DpopError::Replayed,
        DpopError::BelowReplayHorizon,
    ];

    #[test]
    fn reasons_are_listed_unique_and_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for e in ALL {
            let r = e.reason();
            assert!(DpopError::REASONS.contains(&r), "{r}");
            assert!(seen.insert(r), "{r} twice");
            assert!(
                r.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{r}"
            );
        }
        assert_eq!(seen.len(), DpopError::REASONS.len());
    }

    #[test]
    fn descriptions_are_header_safe() {
        for e in ALL {
            let d = e.description();
            assert!(!d.is_empty());
            assert!(
                d.bytes()
                    .all(|b| (0x20..=0x7e).contains(&b) && b != b'"' && b != b'\\'),
                "{d}"
            );
            assert_eq!(e.to_string(), d);
        }
    }

    #[test]
    fn error_codes() {
        assert_eq!(
            DpopError::NonceRequired.error_code(),
            ErrorCode::UseDpopNonce
        );
        assert!(DpopError::NonceInvalid.wants_nonce());
        assert_eq!(DpopError::KeyMismatch.error_code(), ErrorCode::InvalidToken);
        assert_eq!(
            DpopError::Replayed.error_code(),
            ErrorCode::InvalidDpopProof
        );
        assert_eq!(ErrorCode::InvalidDpopProof.as_str(), "invalid_dpop_proof");
    }
}
