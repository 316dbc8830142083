#!/usr/bin/env bash
# Runs certbound's cargo-fuzz targets one after another, each for a fixed
# time, on the stable toolchain; fails if any target crashes (a panic, a
# failed oracle assertion, a timeout or an out-of-memory). See README.md.
#
#   bash fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]
#   bash fuzz/run.sh --replay [SECONDS_PER_TARGET] [TARGET...]
#
# --replay (what `make test` runs) needs no cargo-fuzz and no
# instrumentation: a plain debug build of the targets (sharing the main
# crate's target/, so only the fuzz crate and its own dependencies build),
# then each target runs every input of fuzz/seeds/<target>/ (generated)
# and fuzz/regress/<target>/ (committed, minimised corpora of earlier
# runs) once, then random mutations of them for SECONDS_PER_TARGET
# (default 10; -seed=1, so the same inputs every time). Fails on a crash.
#
# Environment:
#   FUZZ_SANITIZER  none (default) or address (uses RUSTC_BOOTSTRAP=1 on stable)
#   FUZZ_JOBS       libFuzzer -fork=N workers per target (default: 1 process)
#   FUZZ_ARGS       extra libFuzzer flags, e.g. "-max_len=4096"
#   FUZZ_TARGET_DIR cargo target directory for the instrumented build
#                   (default fuzz/target); one outside the clone lets fresh
#                   clones on the same machine reuse the dependency build
#   CARGO_FUZZ      cargo-fuzz binary (default: target/tools/bin/cargo-fuzz,
#                   installed there from crates.io if missing)
#
# Working state, all ignored by git: fuzz/corpus/<target>/ (grows across
# runs), fuzz/artifacts/<target>/ (crashing inputs), fuzz/seeds/ (made by
# gen_seeds.py from tests/vectors/vectors.json), fuzz/logs/<target>.log and
# fuzz/logs/summary.tsv.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

REPLAY=0
if [ "${1:-}" = "--replay" ]; then REPLAY=1; shift; fi
SECONDS_PER_TARGET="${1:-30}"
if [ "$REPLAY" = 1 ]; then SECONDS_PER_TARGET="${1:-10}"; fi
shift || true
ALL_TARGETS=(jwt_verify jwks_parse config_parse cert_parse decision signatures introspect_response verify_oracle)
if [ "$#" -gt 0 ]; then TARGETS=("$@"); else TARGETS=("${ALL_TARGETS[@]}"); fi

if [ "$REPLAY" = 1 ]; then
    python3 fuzz/gen_seeds.py >/dev/null
    start=$(date +%s)
    cargo build --locked --quiet --manifest-path fuzz/Cargo.toml --target-dir "$ROOT/target" --bins
    echo "fuzz replay: built in $(( $(date +%s) - start )) s" >&2
    failed=()
    for t in "${TARGETS[@]}"; do
        inputs=()
        for d in "fuzz/seeds/$t" "fuzz/regress/$t"; do
            if [ -d "$d" ]; then inputs+=("$d"); fi
        done
        scratch="$ROOT/target/fuzz-replay/$t"
        rm -rf "$scratch" && mkdir -p "$scratch" "fuzz/artifacts/$t"
        start=$(date +%s)
        # The scratch directory comes first: libFuzzer writes new inputs
        # there, never into the committed corpora.
        if "$ROOT/target/debug/$t" "$scratch" "${inputs[@]}" -seed=1 -len_control=0 \
            -max_total_time="$SECONDS_PER_TARGET" -timeout=30 -rss_limit_mb=2048 \
            -artifact_prefix="fuzz/artifacts/$t/" -print_final_stats=1 >"$scratch.log" 2>&1; then
            runs=$( (grep -a -o 'stat::number_of_executed_units: [0-9]*' "$scratch.log" || true) | awk '{print $2}')
            echo "fuzz replay: $t ok, ${runs:-?} inputs in $(( $(date +%s) - start )) s" >&2
        else
            echo "fuzz replay: $t FAILED; the end of its log:" >&2
            grep -a -v '^#' "$scratch.log" | tail -40 >&2
            failed+=("$t")
        fi
    done
    if [ "${#failed[@]}" -gt 0 ]; then
        echo "fuzz replay: FAILED: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
        exit 1
    fi
    exit 0
fi

CARGO_FUZZ_VERSION=0.13.2
TOOLS="$ROOT/target/tools"
CARGO_FUZZ="${CARGO_FUZZ:-$TOOLS/bin/cargo-fuzz}"
SANITIZER="${FUZZ_SANITIZER:-none}"
LOGS="$ROOT/fuzz/logs"

# cargo-fuzz itself: a thin driver, so a debug build is enough and builds
# in a fraction of the time. Installed once, into the project's target/.
if [ ! -x "$CARGO_FUZZ" ]; then
    echo "fuzz: installing cargo-fuzz $CARGO_FUZZ_VERSION into $TOOLS" >&2
    install_start=$(date +%s)
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked --debug \
        --root "$TOOLS" --quiet
    echo "fuzz: installed in $(( $(date +%s) - install_start )) s" >&2
fi

# -s none needs no unstable rustc flag: cargo-fuzz then passes only -C
# options (sancov instrumentation), which stable accepts. AddressSanitizer
# needs -Zsanitizer=address, which stable rustc takes only with
# RUSTC_BOOTSTRAP=1 (its runtime ships with the stable x86_64 std).
BUILD=(--sanitizer "$SANITIZER")
if [ -n "${FUZZ_TARGET_DIR:-}" ]; then BUILD+=(--target-dir "$FUZZ_TARGET_DIR"); fi
if [ "$SANITIZER" != none ]; then export RUSTC_BOOTSTRAP=1; fi

python3 fuzz/gen_seeds.py >/dev/null
mkdir -p "$LOGS"

echo "fuzz: building ${TARGETS[*]} (sanitizer $SANITIZER)" >&2
build_start=$(date +%s)
: >"$LOGS/build.log"
if [ "${#TARGETS[@]}" -eq "${#ALL_TARGETS[@]}" ]; then BUILT=(""); else BUILT=("${TARGETS[@]}"); fi
for t in "${BUILT[@]}"; do
    # shellcheck disable=SC2086
    "$CARGO_FUZZ" fuzz build "${BUILD[@]}" $t >>"$LOGS/build.log" 2>&1 \
        || { tail -40 "$LOGS/build.log" >&2; exit 1; }
done
echo "fuzz: built in $(( $(date +%s) - build_start )) s" >&2

PARALLEL=()
if [ -n "${FUZZ_JOBS:-}" ]; then PARALLEL=("-fork=$FUZZ_JOBS"); fi

summary="$LOGS/summary.tsv"
printf 'target\tseconds\texecs\texecs_per_s\tcrashes\tcorpus_files\tcorpus_bytes\tcoverage\tresult\n' >"$summary"
failed=()
for t in "${TARGETS[@]}"; do
    corpus="fuzz/corpus/$t"
    mkdir -p "$corpus" "fuzz/seeds/$t"
    log="$LOGS/$t.log"
    echo "fuzz: $t for ${SECONDS_PER_TARGET} s (log: ${log#"$ROOT"/})" >&2
    start=$(date +%s)
    dict=()
    if [ -f "fuzz/dicts/$t.dict" ]; then dict=("-dict=fuzz/dicts/$t.dict"); fi
    set +e
    # shellcheck disable=SC2086
    "$CARGO_FUZZ" fuzz run "${BUILD[@]}" "$t" "$corpus" "fuzz/seeds/$t" -- \
        -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 "${dict[@]}" "${PARALLEL[@]}" ${FUZZ_ARGS:-} >"$log" 2>&1
    status=$?
    set -e
    elapsed=$(( $(date +%s) - start ))
    # Statistics from libFuzzer's output (-print_final_stats=1; the last
    # status line when it stopped on a crash).
    execs=$( (grep -a -o 'stat::number_of_executed_units: [0-9]*' "$log" || true) |
        awk '{s+=$2} END {print s+0}')
    if [ "$execs" = 0 ]; then
        execs=$( (grep -a -o '^#[0-9]*' "$log" || true) | tail -1 | tr -d '#')
        execs=${execs:-0}
    fi
    cov=$( (grep -a -o 'cov: [0-9]*' "$log" || true) | tail -1 | awk '{print $2}')
    files=$(find "$corpus" -type f | wc -l)
    bytes=$(du -sb "$corpus" | cut -f1)
    crashes=$(find "fuzz/artifacts/$t" -type f \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' \) \
        -newermt "@$start" 2>/dev/null | wc -l)
    if [ "$status" -eq 0 ]; then result=ok; else result="FAILED (exit $status)"; failed+=("$t"); fi
    rate=$(( execs / (elapsed > 0 ? elapsed : 1) ))
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$elapsed" "$execs" "$rate" "$crashes" \
        "$files" "$bytes" "${cov:-?}" "$result" >>"$summary"
    if [ "$status" -ne 0 ]; then
        echo "fuzz: $t FAILED; the end of its log:" >&2
        grep -a -v '^#' "$log" | tail -60 >&2
    fi
done

column -t -s $'\t' "$summary" 2>/dev/null || cat "$summary"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz: FAILED: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzz: all ${#TARGETS[@]} targets ran ${SECONDS_PER_TARGET} s without a crash" >&2
