#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/ for a fixed time each; exits non-zero if any crashes.
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...] [-- LIBFUZZER_FLAG...]
#
#   SECONDS   how long to fuzz each target (default 60, or $FUZZ_SECONDS)
#   TARGET    which targets to run (default: every target `cargo fuzz list` prints)
#   -- ...    extra flags passed to libFuzzer, e.g. `-- -jobs=2` or `-- -only_ascii=1`
#
# Works on the stable toolchain: cargo-fuzz passes nightly-only rustc flags (-Zsanitizer=address,
# -Cpasses=sancov-module, ...), which RUSTC_BOOTSTRAP=1 unlocks. cargo-fuzz itself is installed
# from crates.io when missing.
#
# The committed seed corpus fuzz/corpus/<target>/ is only read. New inputs libFuzzer finds go to
# a working corpus under the target directory ($CARGO_TARGET_DIR if set, else fuzz/target), so
# runs never modify the seeds and later runs start from what earlier runs found. A crash leaves
# its input in fuzz/artifacts/<target>/ (ignored by git); copy a real bug's reproducer to
# fuzz/artifacts-found/<target>/ to commit it, and replay it with
# `RUSTC_BOOTSTRAP=1 cargo fuzz run <target> <file>`.
set -euo pipefail

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
}

caller_dir=$(pwd)
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)

seconds=${FUZZ_SECONDS:-60}
targets=()
libfuzzer_flags=()
while [ $# -gt 0 ]; do
    case $1 in
    -h | --help)
        usage
        exit 0
        ;;
    --)
        shift
        libfuzzer_flags=("$@")
        break
        ;;
    -*)
        echo "fuzz.sh: unknown option $1 (libFuzzer flags go after --; see --help)" >&2
        exit 2
        ;;
    *[!0-9]*)
        targets+=("$1")
        ;;
    *)
        seconds=$1
        ;;
    esac
    shift
done
case $seconds in
'' | *[!0-9]* | 0)
    echo "fuzz.sh: SECONDS must be a positive whole number, got '$seconds'" >&2
    exit 2
    ;;
esac

export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz (cargo install cargo-fuzz --locked)"
    cargo install cargo-fuzz --locked
fi

# A relative CARGO_TARGET_DIR means relative to where the caller is, as it would for cargo run
# there; make it absolute, since this script runs cargo from the repository root.
if [ -n "${CARGO_TARGET_DIR:-}" ]; then
    case $CARGO_TARGET_DIR in
    /*) ;;
    *) CARGO_TARGET_DIR="$caller_dir/$CARGO_TARGET_DIR" ;;
    esac
    export CARGO_TARGET_DIR
    work_dir="$CARGO_TARGET_DIR/fuzz-corpus"
else
    work_dir="$root/fuzz/target/fuzz-corpus"
fi

known=$(cargo fuzz list)
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets <<<"$known"
fi
for target in "${targets[@]}"; do
    if ! grep -qx -- "$target" <<<"$known"; then
        echo "fuzz.sh: no fuzz target '$target'; the targets are:" $known >&2
        exit 2
    fi
done

# Build every target up front, in one cargo invocation, so a compile error fails fast; the
# `cargo fuzz run` below then only rebuilds if the sources changed in between.
echo "== building fuzz targets"
cargo fuzz build

failed=()
for target in "${targets[@]}"; do
    seeds="$root/fuzz/corpus/$target"
    corpus="$work_dir/$target"
    mkdir -p "$seeds" "$corpus"
    # A target's token dictionary (fuzz/dict/<target>.dict), when there is one.
    dict_flag=()
    if [ -f "$root/fuzz/dict/$target.dict" ]; then
        dict_flag=(-dict="$root/fuzz/dict/$target.dict")
    fi
    echo "== fuzzing $target for ${seconds}s (seeds: fuzz/corpus/$target, working corpus: $corpus)"
    # The first corpus directory is where libFuzzer writes new inputs; the seeds are only read.
    if cargo fuzz run "$target" "$corpus" "$seeds" -- \
        -max_total_time="$seconds" -timeout=25 -print_final_stats=1 \
        ${dict_flag[@]+"${dict_flag[@]}"} \
        ${libfuzzer_flags[@]+"${libfuzzer_flags[@]}"}; then
        echo "== $target: no crash in ${seconds}s"
    else
        echo "== $target: FAILED (the crashing input is in fuzz/artifacts/$target/)" >&2
        failed+=("$target")
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz.sh: crashes in: ${failed[*]}" >&2
    exit 1
fi
echo "fuzz.sh: all targets ran ${seconds}s without a crash: ${targets[*]}"
