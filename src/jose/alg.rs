//! The JWS algorithms certbound verifies, by name.

/// The signature algorithms certbound verifies (RFC 7518 §3.1, RFC 8037 §3.1,
/// RFC 9864 §2.2). `none` and the HMAC family are deliberately absent
/// (RFC 8725 §3.1-3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize)]
#[non_exhaustive]
pub enum Alg {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    /// Polymorphic EdDSA (RFC 8037), deprecated by RFC 9864 §4.1.2 but
    /// what most issuers still send; certbound verifies it with Ed25519 keys.
    EdDSA,
    /// Fully-specified Ed25519 (RFC 9864 §2.2).
    Ed25519,
}

impl Alg {
    pub const ALL: [Alg; 10] = [
        Alg::RS256,
        Alg::RS384,
        Alg::RS512,
        Alg::PS256,
        Alg::PS384,
        Alg::PS512,
        Alg::ES256,
        Alg::ES384,
        Alg::EdDSA,
        Alg::Ed25519,
    ];
    pub const RSA: [Alg; 6] = [
        Alg::RS256,
        Alg::RS384,
        Alg::RS512,
        Alg::PS256,
        Alg::PS384,
        Alg::PS512,
    ];

    /// The JWS `alg` name. Matching is exact and case-sensitive (RFC 7515 §4.1.1).
    pub fn from_name(name: &str) -> Option<Alg> {
        Alg::ALL.into_iter().find(|a| a.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
            Alg::PS256 => "PS256",
            Alg::PS384 => "PS384",
            Alg::PS512 => "PS512",
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
            Alg::EdDSA => "EdDSA",
            Alg::Ed25519 => "Ed25519",
        }
    }
}
