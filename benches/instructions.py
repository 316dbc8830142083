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

Callgrind also simulates the caches (`--cache-sim=yes`, on unless
`--no-cache-sim`): a filter whose code is spread over more cache lines makes
Envoy's own code miss too. The second table is callgrind's cycle estimate
(kcachegrind's formula: instructions + 10 × L1 misses + 100 × last-level
misses), equally reproducible and closer to time.

    target/venv/bin/python benches/instructions.py                  # a,b,w,c,d,z,n,n2 × ES256,RS256,EdDSA
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


class Counts(tuple):
    """Per request: instructions, L1 misses (instruction + data), last-level misses."""

    @property
    def ir(self) -> float:
        return self[0]

    @property
    def cycles(self) -> float:
        """Callgrind's cycle estimate: Ir + 10 × L1 misses + 100 × LL misses."""
        return self[0] + 10 * self[1] + 100 * self[2]


def read_dump(out: Path, n: int, what: str) -> Counts:
    """Per request, from callgrind's dumps at `out`: the explicit dump (`-d`,
    "Trigger: dump") holds exactly the counted requests; the one written at
    exit holds the rest."""
    totals: list[list[int]] = []
    for f in glob.glob(f"{out}*"):
        lines = Path(f).read_text(errors="replace").splitlines()
        if "desc: Trigger: dump" not in lines:
            continue
        events = next((line.split()[1:] for line in lines if line.startswith("events:")), [])
        for line in lines:
            if line.startswith("totals:"):
                v = dict(zip(events, (int(x) for x in line.split()[1:])))
                l1 = v.get("I1mr", 0) + v.get("D1mr", 0) + v.get("D1mw", 0)
                ll = v.get("ILmr", 0) + v.get("DLmr", 0) + v.get("DLmw", 0)
                totals.append([v.get("Ir", 0), l1, ll])
    if not totals:
        sys.exit(f"instructions: no callgrind dump for {what}")
    return Counts(x / n for x in max(totals))


def count(variant: str, alg: str, n: int, m: bench.Material, wasm: dict[str, Path],
          plan: bench.Plan, workdir: Path, oha: Path, cache_sim: bool) -> Counts:
    port, admin = bench.free_port(), bench.free_port()
    cfg = bench.envoy_config([variant], {variant: port}, admin, m, plan, wasm)
    out = workdir / f"callgrind-{variant}-{alg}.out"
    for f in glob.glob(f"{out}*"):
        os.remove(f)
    valgrind = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
                f"--cache-sim={'yes' if cache_sim else 'no'}"]
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
    return read_dump(out, n, f"({variant}) {alg}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=3000, help="requests counted per variant")
    ap.add_argument("--variants", default="a,b,w,c,d,z,n,n2",
                    help="bench.py keys: a,b,b2,w,c,d,z,n,n2 (z: the native floor; n, n2: the native build)")
    ap.add_argument("--algs", default=",".join(bench.ALGS))
    ap.add_argument("--wasm", default=str(REPO / "target/wasm32-wasip1/release/certbound.wasm"))
    ap.add_argument("--noop-wasm",
                    default=str(REPO / "target/bench-fixtures/wasm32-wasip1/release/noop_filter.wasm"))
    ap.add_argument("--workdir", default=str(REPO / "target/bench/instructions"))
    ap.add_argument("--oha", default=str(REPO / "target/tools/bin/oha"))
    ap.add_argument("--no-cache-sim", action="store_true",
                    help="count instructions only (faster; no cycle estimate)")
    args = ap.parse_args()
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            sys.exit(f"instructions: {tool} not found (apt-get install valgrind)")
    variants = [v for v in args.variants.split(",") if v]
    for v in variants:
        if v not in ("a", "b", "b2", "w", "c", "d", "z", "n", "n2"):
            sys.exit(f"instructions: unknown variant {v}")
    algs = [a for a in args.algs.split(",") if a]
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    wasm = {"certbound": workdir / "certbound.wasm", "noop": workdir / "noop_filter.wasm"}
    shutil.copyfile(args.wasm, wasm["certbound"])
    shutil.copyfile(args.noop_wasm, wasm["noop"])
    bench.stage_modules(workdir)
    m = bench.make_material(workdir)
    plan = bench.Plan(variants, bench.CacheField("top", bench.CACHE_SIZE), bench.CacheField("top", 0))

    cache_sim = not args.no_cache_sim
    rows: dict[str, dict[str, Counts]] = {}
    for alg in algs:
        for v in variants:
            per = count(v, alg, args.requests, m, wasm, plan, workdir, Path(args.oha), cache_sim)
            rows.setdefault(v, {})[alg] = per
            extra = f", {per.cycles:,.0f} estimated cycles" if cache_sim else ""
            print(f"instructions: ({bench.BY_KEY[v].label}) {alg}: {per.ir:,.0f} per request{extra}",
                  file=sys.stderr, flush=True)

    def table(what: str, value) -> None:
        print(f"| {what} | {' | '.join(algs)} |")
        print(f"|---|{'---:|' * len(algs)}")
        for v in variants:
            label = bench.BY_KEY[v]
            cells = []
            for a in algs:
                cell = f"{value(rows[v][a]) / 1000:,.1f} k"
                if "w" in rows and v in ("c", "d"):
                    cell += f" ({value(rows['w'][a]) / value(rows[v][a]):.2f})"
                cells.append(cell)
            print(f"| ({label.label}) {label.title} | {' | '.join(cells)} |")
        print()

    table("instructions per request", lambda c: c.ir)
    if cache_sim:
        table("estimated cycles per request", lambda c: c.cycles)
    if "w" in rows:
        print("(x.xx): (w)'s figure ÷ this row's, the analogue of the throughput ratio "
              "to the wasm floor.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
