//! The `WWW-Authenticate: DPoP ...` challenge (RFC 9449 §7.1).

use super::error::ErrorCode;
use crate::jose::alg::Alg;

/// `DPoP algs="ES256 PS256", error="...", error_description="..."`.
///
/// `algs` (omitted when empty) lists the algorithms proofs may use;
/// without `error` the challenge is bare, as for a request with no
/// credentials (RFC 6750 §3.1). The description is made header-safe: every
/// character outside RFC 6750 §3's `error_description` set (%x20-21,
/// %x23-5B, %x5D-7E; no `"`, no `\`, no control or non-ASCII character)
/// becomes `?`.
pub fn challenge(algs: &[Alg], error: Option<(ErrorCode, &str)>) -> String {
    let mut out = String::from("DPoP");
    let mut sep = " ";
    if !algs.is_empty() {
        out.push_str(sep);
        out.push_str("algs=\"");
        for (i, alg) in algs.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            out.push_str(alg.name());
        }
        out.push('"');
        sep = ", ";
    }
    if let Some((code, description)) = error {
        out.push_str(sep);
        out.push_str("error=\"");
        out.push_str(code.as_str());
        out.push_str("\", error_description=\"");
        out.extend(description.chars().map(|c| match c {
            ' ' | '!' | '#'..='[' | ']'..='~' => c,
            _ => '?',
        }));
        out.push('"');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binding::dpop::{DpopConfig, DpopError};

    /// The challenge for a failed check: its error code and description.
    fn challenge_for(algs: &[Alg], error: &DpopError) -> String {
        challenge(algs, Some((error.error_code(), error.description())))
    }

    #[test]
    fn the_default_configuration_names_its_algorithms() {
        let algs = DpopConfig::default().algorithms;
        assert_eq!(challenge(&algs, None), "DPoP algs=\"ES256 PS256 EdDSA\"");
        assert_eq!(
            challenge_for(&algs, &DpopError::UriMismatch),
            "DPoP algs=\"ES256 PS256 EdDSA\", error=\"invalid_dpop_proof\", \
             error_description=\"DPoP proof htu does not match the request URI\""
        );
    }

    #[test]
    fn challenges() {
        let algs = [Alg::ES256, Alg::PS256, Alg::EdDSA];
        assert_eq!(challenge(&algs, None), "DPoP algs=\"ES256 PS256 EdDSA\"");
        assert_eq!(challenge(&[], None), "DPoP");
        assert_eq!(
            challenge_for(&algs, &DpopError::Replayed),
            "DPoP algs=\"ES256 PS256 EdDSA\", error=\"invalid_dpop_proof\", \
             error_description=\"DPoP proof replayed\""
        );
        assert_eq!(
            challenge_for(&[Alg::ES256], &DpopError::NonceRequired),
            "DPoP algs=\"ES256\", error=\"use_dpop_nonce\", \
             error_description=\"DPoP proof nonce required\""
        );
        assert_eq!(
            challenge(
                &[],
                Some((ErrorCode::InvalidToken, "a \"b\" \\c\r\n\u{e9}"))
            ),
            "DPoP error=\"invalid_token\", error_description=\"a ?b? ?c???\""
        );
    }
}
