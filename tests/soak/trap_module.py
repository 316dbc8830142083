#!/usr/bin/env python3
"""A tiny proxy-wasm module, assembled byte by byte (no toolchain needed),
that lets the first ``allowed`` requests through and then traps
(``unreachable``) in ``proxy_on_request_headers``: what a Rust panic in a
filter looks like to Envoy. Used to check that the shipped filter settings
(``fail_open: false``) fail closed when a VM fails at runtime.

    python3 tests/soak/trap_module.py OUT.wasm [--allowed N]

It implements the proxy-wasm ABI 0.2.1 entry points Envoy needs to start a
VM and an HTTP context, and nothing else: it imports no host functions.
"""

from __future__ import annotations

import argparse
from pathlib import Path

I32 = 0x7F


def uleb(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def sleb(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if (n == 0 and not b & 0x40) or (n == -1 and b & 0x40):
            out.append(b)
            return bytes(out)
        out.append(b | 0x80)


def vec(items: list[bytes]) -> bytes:
    return uleb(len(items)) + b"".join(items)


def name(s: str) -> bytes:
    return uleb(len(s)) + s.encode()


def section(sid: int, payload: bytes) -> bytes:
    return bytes([sid]) + uleb(len(payload)) + payload


def functype(params: list[int], results: list[int]) -> bytes:
    return b"\x60" + vec([bytes([p]) for p in params]) + vec([bytes([r]) for r in results])


# opcodes
END, UNREACHABLE, IF, EMPTY, I32_CONST, GLOBAL_GET, GLOBAL_SET, I32_EQZ, I32_SUB = (
    0x0B, 0x00, 0x04, 0x40, 0x41, 0x23, 0x24, 0x45, 0x6B)


def const(n: int) -> bytes:
    return bytes([I32_CONST]) + sleb(n)


def build(allowed: int = 1) -> bytes:
    """The module: ``allowed`` requests continue, then every call traps."""
    types = [
        functype([], []),                 # 0
        functype([I32], [I32]),           # 1
        functype([I32, I32], []),         # 2
        functype([I32, I32], [I32]),      # 3
        functype([I32, I32, I32], [I32]),  # 4
        functype([I32], []),              # 5
    ]
    on_request_headers = (
        bytes([GLOBAL_GET]) + uleb(0) + bytes([I32_EQZ, IF, EMPTY, UNREACHABLE, END])
        + bytes([GLOBAL_GET]) + uleb(0) + const(1) + bytes([I32_SUB, GLOBAL_SET]) + uleb(0)
        + const(0)  # Action::Continue
    )
    funcs = [  # (export name, type index, body without the final END)
        ("proxy_abi_version_0_2_1", 0, b""),
        ("proxy_on_memory_allocate", 1, const(1024)),
        ("proxy_on_context_create", 2, b""),
        ("proxy_on_vm_start", 3, const(1)),
        ("proxy_on_configure", 3, const(1)),
        ("proxy_on_request_headers", 4, on_request_headers),
        ("proxy_on_done", 1, const(1)),
        ("proxy_on_log", 5, b""),
        ("proxy_on_delete", 5, b""),
    ]
    exports = [name("memory") + b"\x02" + uleb(0)]
    exports += [name(n) + b"\x00" + uleb(i) for i, (n, _, _) in enumerate(funcs)]
    codes = []
    for _, _, body in funcs:
        entry = vec([]) + body + bytes([END])  # no locals
        codes.append(uleb(len(entry)) + entry)
    return (
        b"\x00asm" + b"\x01\x00\x00\x00"
        + section(1, vec(types))
        + section(3, vec([uleb(t) for _, t, _ in funcs]))
        + section(5, vec([b"\x00" + uleb(16)]))  # 16 pages, no maximum
        + section(6, vec([bytes([I32, 0x01]) + const(allowed) + bytes([END])]))
        + section(7, vec(exports))
        + section(10, vec(codes))
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("--allowed", type=int, default=1,
                   help="requests to let through before trapping (default 1)")
    args = p.parse_args()
    args.out.write_bytes(build(args.allowed))


if __name__ == "__main__":
    main()
