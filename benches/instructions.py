#!/usr/bin/env python3
"""`make bench-instructions`: instructions per request in Envoy, counted by callgrind.

Throughput on a shared 2-core VM moves by ±10-20% from run to run; an
instruction count does not. This runs one Envoy 1.40 per listener variant of
`bench.py` (the same configs, certificates, tokens and wasm modules) under
`valgrind --tool=callgrind`, with instrumentation off while Envoy starts and
warms up (V8 compiles the module, the token cache fills), then on for
exactly N requests from `oha -n N`, and divides the instructions Envoy's
process executed (all threads: TLS, HTTP, the filter, V8's JIT code) by N.

Instructions are not time: the wasm part of a request runs at a lower
instructions-per-cycle than Envoy's own code (BENCHMARKS.md), so ratios of
instructions are an upper bound of throughput ratios. They are what a change
to the filter moves, reproducibly, to within 0.3%.

    target/venv/bin/python benches/instructions.py                  # a,b,w,c,d × ES256,RS256,EdDSA
    target/venv/bin/python benches/instructions.py --variants w,c --algs ES256 --wasm X.wasm
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (listeners, material, configs: one definition)

REPO = bench.REPO


def envoy_binary() -> Path:
    """The real binary: `target/venv/bin/envoy` is a Python wrapper, and
    callgrind must run the ELF itself."""
    found = sorted(glob.glob(str(REPO / "target/venv/lib/python3*/site-packages/envoy/_bin/envoy")))
    if not found:
        sys.exit("instructions: no Envoy in target/venv (make venv)")
    return Path(found[0])


def count(variant: str, alg: str, n: int, m: bench.Material, wasm: dict[str, Path],
          plan: bench.Plan, workdir: Path, oha: Path) -> float:
    port, admin = bench.free_port(), bench.free_port()
    cfg = bench.envoy_config([variant], {variant: port}, admin, m, plan, wasm)
    out = workdir / f"callgrind-{variant}-{alg}.out"
    for f in glob.glob(f"{out}*"):
        os.remove(f)
    valgrind = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"]
    envoy = bench.Envoy(envoy_binary(), cfg, workdir, f"cg-{variant}", None, wrapper=valgrind)
    envoy.start(timeout=600)  # V8 compiles the module under valgrind: minutes, not seconds
    assert envoy.proc is not None
    try:
        def load(k: int) -> None:
            c = [str(oha), "-n", str(k), "-c", "4", "--no-tui", "--output-format", "json",
                 "--cacert", str(m.ca), "--cert", str(m.client_cert), "--key", str(m.client_key)]
            # Every variant gets the token, as in bench.py: (a) parses it too.
            c += ["-H", f"authorization: Bearer {m.tokens[alg]}", f"https://127.0.0.1:{port}/"]
            res = subprocess.run(c, capture_output=True, text=True, timeout=1800)
            codes = json.loads(res.stdout).get("statusCodeDistribution") or {}
            if codes != {"200": k}:
                sys.exit(f"instructions: ({variant}) {alg}: answers {codes}, expected {k} × 200")

        load(max(n // 2, 200))  # warm: V8 tiers up, caches fill; not counted
        ctl = ["callgrind_control"]
        pid = str(envoy.proc.pid)  # valgrind runs Envoy in its own process
        subprocess.run([*ctl, "-i", "on", pid], check=True, capture_output=True)
        load(n)
        subprocess.run([*ctl, "-d", pid], check=True, capture_output=True)
        subprocess.run([*ctl, "-i", "off", pid], check=True, capture_output=True)
    finally:
        envoy.stop()
    # The explicit dump (`-d`, "Trigger: dump") holds exactly the counted
    # requests; the one written at exit holds the rest.
    totals = []
    for f in glob.glob(f"{out}*"):
        lines = Path(f).read_text(errors="replace").splitlines()
        if "desc: Trigger: dump" in lines:
            totals += [int(line.split()[1]) for line in lines if line.startswith("totals:")]
    if not totals:
        sys.exit(f"instructions: no callgrind dump for ({variant}) {alg}")
    return max(totals) / n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=3000, help="requests counted per variant")
    ap.add_argument("--variants", default="a,b,w,c,d", help="bench.py keys: a,b,b2,w,c,d")
    ap.add_argument("--algs", default=",".join(bench.ALGS))
    ap.add_argument("--wasm", default=str(REPO / "target/wasm32-wasip1/release/certbound.wasm"))
    ap.add_argument("--noop-wasm",
                    default=str(REPO / "target/bench-fixtures/wasm32-wasip1/release/noop_filter.wasm"))
    ap.add_argument("--workdir", default=str(REPO / "target/bench/instructions"))
    ap.add_argument("--oha", default=str(REPO / "target/tools/bin/oha"))
    args = ap.parse_args()
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            sys.exit(f"instructions: {tool} not found (apt-get install valgrind)")
    variants = [v for v in args.variants.split(",") if v]
    for v in variants:
        if v not in ("a", "b", "b2", "w", "c", "d"):
            sys.exit(f"instructions: unknown variant {v}")
    algs = [a for a in args.algs.split(",") if a]
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    wasm = {"certbound": workdir / "certbound.wasm", "noop": workdir / "noop_filter.wasm"}
    shutil.copyfile(args.wasm, wasm["certbound"])
    shutil.copyfile(args.noop_wasm, wasm["noop"])
    m = bench.make_material(workdir)
    plan = bench.Plan(variants, bench.CacheField("top", bench.CACHE_SIZE), bench.CacheField("top", 0))

    rows: dict[str, dict[str, float]] = {}
    for alg in algs:
        for v in variants:
            per = count(v, alg, args.requests, m, wasm, plan, workdir, Path(args.oha))
            rows.setdefault(v, {})[alg] = per
            print(f"instructions: ({bench.BY_KEY[v].label}) {alg}: {per:,.0f} per request",
                  file=sys.stderr, flush=True)

    print(f"| variant | {' | '.join(algs)} |")
    print(f"|---|{'---:|' * len(algs)}")
    for v in variants:
        label = bench.BY_KEY[v]
        cells = []
        for a in algs:
            cell = f"{rows[v][a] / 1000:,.1f} k"
            if "w" in rows and v not in ("a", "b", "b2", "w"):
                cell += f" ({rows['w'][a] / rows[v][a]:.2f})"
            cells.append(cell)
        print(f"| ({label.label}) {label.title} | {' | '.join(cells)} |")
    if "w" in rows:
        print("\n(x.xx): (w)'s instructions ÷ this row's, the instruction-count analogue of "
              "the throughput ratio to the wasm floor.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
