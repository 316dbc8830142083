//! Shared by the signature verifier tests (`tests/rsa_pkcs1.rs`,
//! `tests/eddsa.rs`): real signatures, corrupted one bit at a time, judged
//! by certbound's verifier and by the generic one it replaced.
#![allow(dead_code)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// A compact JWS's signing input and decoded signature.
pub fn split(token: &str) -> (&str, Vec<u8>) {
    let (input, sig) = token.rsplit_once('.').expect("compact JWS");
    (input, URL_SAFE_NO_PAD.decode(sig).expect("base64url"))
}

/// Single-bit corruptions at positions drawn by xorshift64 from a seed.
pub struct Flips(u64);

impl Flips {
    pub fn new(seed: u64) -> Flips {
        Flips(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// `n` times, flips one bit of `sig`: certbound's verifier (`ours`, on
    /// the signature's bytes) must agree with the generic one (`theirs`,
    /// on the compact JWS `input.signature`), and both must refuse.
    pub fn check(
        &mut self,
        n: usize,
        input: &str,
        sig: &[u8],
        ours: impl Fn(&[u8]) -> bool,
        theirs: impl Fn(&str) -> bool,
    ) {
        for _ in 0..n {
            let mut s = sig.to_vec();
            let bit = (self.next() % (s.len() as u64 * 8)) as usize;
            s[bit / 8] ^= 1 << (bit % 8);
            let forged = format!("{input}.{}", URL_SAFE_NO_PAD.encode(&s));
            let generic = theirs(&forged);
            assert_eq!(ours(&s), generic, "bit {bit}");
            assert!(
                !generic,
                "bit {bit}: the generic verifier accepted a flipped bit"
            );
        }
    }
}
