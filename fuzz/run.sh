#!/usr/bin/env bash
# Fuzz every cargo-fuzz target (or those named as arguments) for
# FUZZ_SECONDS each (default 60), starting from the seed corpus in
# fuzz/corpus/<target>/. Exits non-zero if any target found a crash, a
# timeout or a leak, after printing the artifact that reproduces it:
#
#   RUSTC_BOOTSTRAP=1 cargo fuzz run <target> fuzz/artifacts/<target>/crash-...
#
# The seed corpus is only read: what libFuzzer finds goes into a temporary
# directory that is removed afterwards, so a run leaves the work tree clean
# (only fuzz/target and, on failure, fuzz/artifacts, both ignored by git).
#
# cargo-fuzz passes nightly-only flags (-Zsanitizer=address). The machines
# this project builds on have one toolchain, the stable one pinned in
# rust-toolchain.toml, and cannot fetch nightly; stable ships the sanitizer
# runtimes, so RUSTC_BOOTSTRAP=1 lets it accept those flags. Set
# FUZZ_TOOLCHAIN=nightly to use a real nightly instead. Installs cargo-fuzz
# (from crates.io) when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-60}"
if [ -n "${FUZZ_TOOLCHAIN:-}" ]; then
    export RUSTUP_TOOLCHAIN="$FUZZ_TOOLCHAIN"
else
    export RUSTC_BOOTSTRAP=1
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz/run.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

# One build for all targets (release, debug assertions, AddressSanitizer);
# `fuzz run` below then only checks it is up to date.
cargo fuzz build

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failed=()
for target in "${targets[@]}"; do
    mkdir -p "$work/$target" "fuzz/artifacts/$target"
    log="$work/$target.log"
    stamp="$work/$target.start"
    touch "$stamp"
    echo "fuzz: $target for ${seconds}s"
    # New inputs go to the first (temporary) directory; the seeds are read only.
    if cargo fuzz run "$target" "$work/$target" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
        runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
        cov="$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 || true)"
        echo "fuzz: $target ok: ${runs:-?} runs, ${cov:-cov: ?}, $(find "$work/$target" -type f | wc -l) new inputs"
    else
        failed+=("$target")
        echo "fuzz: $target FAILED:"
        # The panic or sanitizer report, else the end of the log.
        grep -m 1 -A 25 -E 'panicked at|ERROR: (libFuzzer|AddressSanitizer|LeakSanitizer)' "$log" || tail -n 40 "$log"
        find "fuzz/artifacts/$target" -type f -newer "$stamp" | sed 's/^/fuzz: artifact: /'
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: findings in ${failed[*]}; reproduce with: RUSTC_BOOTSTRAP=1 cargo fuzz run <target> <artifact>" >&2
    exit 1
fi
echo "fuzz: all ${#targets[@]} targets ran ${seconds}s each without a finding"
