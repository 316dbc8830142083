//! The one error type of a request decision, and its mapping to an HTTP
//! answer (RFC 6750 §3, RFC 8705 §3).
//!
//! Every denial the filter can produce is a variant of [`AuthError`]. The
//! single function [`AuthError::response`] turns it into a status code and a
//! `WWW-Authenticate` challenge, and [`AuthError::reason`] names the metric
//! that counts it. Nothing here ever carries token bytes: descriptions are
//! static strings, safe to log and to put in a header.

use core::fmt;

/// Why a request was denied.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthError {
    /// No bearer token in any configured location (RFC 6750 §3.1: no error code).
    MissingToken,
    /// More than one distinct token was sent (RFC 6750 §2: a client MUST NOT
    /// use more than one method).
    MultipleTokens,
    /// The token is larger than the configured cap.
    TokenTooLarge { len: usize, max: usize },
    /// The compact serialization, a base64url segment or a JSON part is invalid.
    Malformed(&'static str),
    /// Five segments: a JWE (RFC 7516). Only signed JWTs are accepted.
    EncryptedToken,
    /// `alg` is not one this filter implements (`none`, HS*, …: RFC 8725 §3.1).
    UnsupportedAlgorithm,
    /// `alg` is implemented but not in the provider's allow-list.
    AlgorithmNotAllowed,
    /// The `crit` header names an extension this filter does not understand
    /// (RFC 7515 §4.1.11).
    UnknownCriticalHeader,
    /// `typ` is not one of the provider's `token_types` (RFC 9068 §4).
    WrongTokenType,
    /// No provider allowed for this route has the token's `iss`.
    WrongIssuer,
    /// The token's `kid` matches no key (or the key set has several keys and
    /// the token names none).
    UnknownKid,
    /// The key chosen by `kid` cannot be used with the token's `alg`.
    KeyAlgorithmMismatch,
    /// The signature does not verify.
    BadSignature,
    /// `exp` is absent while the provider requires it (RFC 7519 §4.1.4).
    MissingExpiration,
    /// `exp` is in the past, beyond the allowed clock skew.
    Expired,
    /// `nbf` or `iat` is in the future, beyond the allowed clock skew.
    NotYetValid,
    /// The token lives longer than `max_lifetime_seconds`.
    LifetimeTooLong,
    /// `aud` contains none of the provider's audiences.
    WrongAudience,
    /// `sub` is missing or does not match the provider's `subjects`.
    WrongSubject,
    /// The token carries no `cnf.x5t#S256` while the binding is required
    /// (RFC 8705 §3), or carries a confirmation method this filter cannot check.
    MissingBinding,
    /// `cnf.x5t#S256` is not base64url without padding of 32 bytes (RFC 8705 §3.1).
    MalformedBinding,
    /// The token is bound but the connection has no client certificate.
    NoClientCertificate,
    /// The client certificate's thumbprint differs from `cnf.x5t#S256`.
    BindingMismatch,
    /// The route needs scopes the token does not grant (RFC 6750 §3.1).
    InsufficientScope { required: String },
    /// The provider's signing keys are not available (yet).
    KeysUnavailable,
    /// RFC 7662 §2.2: the introspection endpoint says `active: false`.
    InactiveToken,
    /// The introspection endpoint failed: down, slow, an error or garbage.
    IntrospectionFailed,
    /// The host failed us (for example, no clock). Fails closed.
    Internal,
}

/// What the filter answers instead of forwarding the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub status: u32,
    /// The `WWW-Authenticate` challenge; `None` when the denial is not about
    /// the token (a 500).
    pub www_authenticate: Option<String>,
}

impl AuthError {
    /// The metric label of this denial, as counted in `certbound.denied.<reason>`.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::MissingToken => "missing_token",
            AuthError::MultipleTokens => "invalid_request",
            AuthError::TokenTooLarge { .. }
            | AuthError::Malformed(_)
            | AuthError::EncryptedToken
            | AuthError::UnknownCriticalHeader
            | AuthError::WrongTokenType => "malformed",
            AuthError::UnsupportedAlgorithm | AuthError::AlgorithmNotAllowed => {
                "disallowed_algorithm"
            }
            AuthError::WrongIssuer => "wrong_issuer",
            AuthError::UnknownKid => "unknown_kid",
            AuthError::KeyAlgorithmMismatch | AuthError::BadSignature => "bad_signature",
            AuthError::MissingExpiration | AuthError::Expired | AuthError::LifetimeTooLong => {
                "expired"
            }
            AuthError::NotYetValid => "not_yet_valid",
            AuthError::WrongAudience => "wrong_audience",
            AuthError::WrongSubject => "wrong_subject",
            AuthError::MissingBinding | AuthError::MalformedBinding => "missing_binding",
            AuthError::NoClientCertificate => "no_client_certificate",
            AuthError::BindingMismatch => "binding_mismatch",
            AuthError::InsufficientScope { .. } => "insufficient_scope",
            AuthError::KeysUnavailable => "keys_unavailable",
            AuthError::InactiveToken => "inactive",
            AuthError::IntrospectionFailed => "introspection_failed",
            AuthError::Internal => "internal",
        }
    }

    /// Every value [`AuthError::reason`] can return, for metric definitions.
    pub const REASONS: [&'static str; 19] = [
        "missing_token",
        "invalid_request",
        "malformed",
        "disallowed_algorithm",
        "wrong_issuer",
        "unknown_kid",
        "bad_signature",
        "expired",
        "not_yet_valid",
        "wrong_audience",
        "wrong_subject",
        "missing_binding",
        "no_client_certificate",
        "binding_mismatch",
        "insufficient_scope",
        "keys_unavailable",
        "inactive",
        "introspection_failed",
        "internal",
    ];

    /// A short, fixed, token-free description for `error_description`.
    pub fn description(&self) -> &'static str {
        match self {
            AuthError::MissingToken => "no bearer token",
            AuthError::MultipleTokens => "more than one token in the request",
            AuthError::TokenTooLarge { .. } => "token too large",
            AuthError::Malformed(what) => what,
            AuthError::EncryptedToken => "encrypted tokens are not accepted",
            AuthError::UnsupportedAlgorithm => "unsupported algorithm",
            AuthError::AlgorithmNotAllowed => "algorithm not allowed",
            AuthError::UnknownCriticalHeader => "unknown critical header",
            AuthError::WrongTokenType => "wrong token type",
            AuthError::WrongIssuer => "issuer not accepted",
            AuthError::UnknownKid => "unknown signing key",
            AuthError::KeyAlgorithmMismatch => "algorithm does not match key",
            AuthError::BadSignature => "signature verification failed",
            AuthError::MissingExpiration => "token has no expiration",
            AuthError::Expired => "token expired",
            AuthError::NotYetValid => "token not yet valid",
            AuthError::LifetimeTooLong => "token lifetime too long",
            AuthError::WrongAudience => "audience not accepted",
            AuthError::WrongSubject => "subject not accepted",
            AuthError::MissingBinding => "token is not certificate-bound",
            AuthError::MalformedBinding => "malformed x5t#S256 confirmation",
            AuthError::NoClientCertificate => "client certificate required",
            AuthError::BindingMismatch => "certificate binding mismatch",
            AuthError::InsufficientScope { .. } => "insufficient scope",
            AuthError::KeysUnavailable => "signing keys unavailable",
            AuthError::InactiveToken => "token is not active",
            AuthError::IntrospectionFailed => "token introspection failed",
            AuthError::Internal => "internal error",
        }
    }

    /// The HTTP answer for this denial: RFC 6750 §3 challenge and status.
    ///
    /// * no token: 401 and a bare `Bearer` challenge (§3.1: no error code);
    /// * a request with several tokens: 400 `invalid_request`;
    /// * missing scopes: 403 `insufficient_scope` with the `scope` needed;
    /// * the filter's own failure (no clock from the host): 500 and no
    ///   challenge, since nothing is wrong with the token (still closed);
    /// * everything else, including RFC 8705 binding failures: 401
    ///   `invalid_token`.
    pub fn response(&self) -> Denial {
        let (status, www_authenticate) = match self {
            AuthError::MissingToken => (401, Some("Bearer".to_string())),
            AuthError::MultipleTokens => (
                400,
                Some(challenge("invalid_request", self.description(), None)),
            ),
            AuthError::InsufficientScope { required } => (
                403,
                Some(challenge(
                    "insufficient_scope",
                    self.description(),
                    Some(required),
                )),
            ),
            AuthError::Internal => (500, None),
            _ => (
                401,
                Some(challenge("invalid_token", self.description(), None)),
            ),
        };
        Denial {
            status,
            www_authenticate,
        }
    }
}

/// `Bearer error="…", error_description="…"[, scope="…"]`. The description
/// is a static string from [`AuthError::description`]; scopes come from the
/// validated config, whose scope tokens cannot hold `"` or `\` (RFC 6749 §3.3).
fn challenge(code: &str, description: &str, scope: Option<&str>) -> String {
    let mut s = format!("Bearer error=\"{code}\", error_description=\"{description}\"");
    if let Some(scope) = scope {
        s.push_str(", scope=\"");
        s.push_str(scope);
        s.push('"');
    }
    s
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::TokenTooLarge { len, max } => {
                write!(f, "token too large ({len} bytes, max {max})")
            }
            AuthError::InsufficientScope { required } => {
                write!(f, "insufficient scope (requires \"{required}\")")
            }
            other => f.write_str(other.description()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_token_has_bare_challenge() {
        let d = AuthError::MissingToken.response();
        assert_eq!(d.status, 401);
        assert_eq!(d.www_authenticate.as_deref(), Some("Bearer"));
    }

    #[test]
    fn invalid_token_challenge() {
        let d = AuthError::BindingMismatch.response();
        assert_eq!(d.status, 401);
        assert_eq!(
            d.www_authenticate.as_deref(),
            Some(
                "Bearer error=\"invalid_token\", error_description=\"certificate binding mismatch\""
            )
        );
    }

    #[test]
    fn internal_failure_is_a_500_without_challenge() {
        let d = AuthError::Internal.response();
        assert_eq!(d.status, 500);
        assert_eq!(d.www_authenticate, None);
    }

    #[test]
    fn multiple_tokens_is_invalid_request() {
        let d = AuthError::MultipleTokens.response();
        assert_eq!(d.status, 400);
        assert!(
            d.www_authenticate
                .is_some_and(|c| c.starts_with("Bearer error=\"invalid_request\""))
        );
    }

    #[test]
    fn insufficient_scope_names_scope() {
        let d = AuthError::InsufficientScope {
            required: "orders:read orders:write".into(),
        }
        .response();
        assert_eq!(d.status, 403);
        assert_eq!(
            d.www_authenticate.as_deref(),
            Some(
                "Bearer error=\"insufficient_scope\", error_description=\"insufficient scope\", scope=\"orders:read orders:write\""
            )
        );
    }

    #[test]
    fn descriptions_are_header_safe() {
        // RFC 6750 §3: error_description is %x20-21 / %x23-5B / %x5D-7E.
        let all = [
            AuthError::MissingToken,
            AuthError::MultipleTokens,
            AuthError::TokenTooLarge { len: 1, max: 0 },
            AuthError::Malformed("x"),
            AuthError::EncryptedToken,
            AuthError::UnsupportedAlgorithm,
            AuthError::AlgorithmNotAllowed,
            AuthError::UnknownCriticalHeader,
            AuthError::WrongTokenType,
            AuthError::WrongIssuer,
            AuthError::UnknownKid,
            AuthError::KeyAlgorithmMismatch,
            AuthError::BadSignature,
            AuthError::MissingExpiration,
            AuthError::Expired,
            AuthError::NotYetValid,
            AuthError::LifetimeTooLong,
            AuthError::WrongAudience,
            AuthError::WrongSubject,
            AuthError::MissingBinding,
            AuthError::MalformedBinding,
            AuthError::NoClientCertificate,
            AuthError::BindingMismatch,
            AuthError::InsufficientScope {
                required: "a".into(),
            },
            AuthError::KeysUnavailable,
            AuthError::InactiveToken,
            AuthError::IntrospectionFailed,
            AuthError::Internal,
        ];
        for e in all {
            assert!(AuthError::REASONS.contains(&e.reason()), "{:?}", e);
            let d = e.description();
            assert!(
                d.bytes()
                    .all(|b| (0x20..=0x7e).contains(&b) && b != b'"' && b != b'\\'),
                "{d}"
            );
            assert!(!e.reason().is_empty());
        }
    }
}
