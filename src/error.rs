//! The one error type of a request decision, and its mapping to an HTTP
//! answer (RFC 6750 §3, RFC 8705 §3, RFC 9449 §7, RFC 9728 §5.1).
//!
//! Every denial the filter can produce is a variant of [`AuthError`]. The
//! single function [`AuthError::response`] turns it into a status code and
//! the `WWW-Authenticate` challenges of the schemes the route accepts, and
//! [`AuthError::reason`] names the metric that counts it. Nothing here ever
//! carries token bytes: descriptions are static strings, safe to log and to
//! put in a header.

use core::fmt;

use crate::binding::dpop::{DpopError, ErrorCode, challenge as dpop_challenge};
use crate::jose::alg::Alg;

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
    /// A DPoP check failed (RFC 9449).
    Dpop(DpopError),
    /// The host failed us (for example, no clock). Fails closed.
    Internal,
}

/// What the filter answers instead of forwarding the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub status: u32,
    /// The `WWW-Authenticate` challenges, one header each; none when the
    /// denial is not about the token (a 500).
    pub www_authenticate: Vec<String>,
}

/// The schemes a denied request could have used, which its answer
/// challenges (RFC 9110 §11.6.1: one challenge per scheme).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schemes<'a> {
    /// `Bearer` tokens are accepted.
    pub bearer: bool,
    /// DPoP-bound tokens are accepted, with proofs by these algorithms.
    pub dpop: Option<&'a [Alg]>,
    /// The request sent its token with the `DPoP` scheme.
    pub dpop_used: bool,
    /// RFC 9728 §5.1: where the protected-resource metadata is.
    pub resource_metadata: Option<&'a str>,
}

impl Schemes<'_> {
    /// `Bearer` alone, without metadata.
    pub const BEARER: Schemes<'static> = Schemes {
        bearer: true,
        dpop: None,
        dpop_used: false,
        resource_metadata: None,
    };
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
            AuthError::Dpop(e) => e.reason(),
            AuthError::Internal => "internal",
        }
    }

    /// Every value [`AuthError::reason`] can return.
    pub fn reasons() -> impl Iterator<Item = &'static str> {
        AuthError::REASONS.into_iter().chain(DpopError::REASONS)
    }

    /// The reasons of the variants other than [`AuthError::Dpop`].
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
            AuthError::Dpop(e) => e.description(),
            AuthError::Internal => "internal error",
        }
    }

    /// The HTTP answer for this denial: its status, and a challenge for
    /// each scheme the request could have used (RFC 6750 §3, RFC 9449 §7).
    ///
    /// * no token: 401 and a bare challenge per scheme (RFC 6750 §3.1: no
    ///   error code);
    /// * a request with several tokens: 400 `invalid_request`;
    /// * missing scopes: 403 `insufficient_scope` with the `scope` needed;
    /// * the filter's own failure (no clock from the host): 500 and no
    ///   challenge, since nothing is wrong with the token (still closed);
    /// * a failed DPoP check: 401 and the `DPoP` challenge with its error
    ///   (`invalid_dpop_proof`, `use_dpop_nonce` or `invalid_token`);
    /// * everything else, including RFC 8705 binding failures: 401
    ///   `invalid_token`.
    ///
    /// The error goes on the challenge of the scheme the request used (or
    /// `DPoP` for a DPoP check); the other scheme's challenge is bare.
    pub fn response(&self, schemes: &Schemes<'_>) -> Denial {
        let status = match self {
            AuthError::Internal => {
                return Denial {
                    status: 500,
                    www_authenticate: Vec::new(),
                };
            }
            AuthError::MultipleTokens => 400,
            AuthError::InsufficientScope { .. } => 403,
            _ => 401,
        };
        let scope = match self {
            AuthError::InsufficientScope { required } => Some(required.as_str()),
            _ => None,
        };
        let error = match self {
            AuthError::MissingToken => None,
            AuthError::MultipleTokens => Some((ErrorCode::InvalidRequest, self.description())),
            AuthError::InsufficientScope { .. } => {
                Some((ErrorCode::InsufficientScope, self.description()))
            }
            AuthError::Dpop(e) => Some((e.error_code(), e.description())),
            _ => Some((ErrorCode::InvalidToken, self.description())),
        };
        let on_dpop = match self {
            AuthError::Dpop(_) => true,
            _ => schemes.dpop_used || !schemes.bearer,
        };
        let mut challenges = Vec::new();
        if schemes.bearer || schemes.dpop.is_none() {
            let error = if on_dpop && schemes.dpop.is_some() {
                None
            } else {
                error
            };
            challenges.push(bearer_challenge(error, scope, schemes.resource_metadata));
        }
        if let Some(algs) = schemes.dpop {
            let error = if on_dpop { error } else { None };
            challenges.push(dpop_challenge_with(
                algs,
                error,
                scope,
                schemes.resource_metadata,
            ));
        }
        Denial {
            status,
            www_authenticate: challenges,
        }
    }
}

/// `Bearer error="…", error_description="…"[, scope="…"]`, or a bare
/// `Bearer`. The description is a static string from
/// [`AuthError::description`]; scopes come from the validated config, whose
/// scope tokens cannot hold `"` or `\` (RFC 6749 §3.3); the metadata URL
/// too holds neither.
fn bearer_challenge(
    error: Option<(ErrorCode, &str)>,
    scope: Option<&str>,
    resource_metadata: Option<&str>,
) -> String {
    let mut params = Vec::new();
    if let Some((code, description)) = error {
        params.push(format!("error=\"{}\"", code.as_str()));
        params.push(format!("error_description=\"{description}\""));
    }
    if let Some(scope) = scope {
        params.push(format!("scope=\"{scope}\""));
    }
    if let Some(url) = resource_metadata {
        params.push(format!("resource_metadata=\"{url}\""));
    }
    if params.is_empty() {
        "Bearer".to_string()
    } else {
        format!("Bearer {}", params.join(", "))
    }
}

/// `DPoP algs="…"[, error="…", error_description="…"][, scope="…"]`
/// `[, resource_metadata="…"]` (RFC 9449 §7.1).
fn dpop_challenge_with(
    algs: &[Alg],
    error: Option<(ErrorCode, &str)>,
    scope: Option<&str>,
    resource_metadata: Option<&str>,
) -> String {
    let mut s = dpop_challenge(algs, error);
    if let Some(scope) = scope {
        s.push_str(", scope=\"");
        s.push_str(scope);
        s.push('"');
    }
    if let Some(url) = resource_metadata {
        s.push_str(", resource_metadata=\"");
        s.push_str(url);
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
        let d = AuthError::MissingToken.response(&Schemes::BEARER);
        assert_eq!(d.status, 401);
        assert_eq!(
            d.www_authenticate.first().map(String::as_str),
            Some("Bearer")
        );
    }

    #[test]
    fn invalid_token_challenge() {
        let d = AuthError::BindingMismatch.response(&Schemes::BEARER);
        assert_eq!(d.status, 401);
        assert_eq!(
            d.www_authenticate.first().map(String::as_str),
            Some(
                "Bearer error=\"invalid_token\", error_description=\"certificate binding mismatch\""
            )
        );
    }

    #[test]
    fn internal_failure_is_a_500_without_challenge() {
        let d = AuthError::Internal.response(&Schemes::BEARER);
        assert_eq!(d.status, 500);
        assert!(d.www_authenticate.is_empty());
    }

    #[test]
    fn multiple_tokens_is_invalid_request() {
        let d = AuthError::MultipleTokens.response(&Schemes::BEARER);
        assert_eq!(d.status, 400);
        assert!(
            d.www_authenticate
                .first()
                .is_some_and(|c| c.starts_with("Bearer error=\"invalid_request\""))
        );
    }

    #[test]
    fn insufficient_scope_names_scope() {
        let d = AuthError::InsufficientScope {
            required: "orders:read orders:write".into(),
        }
        .response(&Schemes::BEARER);
        assert_eq!(d.status, 403);
        assert_eq!(
            d.www_authenticate.first().map(String::as_str),
            Some(
                "Bearer error=\"insufficient_scope\", error_description=\"insufficient scope\", scope=\"orders:read orders:write\""
            )
        );
    }

    const ALGS: [Alg; 2] = [Alg::ES256, Alg::EdDSA];

    /// RFC 9449 §7.1: with both schemes accepted, a 401 challenges both;
    /// the error goes on the scheme the request used, or on `DPoP` for a
    /// failed proof; RFC 9728 §5.1 names the metadata on each.
    #[test]
    fn both_schemes_are_challenged() {
        let both = Schemes {
            bearer: true,
            dpop: Some(&ALGS),
            dpop_used: false,
            resource_metadata: Some("https://api.example.com/.well-known/oauth-protected-resource"),
        };
        let d = AuthError::MissingToken.response(&both);
        assert_eq!(
            d.www_authenticate,
            [
                "Bearer resource_metadata=\"https://api.example.com/.well-known/oauth-protected-resource\"",
                "DPoP algs=\"ES256 EdDSA\", resource_metadata=\"https://api.example.com/.well-known/oauth-protected-resource\"",
            ]
        );
        let d = AuthError::Expired.response(&both);
        assert!(d.www_authenticate[0].starts_with("Bearer error=\"invalid_token\""));
        assert!(d.www_authenticate[1].starts_with("DPoP algs=\"ES256 EdDSA\", resource_metadata"));
        let d = AuthError::Expired.response(&Schemes {
            dpop_used: true,
            ..both
        });
        assert!(d.www_authenticate[0].starts_with("Bearer resource_metadata"));
        assert!(
            d.www_authenticate[1].starts_with("DPoP algs=\"ES256 EdDSA\", error=\"invalid_token\"")
        );
        let d = AuthError::Dpop(DpopError::Replayed).response(&both);
        assert_eq!(d.status, 401);
        assert!(
            d.www_authenticate[1].starts_with(
                "DPoP algs=\"ES256 EdDSA\", error=\"invalid_dpop_proof\", error_description=\"DPoP proof replayed\""
            )
        );
        let d = AuthError::Dpop(DpopError::NonceRequired).response(&both);
        assert!(d.www_authenticate[1].contains("error=\"use_dpop_nonce\""));
        // DPoP required: no Bearer challenge at all.
        let d = AuthError::MissingToken.response(&Schemes {
            bearer: false,
            dpop: Some(&ALGS),
            dpop_used: false,
            resource_metadata: None,
        });
        assert_eq!(d.www_authenticate, ["DPoP algs=\"ES256 EdDSA\""]);
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
            AuthError::Dpop(DpopError::Replayed),
            AuthError::Internal,
        ];
        for e in all {
            assert!(AuthError::reasons().any(|r| r == e.reason()), "{:?}", e);
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
