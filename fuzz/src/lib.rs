//! Shared fixtures and oracles of the certbound fuzz targets.
//!
//! Everything comes from the committed vectors (tests/vectors/vectors.json):
//! the JWKS, the certificates, the tokens and the fixed clock `now`. Nothing
//! here reads the system clock or the network.

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use certbound::TokenCache;
use certbound::parse_object;
use certbound::{BindingMode, Policy, Provider, Requirement, TokenSource};
use certbound::{KeyRing, KeySet};
use certbound::{Rejection, VerifiedToken};
use certbound::{Thumbprint, thumbprint_of_pem};
use serde_json::{Map, Value, json};

/// Vector tokens whose signature is not a signature by a vectors key over
/// exactly their bytes (or that are not a JWS at all). No policy may accept
/// them; `fixtures()` checks that before any fuzzing starts.
pub const FORGED: &[&str] = &[
    "alg_NONE",
    "alg_None",
    "alg_nOnE",
    "alg_none",
    "der_signature",
    "embedded_jwk",
    "four_segments",
    "hs256_with_public_key",
    "jku",
    "jwe_shaped",
    "noncanonical_signature",
    "padded_signature",
    "sig_r_n",
    "sig_r_zero",
    "sig_s_zero",
    "tampered_payload",
    "two_segments",
    "wrong_key",
];

/// The issuer of the second provider of the decision policies. The vectors'
/// `wrong_iss` token is a genuine ES256 token from that issuer.
pub const OTHER_ISSUER: &str = "https://evil.example.com";

/// One token of the vectors, decoded once.
#[derive(Debug)]
pub struct VectorToken {
    pub name: String,
    pub token: String,
    /// The protected header, when it is a strict JSON object.
    pub header: Option<Map<String, Value>>,
    /// The claims, when they are a strict JSON object.
    pub claims: Option<Map<String, Value>>,
    pub forged: bool,
}

/// A policy for `jwt_verify`, its local keys, and the vector tokens it
/// accepts at `now`.
pub struct VerifyPolicy {
    pub name: &'static str,
    pub policy: Policy,
    pub keys: KeyRing,
    pub accepted: BTreeSet<String>,
}

/// One of the vectors' key sets, as JSON (for the oracle's model) and parsed
/// (to install in a `KeyRing`).
pub struct NamedKeySet {
    pub name: &'static str,
    pub json: Value,
    pub keys: Arc<KeySet>,
}

pub struct Fixtures {
    pub vectors: Value,
    pub now: i64,
    /// Sorted by name.
    pub tokens: Vec<VectorToken>,
    pub jwks: String,
    pub client_a: Thumbprint,
    pub client_b: Thumbprint,
    pub ca: Thumbprint,
    pub verify_policies: Vec<VerifyPolicy>,
    /// jwks, single_jwks, messy_jwks, weak_jwks; the first is the one every
    /// decision provider starts with.
    pub key_sets: Vec<NamedKeySet>,
    /// Decision policy with rules of every kind.
    pub rules_policy: Policy,
    /// The same providers and no rules (a token from any provider).
    pub default_policy: Policy,
}

pub fn fixtures() -> &'static Fixtures {
    static F: OnceLock<Fixtures> = OnceLock::new();
    F.get_or_init(build)
}

fn vec_str<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    let mut cur = v;
    for p in path {
        cur = cur.get(*p).unwrap_or(&Value::Null);
    }
    cur.as_str()
        .unwrap_or_else(|| panic!("vectors.json has no string at {path:?}"))
}

fn decode_segment(s: Option<&str>) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(s?).ok()?;
    parse_object(&bytes)
}

fn env_jwks(_: &str) -> Option<String> {
    Some(fixtures_jwks().to_string())
}

fn fixtures_jwks() -> &'static str {
    static J: OnceLock<String> = OnceLock::new();
    J.get_or_init(|| vectors()["jwks"].to_string())
}

/// The parsed vectors file.
pub fn vectors() -> &'static Value {
    static V: OnceLock<Value> = OnceLock::new();
    V.get_or_init(|| {
        serde_json::from_str(include_str!("../../tests/vectors/vectors.json"))
            .expect("tests/vectors/vectors.json is valid JSON")
    })
}

/// `certbound::Environment` for the fuzz targets: every variable name resolves
/// to the vectors' JWKS.
pub fn env() -> impl Fn(&str) -> Option<String> {
    env_jwks
}

fn parse_policy(cfg: &Value) -> Policy {
    certbound::parse(cfg.to_string().as_bytes(), &env())
        .unwrap_or_else(|e| panic!("fixture policy refused: {e}\n{cfg}"))
}

/// `verify::verify` with the given keys and no cache.
pub fn verify_uncached(
    policy: &Policy,
    keys: &KeyRing,
    token: &str,
    now: i64,
) -> Result<Arc<VerifiedToken>, Rejection> {
    certbound::verify_cached(
        policy,
        keys,
        &mut TokenCache::new(0),
        token,
        now,
        certbound::Audiences::OfProvider,
    )
}

fn build() -> Fixtures {
    let v = vectors().clone();
    let now = v["now"].as_i64().expect("vectors.now");
    let issuer = vec_str(&v, &["issuer"]).to_string();
    let audience = vec_str(&v, &["audience"]).to_string();
    let jwks = v["jwks"].to_string();
    let single = v["single_jwks"].to_string();

    let mut tokens: Vec<VectorToken> = v["tokens"]
        .as_object()
        .expect("vectors.tokens")
        .iter()
        .map(|(name, t)| {
            let token = t.as_str().expect("token string").to_string();
            let mut parts = token.split('.');
            let header = decode_segment(parts.next());
            let claims = decode_segment(parts.next());
            VectorToken {
                forged: FORGED.contains(&name.as_str()),
                name: name.clone(),
                token,
                header,
                claims,
            }
        })
        .collect();
    tokens.sort_by(|a, b| a.name.cmp(&b.name));

    let thumb = |name: &str| {
        thumbprint_of_pem(vec_str(&v, &["certs", name]).as_bytes())
            .unwrap_or_else(|e| panic!("vectors cert {name}: {e:?}"))
    };

    // --- jwt_verify policies ------------------------------------------------
    let full = parse_policy(&json!({"providers": {"idp": {
        "issuer": issuer,
        "audiences": [audience],
        "local_jwks": {"inline_string": jwks},
    }}}));
    // One key without kid, no audience, no exp needed, zero skew, typ listed,
    // a lifetime cap, an algorithm allow-list and a small size cap: the
    // other branches.
    let narrow = parse_policy(&json!({"providers": {"idp": {
        "issuer": issuer,
        "local_jwks": {"inline_string": single},
        "require_expiration": false,
        "clock_skew_seconds": 0,
        "max_lifetime_seconds": 3600,
        "token_types": ["jwt", "application/at+jwt"],
        "algorithms": ["ES256", "EdDSA", "RS256"],
    }}, "max_token_bytes": 512}));
    let mut verify_policies = Vec::new();
    for (name, policy) in [("full", full), ("narrow", narrow)] {
        let keys = KeyRing::for_policy(&policy);
        let accepted: BTreeSet<String> = tokens
            .iter()
            .filter(|t| verify_uncached(&policy, &keys, &t.token, now).is_ok())
            .map(|t| t.token.clone())
            .collect();
        verify_policies.push(VerifyPolicy {
            name,
            policy,
            keys,
            accepted,
        });
    }

    let mut key_sets = Vec::new();
    for name in ["jwks", "single_jwks", "messy_jwks", "weak_jwks"] {
        let json = v[name].clone();
        let (keys, _) = KeySet::parse(&json.to_string())
            .unwrap_or_else(|e| panic!("vectors {name} refused: {e}"));
        key_sets.push(NamedKeySet {
            name,
            json,
            keys: Arc::new(keys),
        });
    }

    // --- decision policies --------------------------------------------------
    let providers = json!({
        "idp": {
            "issuer": issuer,
            "audiences": [audience],
            "local_jwks": {"environment_variable": "JWKS"},
            "from_headers": [
                {"name": "Authorization", "value_prefix": "Bearer "},
                {"name": "x-token"}
            ],
            "from_params": ["access_token"],
            "from_cookies": ["at"],
            "claim_to_headers": [
                {"claim_name": "sub", "header_name": "x-jwt-sub"},
                {"claim_name": "org.id", "header_name": "X-Org"},
                {"claim_name": "scope", "header_name": "x-scope"},
                {"claim_name": "aud", "header_name": "x-aud"}
            ],
            "forward_payload_header": "x-jwt-payload",
            "thumbprint_header": "x-client-thumbprint",
            "max_lifetime_seconds": 3600
        },
        "other": {
            "issuer": OTHER_ISSUER,
            "local_jwks": {"inline_string": jwks},
            "certificate_binding": "when_present",
            "require_expiration": false,
            "clock_skew_seconds": 0,
            "from_headers": [
                {"name": "authorization", "value_prefix": "Bearer "},
                {"name": "x-other-token", "value_prefix": "tok="}
            ],
            "forward": true,
            "claim_to_headers": [{"claim_name": "sub", "header_name": "x-other-sub"}],
            "thumbprint_header": "x-other-thumbprint"
        }
    });
    let rules = json!([
        {"match": {"path": "/public"}},
        {"match": {"prefix": "/orders"}, "requires": {"provider_name": "idp"},
         "required_scopes": ["orders:read"]},
        {"match": {"prefix": "/any"}, "requires": {"requires_any": {"requirements": [
            {"provider_name": "other"}, {"provider_name": "idp"}]}}},
        {"match": {"prefix": "/all"}, "requires": {"requires_all": [
            {"provider_name": "idp"}, {"allow_missing": {}}]}},
        {"match": {"prefix": "/optional"}, "requires": {"allow_missing": {}}},
        {"match": {"prefix": "/lenient"}, "requires": {"allow_missing_or_failed": {}}},
        {"match": {"prefix": "/other"}, "requires": {"provider_name": "other"}},
        {"match": {"prefix": "/mixed"}, "requires": {"requires_any": [
            {"allow_missing": {}}, {"provider_name": "idp"}]},
         "required_scopes": ["orders:read"]},
        {"match": {"prefix": "/nested"}, "requires": {"requires_all": [
            {"requires_any": [{"provider_name": "other"}, {"allow_missing_or_failed": {}}]},
            {"requires_any": [{"provider_name": "idp"}, {"provider_name": "other"}]}]}},
        {"match": {"prefix": "/idp"}, "requires": {"provider_name": "idp"}}
    ]);
    let rules_policy = parse_policy(&json!({"providers": providers, "rules": rules}));
    let default_policy = parse_policy(&json!({"providers": providers}));

    let f = Fixtures {
        now,
        tokens,
        jwks,
        client_a: thumb("client_a"),
        client_b: thumb("client_b"),
        ca: thumb("ca"),
        verify_policies,
        key_sets,
        rules_policy,
        default_policy,
        vectors: v,
    };
    sanity_check(&f);
    f
}

/// The oracles are only as good as the fixtures: refuse to fuzz when the
/// vectors do not say what the oracles assume.
fn sanity_check(f: &Fixtures) {
    for vp in &f.verify_policies {
        for t in &f.tokens {
            if t.forged {
                assert!(
                    !vp.accepted.contains(&t.token),
                    "policy {}: forged vector {} verifies",
                    vp.name,
                    t.name
                );
            }
        }
    }
    let full = &f.verify_policies[0];
    for t in f.tokens.iter().filter(|t| t.name.starts_with("good_")) {
        assert!(
            full.accepted.contains(&t.token),
            "policy full: {} does not verify",
            t.name
        );
    }
    assert!(
        !f.verify_policies[1].accepted.is_empty(),
        "policy narrow accepts no vector token"
    );
    // The oracle's key model agrees with the vectors' intent.
    let tok = |name: &str| {
        f.tokens
            .iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("no vector token {name}"))
    };
    let set = |name: &str| {
        &f.key_sets
            .iter()
            .find(|k| k.name == name)
            .unwrap_or_else(|| panic!("no key set {name}"))
            .json
    };
    for (t, s, want) in [
        ("good_ES256", "jwks", true),
        ("good_RS256", "jwks", true),
        ("good_EdDSA", "jwks", true),
        ("good_Ed25519", "jwks", true),
        ("good_ES384", "jwks", true),
        ("no_kid", "jwks", false),
        ("kid_wrong_alg", "jwks", false),
        ("unknown_kid", "jwks", false),
        ("single_no_kid", "single_jwks", true),
        ("good_ES256", "single_jwks", false),
        ("good_ES256", "messy_jwks", true),
        ("good_RS256", "messy_jwks", false),
        ("good_ES256", "weak_jwks", true),
    ] {
        assert_eq!(model_verifies(tok(t), set(s)), want, "model: {t} under {s}");
    }
}

// ---------------------------------------------------------------------------
// Independent model of "this vector token is acceptable", for the decision
// oracle. It never calls certbound's verification code; it reads the
// vectors' claims and applies RFC 7519 / RFC 8705 rules directly.
// ---------------------------------------------------------------------------

fn numeric(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f.trunc() as i64)),
        _ => None,
    }
}

const RSA_ALGS: [&str; 6] = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"];

/// A usable key of a JWKS, in the model.
struct ModelKey<'a> {
    kid: Option<&'a str>,
    algs: Vec<&'static str>,
    json: &'a Value,
}

/// The keys of a vectors JWKS that RFC 7517/7518 and RFC 8725 let a
/// verifier use. Keys with `use` other than `sig`, unsupported `kty`/`crv`,
/// an `alg` that does not fit, RSA moduli outside 2048..=4096 bits, or a
/// `kid` already taken are left out.
fn model_keys(jwks: &Value) -> Vec<ModelKey<'_>> {
    let mut out: Vec<ModelKey<'_>> = Vec::new();
    let keys = jwks.get("keys").and_then(Value::as_array);
    for key in keys.into_iter().flatten().take(64) {
        if key.get("use").is_some_and(|u| u.as_str() != Some("sig")) {
            continue;
        }
        let kty = key.get("kty").and_then(Value::as_str).unwrap_or("");
        let crv = key.get("crv").and_then(Value::as_str);
        let candidates: Vec<&'static str> = match (kty, crv) {
            ("RSA", _) => {
                let n = key.get("n").and_then(Value::as_str).unwrap_or("");
                let n = URL_SAFE_NO_PAD.decode(n).unwrap_or_default();
                let first = n.iter().position(|b| *b != 0).unwrap_or(n.len());
                if !(256..=512).contains(&(n.len() - first)) {
                    continue;
                }
                RSA_ALGS.to_vec()
            }
            ("EC", Some("P-256")) => vec!["ES256"],
            ("EC", Some("P-384")) => vec!["ES384"],
            ("OKP", Some("Ed25519")) => vec!["EdDSA", "Ed25519"],
            _ => continue,
        };
        let algs = match key.get("alg") {
            None => candidates,
            Some(a) => match candidates.iter().find(|c| a.as_str() == Some(**c)) {
                Some(c) => vec![*c],
                None => continue,
            },
        };
        let kid = match key.get("kid") {
            None => None,
            Some(Value::String(k)) => Some(k.as_str()),
            Some(_) => continue,
        };
        if kid.is_some() && out.iter().any(|k| k.kid == kid) {
            continue;
        }
        out.push(ModelKey {
            kid,
            algs,
            json: key,
        });
    }
    out
}

/// The vectors key each vector token was signed with: the one its `kid`
/// names, or for the two tokens without one (`no_kid`, `single_no_kid`),
/// the P-256 key that make_vectors.py signs ES256 tokens with.
fn signing_key(t: &VectorToken) -> Option<&'static Value> {
    let jwks = vectors().get("jwks")?.get("keys")?.as_array()?;
    match t.header.as_ref()?.get("kid") {
        Some(k) => jwks.iter().find(|j| j.get("kid") == Some(k)),
        None => jwks
            .iter()
            .find(|j| j.get("crv").and_then(Value::as_str) == Some("P-256")),
    }
}

/// Whether key set `jwks` verifies genuine vector token `t`: the key chosen
/// by `kid` (or the only key, when `t` names none) fits `alg` and is the
/// key material `t` was signed with.
fn model_verifies(t: &VectorToken, jwks: &Value) -> bool {
    let Some(h) = &t.header else { return false };
    let alg = h.get("alg").and_then(Value::as_str).unwrap_or("");
    let kid = match h.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.as_str()),
        Some(_) => return false,
    };
    let keys = model_keys(jwks);
    let chosen = match kid {
        Some(k) => keys.iter().find(|m| m.kid == Some(k)),
        None if keys.len() == 1 => keys.first(),
        None => None,
    };
    let Some(chosen) = chosen.filter(|m| m.algs.contains(&alg)) else {
        return false;
    };
    let material = |k: &Value| ["kty", "crv", "n", "e", "x", "y"].map(|m| k.get(m).cloned());
    signing_key(t).is_some_and(|signer| material(chosen.json) == material(signer))
}

/// Why vector token `t` must not be accepted for provider `p` at `now` with
/// client certificate `cert` and required scopes `scopes`; `None` if it may.
/// `jwks` is the key set in force for `p`. Assumes `p` allows every
/// algorithm and has no `token_types` (true of the decision policies).
pub fn why_not_acceptable(
    t: &VectorToken,
    p: &Provider,
    jwks: &Value,
    now: i64,
    cert: Option<Thumbprint>,
    scopes: &[String],
) -> Option<String> {
    if t.forged {
        return Some("forged vector".into());
    }
    let (Some(h), Some(c)) = (&t.header, &t.claims) else {
        return Some("not a strict-JSON JWS".into());
    };
    // Header: a key in force for kid and alg that signed it; no crit; typ
    // JWT or *+jwt.
    if !model_verifies(t, jwks) {
        return Some("no key in force verifies it".into());
    }
    if h.contains_key("crit") {
        return Some("crit".into());
    }
    if let Some(typ) = h.get("typ") {
        let typ = typ.as_str().unwrap_or("").to_ascii_lowercase();
        let typ = typ.strip_prefix("application/").unwrap_or(&typ);
        if typ != "jwt" && !typ.ends_with("+jwt") {
            return Some(format!("typ {typ}"));
        }
    }
    // Claims.
    if c.get("iss").and_then(Value::as_str) != Some(p.issuer.as_str()) {
        return Some("iss is not the provider's".into());
    }
    if !p.audiences.is_empty() {
        let ok = match c.get("aud") {
            Some(Value::String(a)) => p.audiences.contains(a),
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .any(|a| p.audiences.iter().any(|x| x == a)),
            _ => false,
        };
        if !ok {
            return Some("aud".into());
        }
    }
    let skew = i64::try_from(p.clock_skew).unwrap_or(i64::MAX);
    let exp = c.get("exp").map(numeric);
    let nbf = c.get("nbf").map(numeric);
    let iat = c.get("iat").map(numeric);
    if matches!(exp, Some(None)) || matches!(nbf, Some(None)) || matches!(iat, Some(None)) {
        return Some("time claim not a number".into());
    }
    let (exp, nbf, iat) = (exp.flatten(), nbf.flatten(), iat.flatten());
    match exp {
        None if p.require_expiration || p.max_lifetime.is_some() => {
            return Some("no exp".into());
        }
        Some(e) if i128::from(now) >= i128::from(e) + i128::from(skew) => {
            return Some("expired".into());
        }
        _ => {}
    }
    for (name, v) in [("nbf", nbf), ("iat", iat)] {
        if let Some(v) = v
            && i128::from(v) > i128::from(now) + i128::from(skew)
        {
            return Some(format!("{name} in the future"));
        }
    }
    if let (Some(max), Some(e)) = (p.max_lifetime, exp) {
        let max = i128::from(max);
        if i128::from(e) - i128::from(now) > max {
            return Some("lifetime (exp - now)".into());
        }
        if let Some(i) = iat
            && i128::from(e) - i128::from(i) > max
        {
            return Some("lifetime (exp - iat)".into());
        }
    }
    // RFC 8705 §3 binding.
    match c.get("cnf") {
        None => {
            if p.binding == BindingMode::Required {
                return Some("unbound token, binding required".into());
            }
        }
        Some(Value::Object(cnf)) => {
            let Some(Value::String(x5t)) = cnf.get("x5t#S256") else {
                return Some("cnf without x5t#S256".into());
            };
            match cert {
                Some(th) if th.to_base64url() == *x5t => {}
                Some(_) => return Some("bound to another certificate".into()),
                None => return Some("bound, no client certificate".into()),
            }
        }
        Some(_) => return Some("cnf not an object".into()),
    }
    // RFC 6750 §3.1 scopes, from `scope` or `scp`.
    let mut granted: Vec<&str> = Vec::new();
    if let Some(Value::String(s)) = c.get("scope") {
        granted.extend(s.split(' '));
    }
    match c.get("scp") {
        Some(Value::String(s)) => granted.extend(s.split(' ')),
        Some(Value::Array(a)) => granted.extend(a.iter().filter_map(Value::as_str)),
        _ => {}
    }
    if let Some(s) = scopes.iter().find(|s| !granted.contains(&s.as_str())) {
        return Some(format!("scope {s} not granted"));
    }
    None
}

/// The values at the places provider `p` reads tokens from, in a request:
/// a superset of what certbound extracts (header prefixes compare without
/// case for every header, not only `Authorization`).
pub fn values_read_by<'a>(
    p: &'a Provider,
    path: &'a str,
    headers: &'a [(String, String)],
) -> Vec<&'a str> {
    let trim = |v: &'a str| v.trim_matches([' ', '\t']);
    let mut out = Vec::new();
    for s in &p.sources {
        match s {
            TokenSource::Header { name, prefix } => {
                for (_, v) in headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)) {
                    let head = v.get(..prefix.len());
                    if head.is_some_and(|h| h.eq_ignore_ascii_case(prefix)) {
                        out.push(trim(v.get(prefix.len()..).unwrap_or("")));
                    }
                }
            }
            TokenSource::Param(param) => {
                let query = path.split_once('?').map_or("", |(_, q)| q);
                let query = query.split('#').next().unwrap_or("");
                for kv in query.split('&') {
                    if let Some((k, v)) = kv.split_once('=')
                        && k == param
                    {
                        out.push(v);
                    }
                }
            }
            TokenSource::Cookie(cookie) => {
                for (_, v) in headers
                    .iter()
                    .filter(|(n, _)| n.eq_ignore_ascii_case("cookie"))
                {
                    for kv in v.split(';') {
                        if let Some((k, v)) = kv.trim().split_once('=')
                            && k == cookie
                        {
                            out.push(v.trim_matches('"'));
                        }
                    }
                }
            }
        }
    }
    out
}

/// Whether a route's requirement can only be met with a verified token.
pub fn needs_token(r: &Requirement) -> bool {
    match r {
        Requirement::Provider(_) | Requirement::ProviderAudiences(..) => true,
        Requirement::Any(list) => list.iter().all(needs_token),
        Requirement::All(list) => list.iter().any(needs_token),
        Requirement::AllowMissing | Requirement::AllowMissingOrFailed => false,
    }
}
