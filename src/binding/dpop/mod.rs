//! DPoP (RFC 9449): proof-of-possession of a key, per request, for access
//! tokens bound to that key's thumbprint (`cnf.jkt`).
//!
//! Pure: every function takes its inputs, `now` (Unix seconds) included,
//! and returns a typed result; nothing here reads a clock, logs or calls
//! the host. [`verify_proof`] runs the checks of RFC 9449 §4.3 on the
//! `DPoP` request header; the [`replay::ReplayStore`] then makes each proof
//! count once (§11.1), and [`nonce`] issues and checks stateless server
//! nonces (§8-9). [`challenge()`] writes the `WWW-Authenticate: DPoP`
//! answer (§7.1).

pub mod challenge;
pub mod error;
pub mod htu;
pub mod jwk;
pub mod nonce;
pub mod replay;

pub use challenge::challenge;
pub use error::{DpopError, ErrorCode};
pub use jwk::{TokenJkt, public_jwk};
pub use nonce::Nonce;
pub use replay::{ReplayKey, ReplayStore};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::binding::Thumbprint;
use crate::jose::alg::Alg;
use crate::jose::json::{numeric_date, parse_object};

/// Upper bound on a `DPoP` header value, in bytes, checked before
/// anything is decoded. A proof with an RSA-4096 `jwk` is about 2 KiB.
pub const MAX_PROOF_BYTES: usize = 8 * 1024;
/// Upper bound on a proof's `jti`, in bytes.
pub const MAX_JTI_BYTES: usize = 256;
/// Default of [`DpopConfig::max_age_secs`].
pub const DEFAULT_MAX_AGE_SECS: u64 = 60;
/// Default of [`DpopConfig::clock_skew_secs`].
pub const DEFAULT_CLOCK_SKEW_SECS: u64 = 5;

/// Server nonces (RFC 9449 §9): the secrets that make and check them, and
/// how long a nonce is accepted. Secrets should be at least 32 random
/// bytes, the same on every filter that must accept the others' nonces.
#[derive(Clone, PartialEq, Eq)]
pub struct NonceConfig {
    /// The secret new nonces are made with.
    pub current: Vec<u8>,
    /// The secret before the last rotation: its nonces are still accepted.
    pub previous: Option<Vec<u8>>,
    pub lifetime_secs: u64,
}

impl core::fmt::Debug for NonceConfig {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("NonceConfig")
            .field("current", &"<redacted>")
            .field("previous", &self.previous.as_ref().map(|_| "<redacted>"))
            .field("lifetime_secs", &self.lifetime_secs)
            .finish()
    }
}

impl NonceConfig {
    /// A nonce for a `DPoP-Nonce` response header.
    pub fn issue(&self, now: i64) -> String {
        Nonce::issue(&self.current, now)
    }

    /// Accepts a nonce made with either secret within the lifetime.
    pub fn verify(&self, nonce: &str, now: i64) -> Result<(), DpopError> {
        match &self.previous {
            Some(previous) => {
                Nonce::verify(nonce, &[&self.current, previous], now, self.lifetime_secs)
            }
            None => Nonce::verify(nonce, &[&self.current], now, self.lifetime_secs),
        }
    }

    /// Whether a response should carry a fresh nonce.
    pub fn needs_refresh(&self, nonce: &str, now: i64) -> bool {
        Nonce::needs_refresh(nonce, now, self.lifetime_secs)
    }
}

/// How proofs are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpopConfig {
    /// Only DPoP-bound tokens are accepted: a token presented without
    /// `cnf.jkt` is refused ([`DpopError::UnboundToken`]).
    pub required: bool,
    /// How old a proof's `iat` may be, in seconds.
    pub max_age_secs: u64,
    /// Tolerated clock difference with clients, in seconds, both ways.
    pub clock_skew_secs: u64,
    /// The `alg`s a proof may use, in the order the challenge lists them.
    /// Any asymmetric algorithm certbound verifies may be listed.
    pub algorithms: Vec<Alg>,
    /// Server nonces, when required.
    pub nonce: Option<NonceConfig>,
}

impl Default for DpopConfig {
    fn default() -> Self {
        DpopConfig {
            required: false,
            max_age_secs: DEFAULT_MAX_AGE_SECS,
            clock_skew_secs: DEFAULT_CLOCK_SKEW_SECS,
            algorithms: vec![Alg::ES256, Alg::PS256, Alg::EdDSA],
            nonce: None,
        }
    }
}

impl DpopConfig {
    /// How long after its `iat` a proof may still be accepted: the replay
    /// store's window.
    pub fn window_secs(&self) -> u64 {
        self.max_age_secs.saturating_add(self.clock_skew_secs)
    }
}

/// What a proof is checked against.
#[derive(Clone, Copy)]
pub struct ProofInput<'a> {
    /// Every `DPoP` header value of the request, in order.
    pub proofs: &'a [&'a str],
    /// The request method (`:method`), compared with `htm` exactly.
    pub method: &'a str,
    /// The request's external origin, `scheme://authority`.
    pub origin: &'a str,
    /// The request path (`:path`), query included or not.
    pub path: &'a str,
    /// The access token presented with the proof, if any: `ath` must be
    /// its hash.
    pub access_token: Option<&'a str>,
    /// The token's `cnf.jkt`, if it has one.
    pub token_jkt: Option<Thumbprint>,
    pub config: &'a DpopConfig,
    /// Unix seconds.
    pub now: i64,
}

/// Without the proofs and the access token: nothing here leaks credentials
/// into a log.
impl core::fmt::Debug for ProofInput<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ProofInput")
            .field("proofs", &self.proofs.len())
            .field("method", &self.method)
            .field("origin", &self.origin)
            .field("path", &self.path)
            .field("access_token", &self.access_token.map(|_| "<redacted>"))
            .field("token_jkt", &self.token_jkt)
            .field("config", &self.config)
            .field("now", &self.now)
            .finish()
    }
}

/// A proof that passed every check of [`verify_proof`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedProof {
    pub jti: String,
    pub iat: i64,
    /// The RFC 7638 thumbprint of the proof's key.
    pub jkt: Thumbprint,
    /// The proof's identity in the [`ReplayStore`].
    pub replay_key: ReplayKey,
    /// Nonces are configured and the proof's nonce has lived half its
    /// lifetime: the response should carry a fresh `DPoP-Nonce`.
    pub refresh_nonce: bool,
}

/// The checks of RFC 9449 §4.3, in order, on a request's `DPoP` header:
///
/// 0. with `required`, a token presented without `cnf.jkt` is refused;
/// 1. exactly one `DPoP` header, of at most [`MAX_PROOF_BYTES`];
/// 2. a compact JWS: three base64url segments, header and claims strict
///    JSON objects;
/// 4. `typ` exactly `dpop+jwt`;
/// 5. `alg` asymmetric, supported and allowed; no `crit`;
/// 7. the `jwk` header is a public key fit for `alg` (imported before the
///    signature can be checked);
/// 6. the signature verifies with that key;
/// 3. `jti` (a string of 1 to [`MAX_JTI_BYTES`] bytes), `htm`, `htu`
///    (strings) and `iat` (a NumericDate) present, read only once the
///    signature holds;
/// 8. `htm` is the request method;
/// 9. `htu` is the request URI (see [`htu`]);
/// 10. with nonces configured, `nonce` is one this server issued;
/// 11. `iat` within `[now − max_age − skew, now + skew]`;
/// 12. with an access token, `ath` is its hash, and the key's thumbprint
///     is the token's `cnf.jkt`.
///
/// The replay check (§11.1) is the caller's, with the returned
/// [`VerifiedProof::replay_key`] and a [`ReplayStore`].
pub fn verify_proof(input: &ProofInput<'_>) -> Result<VerifiedProof, DpopError> {
    let config = input.config;
    if config.required && input.access_token.is_some() && input.token_jkt.is_none() {
        return Err(DpopError::UnboundToken);
    }

    // 1. One header, bounded. A comma means two values folded into one.
    let proof = match input.proofs {
        [] => return Err(DpopError::Missing),
        [one] if !one.contains(',') => *one,
        _ => return Err(DpopError::Multiple),
    };
    if proof.len() > MAX_PROOF_BYTES {
        return Err(DpopError::TooLarge);
    }

    // 2. Compact JWS.
    let (signing_input, signature_b64) = proof
        .rsplit_once('.')
        .ok_or(DpopError::Malformed("DPoP proof is not a compact JWS"))?;
    let (header_b64, claims_b64) = signing_input
        .split_once('.')
        .ok_or(DpopError::Malformed("DPoP proof is not a compact JWS"))?;
    if claims_b64.contains('.') {
        return Err(DpopError::Malformed("DPoP proof is not a compact JWS"));
    }
    let header = decode_object(header_b64, "malformed DPoP proof header")?;
    let claims = decode_object(claims_b64, "malformed DPoP proof claims")?;

    // 4-5. Header.
    if header.get("typ").and_then(Value::as_str) != Some("dpop+jwt") {
        return Err(DpopError::WrongType);
    }
    let alg = match header.get("alg") {
        Some(Value::String(name)) => Alg::from_name(name).ok_or(DpopError::UnsupportedAlgorithm)?,
        Some(_) => return Err(DpopError::Malformed("DPoP proof alg is not a string")),
        None => return Err(DpopError::Malformed("DPoP proof has no alg")),
    };
    if !config.algorithms.contains(&alg) {
        return Err(DpopError::AlgorithmNotAllowed);
    }
    if header.contains_key("crit") {
        return Err(DpopError::Malformed("DPoP proof has a crit header"));
    }

    // 7, then 6: the key, then the signature.
    let jwk = header
        .get("jwk")
        .ok_or(DpopError::KeyInvalid("DPoP proof has no jwk"))?;
    let key = public_jwk(jwk, alg)?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature_b64)
        .ok()
        .filter(|s| !s.is_empty())
        .ok_or(DpopError::Malformed("malformed DPoP proof signature"))?;
    if !key.verify(signing_input.as_bytes(), &signature) {
        return Err(DpopError::BadSignature);
    }

    // 3. The claims every proof has, read once the signature holds.
    let claims = Claims::read(&claims)?;

    // 8-9. The request.
    if claims.htm != input.method {
        return Err(DpopError::MethodMismatch);
    }
    if !htu::htu_matches(claims.htu, input.origin, input.path) {
        return Err(DpopError::UriMismatch);
    }

    // 10. Nonce.
    let refresh_nonce = match &config.nonce {
        None => false,
        Some(nonces) => {
            let nonce = match claims.nonce {
                None => return Err(DpopError::NonceRequired),
                Some(Value::String(n)) => n,
                Some(_) => return Err(DpopError::NonceInvalid),
            };
            nonces.verify(nonce, input.now)?;
            nonces.needs_refresh(nonce, input.now)
        }
    };

    // 11. Time.
    if claims.iat > input.now.saturating_add_unsigned(config.clock_skew_secs) {
        return Err(DpopError::IssuedInFuture);
    }
    if claims.iat < input.now.saturating_sub_unsigned(config.window_secs()) {
        return Err(DpopError::Stale);
    }

    // 12. The token.
    if let Some(token) = input.access_token {
        let ath = match claims.ath {
            None => return Err(DpopError::MissingAth),
            Some(Value::String(a)) => a,
            Some(_) => return Err(DpopError::Malformed("DPoP proof ath is not a string")),
        };
        let expected = Thumbprint(Sha256::digest(token.as_bytes()).into());
        let matches = Thumbprint::from_x5t_s256(ath).is_some_and(|a| a.ct_eq(&expected));
        if !matches {
            return Err(DpopError::AccessTokenHashMismatch);
        }
    }
    let jkt = key.thumbprint();
    if let Some(bound) = input.token_jkt
        && !bound.ct_eq(&jkt)
    {
        return Err(DpopError::KeyMismatch);
    }

    Ok(VerifiedProof {
        replay_key: ReplayKey::new(&jkt, claims.jti),
        jti: claims.jti.to_string(),
        iat: claims.iat,
        jkt,
        refresh_nonce,
    })
}

/// base64url without padding, then a JSON object with unique member names.
fn decode_object(segment: &str, what: &'static str) -> Result<Map<String, Value>, DpopError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| DpopError::Malformed(what))?;
    parse_object(&bytes).ok_or(DpopError::Malformed(what))
}

/// The claims of a proof, their presence and types checked.
struct Claims<'a> {
    jti: &'a str,
    htm: &'a str,
    htu: &'a str,
    iat: i64,
    nonce: Option<&'a Value>,
    ath: Option<&'a Value>,
}

impl<'a> Claims<'a> {
    fn read(claims: &'a Map<String, Value>) -> Result<Claims<'a>, DpopError> {
        let string = |name: &str, what: &'static str| -> Result<&'a str, DpopError> {
            claims
                .get(name)
                .and_then(Value::as_str)
                .ok_or(DpopError::Malformed(what))
        };
        let jti = string("jti", "DPoP proof jti missing or not a string")?;
        if jti.is_empty() || jti.len() > MAX_JTI_BYTES {
            return Err(DpopError::Malformed("DPoP proof jti empty or too long"));
        }
        Ok(Claims {
            jti,
            htm: string("htm", "DPoP proof htm missing or not a string")?,
            htu: string("htu", "DPoP proof htu missing or not a string")?,
            iat: claims
                .get("iat")
                .and_then(numeric_date)
                .ok_or(DpopError::Malformed("DPoP proof iat missing or invalid"))?,
            nonce: claims.get("nonce"),
            ath: claims.get("ath"),
        })
    }
}
