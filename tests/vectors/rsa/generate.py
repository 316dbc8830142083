#!/usr/bin/env python3
"""Writes rsa_vectors.json beside this file: RSA keys of odd sizes and
JWS signatures under them, valid and malformed, for tests/crypto_rsa.rs.

    python3 tests/vectors/rsa/generate.py   # needs `cryptography` (OpenSSL)
    python3 tests/vectors/rsa/generate.py --fuzz-keys

The second form writes only fuzz_<bits>.pk8 beside this file instead: the
PKCS #8 private keys (test keys, nothing else) with which the
`verify_oracle` fuzz target signs, so that its inputs reproduce.

Keys are fresh on every run (OpenSSL's key generation takes no seed); the
committed file is what the tests read. For each key in the 2048-4096 bit
range that certbound accepts, and each of RS256/384/512 and PS256/384/512,
it holds valid signatures (including one whose first octet is zero, when
one turns up), signatures of other messages, and encodings malformed in
one place each, signed with the raw private operation (m^d mod n) so that
the padding is exactly the bytes described. Keys outside the range (2047
and 4097 bits, e = 3) carry valid signatures that certbound must refuse
at key import.
"""

import base64
import hashlib
import json
import math
import os
import secrets
import sys

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

HERE = os.path.dirname(os.path.abspath(__file__))
SIZES = [2049, 2057, 2065, 2113, 3073, 4095]
REFUSED = [(2047, 65537), (4097, 65537), (2048, 3)]
HASHES = {"256": ("sha256", hashes.SHA256), "384": ("sha384", hashes.SHA384),
          "512": ("sha512", hashes.SHA512)}
OID_BYTE = {"256": 1, "384": 2, "512": 3}
MESSAGE = b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9"
OTHER = b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJtYWxsb3J5In0"


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def i2osp(x, length):
    return x.to_bytes(length, "big")


def digest_info(h, digest, params=True, oid_byte=None):
    oid = bytes([0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                 oid_byte if oid_byte is not None else OID_BYTE[h]])
    alg = oid + (b"\x05\x00" if params else b"")
    alg = bytes([0x30, len(alg)]) + alg
    octets = bytes([0x04, len(digest)]) + digest
    body = alg + octets
    return bytes([0x30, len(body)]) + body


def pkcs1_em(k, t, first=0x00, block=0x01, ps_byte=0xFF, sep=0x00, trailing=b""):
    ps_len = k - len(t) - 3 - len(trailing)
    return bytes([first, block]) + bytes([ps_byte]) * ps_len + bytes([sep]) + t + trailing


def mgf1(hname, seed, length):
    out = b""
    counter = 0
    while len(out) < length:
        out += hashlib.new(hname, seed + counter.to_bytes(4, "big")).digest()
        counter += 1
    return out[:length]


def pss_em(hname, message, em_bits, salt, mgf_hash=None, tweak=None):
    """EMSA-PSS-ENCODE (RFC 8017 9.1.1); `tweak` changes one thing."""
    h_len = hashlib.new(hname).digest_size
    em_len = (em_bits + 7) // 8
    m_hash = hashlib.new(hname, message).digest()
    h = hashlib.new(hname, b"\x00" * 8 + m_hash + salt).digest()
    if tweak == "hash":
        h = bytes([h[0] ^ 1]) + h[1:]
    ps = bytearray(em_len - len(salt) - h_len - 2)
    sep = 0x01
    if tweak == "ps" and ps:
        ps[len(ps) // 2] = 0x01
    if tweak == "separator":
        sep = 0x02
    if tweak == "no-separator":
        sep = 0x00
    db = bytes(ps) + bytes([sep]) + salt
    mask = mgf1(mgf_hash or hname, h, len(db))
    masked = bytearray(a ^ b for a, b in zip(db, mask))
    unused = 8 * em_len - em_bits
    masked[0] &= 0xFF >> unused
    if tweak == "top-bit" and unused:
        masked[0] |= 0x80
    trailer = 0xBB if tweak == "trailer" else 0xBC
    return bytes(masked) + h + bytes([trailer])


def is_probable_prime(n, rounds=40):
    """Miller-Rabin with random bases."""
    if n < 4:
        return n in (2, 3)
    for p in (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37):
        if n % p == 0:
            return n == p
    d, r = n - 1, 0
    while d % 2 == 0:
        d, r = d // 2, r + 1
    for _ in range(rounds):
        x = pow(secrets.randbelow(n - 3) + 2, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def prime(bits, e):
    """A prime of exactly `bits` bits, its top two bits set (so that the
    product of two such primes has exactly the sum of their sizes), with
    gcd(p - 1, e) = 1."""
    while True:
        p = secrets.randbits(bits) | (3 << (bits - 2)) | 1
        if math.gcd(p - 1, e) == 1 and is_probable_prime(p):
            return p


def private_key(bits, e):
    """An RSA key whose modulus has exactly `bits` bits (OpenSSL's key
    generation rounds odd sizes down)."""
    p, q = prime((bits + 1) // 2, e), prime(bits // 2, e)
    d = pow(e, -1, math.lcm(p - 1, q - 1))
    numbers = rsa.RSAPrivateNumbers(
        p, q, d, rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q), rsa.rsa_crt_iqmp(p, q),
        rsa.RSAPublicNumbers(e, p * q))
    return numbers.private_key()


class Key:
    def __init__(self, bits, e=65537):
        self.private = private_key(bits, e)
        numbers = self.private.private_numbers()
        self.n = numbers.public_numbers.n
        self.e = numbers.public_numbers.e
        self.d = numbers.d
        self.bits = self.n.bit_length()
        self.k = (self.bits + 7) // 8
        self.cases = []

    def raw(self, em_int):
        """The signature whose RSAVP1 image is em_int, or None if >= n."""
        if em_int >= self.n:
            return None
        return i2osp(pow(em_int, self.d, self.n), self.k)

    def add(self, alg, message, sig, valid, comment):
        if sig is not None:
            self.cases.append({"alg": alg, "msg": b64(message), "sig": b64(sig),
                               "valid": valid, "comment": comment})

    def sign(self, alg, message, salt=None, mgf=None):
        h = HASHES[alg[2:]][1]()
        if alg.startswith("RS"):
            return self.private.sign(message, padding.PKCS1v15(), h)
        salt = h.digest_size if salt is None else salt
        return self.private.sign(message, padding.PSS(
            mgf=padding.MGF1(mgf() if mgf else h), salt_length=salt), h)

    def json(self):
        return {"bits": self.bits, "n": b64(i2osp(self.n, self.k)),
                "e": b64(i2osp(self.e, (self.e.bit_length() + 7) // 8)),
                "cases": self.cases}


def signature_level(key, alg, sig):
    """Malformations of a valid signature as an octet string or integer."""
    key.add(alg, MESSAGE, sig[:-1], False, "truncated: last octet dropped")
    key.add(alg, MESSAGE, sig[1:], False, "truncated: first octet dropped")
    key.add(alg, MESSAGE, sig + b"\x00", False, "extended: a zero octet appended")
    key.add(alg, MESSAGE, b"\x00" + sig, False, "extended: a zero octet prepended")
    key.add(alg, MESSAGE, b"", False, "empty")
    key.add(alg, MESSAGE, i2osp(key.n, key.k), False, "s = n")
    s = int.from_bytes(sig, "big")
    if s + key.n < 1 << (8 * key.k):
        key.add(alg, MESSAGE, i2osp(s + key.n, key.k), False, "s + n (>= n)")
    key.add(alg, MESSAGE, b"\xff" * key.k, False, "all ones (>= n)")
    key.add(alg, MESSAGE, i2osp(0, key.k), False, "s = 0")
    key.add(alg, MESSAGE, i2osp(1, key.k), False, "s = 1")
    key.add(alg, MESSAGE, i2osp(key.n - 1, key.k), False, "s = n - 1")
    key.add(alg, OTHER, sig, False, "another message")
    key.add(alg, b"", sig, False, "empty message")


def leading_zero(key, alg):
    """A valid signature whose first octet is zero, and it without that
    octet (k - 1 octets: refused, RFC 8017 8.x.2 step 1)."""
    for i in range(400):
        message = MESSAGE + b"." + str(i).encode()
        sig = key.sign(alg, message)
        if sig[0] == 0:
            key.add(alg, message, sig, True, "valid, first octet zero")
            key.add(alg, message, sig[1:], False, "leading zero octet stripped")
            return


def pkcs1_cases(key, alg):
    h = alg[2:]
    hname = HASHES[h][0]
    digest = hashlib.new(hname, MESSAGE).digest()
    t = digest_info(h, digest)
    raw = lambda em: key.raw(int.from_bytes(em, "big"))  # noqa: E731
    key.add(alg, MESSAGE, key.sign(alg, MESSAGE), True, "valid")
    key.add(alg, b"", key.sign(alg, b""), True, "valid, empty message")
    key.add(alg, MESSAGE, raw(pkcs1_em(key.k, t)), True, "valid, raw encoding")
    bad = [
        (pkcs1_em(key.k, t, first=0x01), "first octet 0x01"),
        (pkcs1_em(key.k, t, block=0x02), "block type 2"),
        (pkcs1_em(key.k, t, block=0x00), "block type 0"),
        (pkcs1_em(key.k, t, ps_byte=0xFE), "padding octets 0xfe"),
        (pkcs1_em(key.k, t, ps_byte=0x00), "padding octets zero"),
        (pkcs1_em(key.k, t, sep=0x01), "separator 0x01"),
        (pkcs1_em(key.k, t, sep=0xFF), "no separator (0xff)"),
        (pkcs1_em(key.k, t, trailing=b"\x00"), "a zero octet after the digest"),
        (pkcs1_em(key.k, t, trailing=b"\xff" * 4), "garbage after the digest"),
        (pkcs1_em(key.k, digest_info(h, digest, params=False)),
         "DigestInfo without NULL parameters"),
        (pkcs1_em(key.k, digest_info(h, digest, oid_byte=OID_BYTE[h] % 3 + 1)),
         "DigestInfo with another hash's OID"),
        (pkcs1_em(key.k, digest_info(h, hashlib.new(hname, OTHER).digest())),
         "digest of another message"),
        (pkcs1_em(key.k, t[:-1] + bytes([t[-1] ^ 1])), "digest, last bit flipped"),
        (pkcs1_em(key.k, t[:1] + bytes([0x81]) + t[1:]), "BER long-form length"),
        (pkcs1_em(key.k, bytes([t[0], t[1] + 1]) + t[2:] + b"\x00"),
         "DigestInfo length one more, a zero octet after"),
        (pkcs1_em(key.k, digest), "bare digest, no DigestInfo"),
    ]
    # Padding of only 7 octets: the DigestInfo follows junk that fills k.
    short = bytes([0x00, 0x01]) + b"\xff" * 7 + b"\x00" + t
    short = short + b"\x00" * (key.k - len(short))
    bad.append((short, "padding of 7 octets, DigestInfo not at the end"))
    for em, comment in bad:
        key.add(alg, MESSAGE, raw(em), False, comment)
    # m too large: EM plus 2^(8(k-1)) (the first octet nonzero).
    key.add(alg, MESSAGE, key.raw(int.from_bytes(pkcs1_em(key.k, t), "big") + (1 << (8 * (key.k - 1)))),
            False, "first octet 0x01 (m larger)")
    signature_level(key, alg, key.sign(alg, MESSAGE))
    leading_zero(key, alg)


def pss_cases(key, alg):
    h = alg[2:]
    hname, hcls = HASHES[h]
    h_len = hcls.digest_size
    em_bits = key.bits - 1
    em_len = (em_bits + 7) // 8
    key.add(alg, MESSAGE, key.sign(alg, MESSAGE), True, "valid, salt hLen")
    key.add(alg, b"", key.sign(alg, b""), True, "valid, empty message")
    salt = os.urandom(h_len)
    raw = lambda em: key.raw(int.from_bytes(em, "big"))  # noqa: E731
    key.add(alg, MESSAGE, raw(pss_em(hname, MESSAGE, em_bits, salt)), True,
            "valid, raw encoding")
    max_salt = em_len - h_len - 2
    for s_len, what in [(0, "0"), (1, "1"), (h_len - 1, "hLen - 1"), (h_len + 1, "hLen + 1"),
                        (max_salt, "maximum")]:
        key.add(alg, MESSAGE, key.sign(alg, MESSAGE, salt=s_len), False, f"salt length {what}")
    other_mgf = {"256": hashes.SHA384, "384": hashes.SHA512, "512": hashes.SHA256}[h]
    key.add(alg, MESSAGE, key.sign(alg, MESSAGE, mgf=other_mgf), False, "MGF1 over another hash")
    for tweak, comment in [("trailer", "trailer 0xbb"), ("top-bit", "unused top bit set"),
                           ("ps", "padding octet nonzero"), ("separator", "separator 0x02"),
                           ("no-separator", "separator zero"), ("hash", "H altered")]:
        if tweak == "top-bit" and 8 * em_len == em_bits:
            continue
        key.add(alg, MESSAGE, raw(pss_em(hname, MESSAGE, em_bits, salt, tweak=tweak)), False,
                comment)
    mgf_hash = {"256": "sha384", "384": "sha512", "512": "sha256"}[h]
    key.add(alg, MESSAGE, raw(pss_em(hname, MESSAGE, em_bits, salt, mgf_hash=mgf_hash)), False,
            "raw: MGF1 over another hash")
    # EM one octet longer than emLen: a nonzero octet above it.
    em = int.from_bytes(pss_em(hname, MESSAGE, em_bits, salt), "big")
    key.add(alg, MESSAGE, key.raw(em + (1 << (8 * em_len))), False, "m above emLen octets")
    if 8 * em_len > em_bits:
        key.add(alg, MESSAGE, key.raw(em | (1 << em_bits)), False, "m has bit emBits set")
    # A PKCS1-v1_5 signature is no PSS signature.
    key.add(alg, MESSAGE, key.sign("RS" + h, MESSAGE), False, "an RS signature")
    signature_level(key, alg, key.sign(alg, MESSAGE))
    leading_zero(key, alg)


def fuzz_keys():
    from cryptography.hazmat.primitives import serialization
    for bits in [2048, 2049, 3072, 4095, 4096]:
        der = private_key(bits, 65537).private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption())
        with open(os.path.join(HERE, f"fuzz_{bits}.pk8"), "wb") as f:
            f.write(der)


def main():
    if sys.argv[1:] == ["--fuzz-keys"]:
        fuzz_keys()
        return
    out = {"generator": "tests/vectors/rsa/generate.py", "keys": [], "refused_keys": []}
    for bits in SIZES:
        key = Key(bits)
        assert key.bits == bits
        for alg in ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"]:
            (pkcs1_cases if alg.startswith("RS") else pss_cases)(key, alg)
        out["keys"].append(key.json())
        print(f"{bits} bits: {len(key.cases)} cases", file=sys.stderr)
    for bits, e in REFUSED:
        key = Key(bits, e)
        for alg in ["RS256", "PS256"]:
            key.add(alg, MESSAGE, key.sign(alg, MESSAGE), True, "valid, but the key is refused")
        out["refused_keys"].append(key.json())
    with open(os.path.join(HERE, "rsa_vectors.json"), "w") as f:
        json.dump(out, f, indent=0)
        f.write("\n")


if __name__ == "__main__":
    main()
