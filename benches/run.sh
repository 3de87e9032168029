#!/usr/bin/env bash
# Benchmarks and fuzzes tiklive's replay path, printing each command before running it.
#
#   benches/run.sh                    # build, bench, fuzz for 60 s
#   FUZZ_SECONDS=600 benches/run.sh   # fuzz longer
#   SKIP_BENCH=1 benches/run.sh       # fuzz only
#
# 1. cargo build --release, then cargo bench --bench replay (generates the benchmark recording under
#    target/bench-data/ on first use; see benches/replay.rs).
# 2. cargo test --test fuzz_smoke, which also exports its seed frames as the fuzzing corpus.
# 3. If cargo-fuzz is installed (it is installed when missing): the `frame` target for FUZZ_SECONDS.
#    On a stable toolchain it runs with RUSTC_BOOTSTRAP=1 (cargo-fuzz needs -Z flags), with
#    AddressSanitizer, and falls back to `--sanitizer none` if that build fails. Without cargo-fuzz the
#    smoke fuzzer runs again with 10x the iterations.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
FUZZ_SECONDS="${FUZZ_SECONDS:-60}"

run() {
	printf '\n==> %s\n' "$*" >&2
	"$@"
}

if [[ -z "${SKIP_BENCH:-}" ]]; then
	run cargo build --release --bins
	run cargo bench --bench replay
fi

if ! command -v cargo-fuzz >/dev/null 2>&1; then
	run cargo install cargo-fuzz || printf 'cargo-fuzz could not be installed\n' >&2
fi

seeds="$(mktemp -d "${TMPDIR:-/tmp}/tiklive-fuzz-seeds.XXXXXX")"
trap 'rm -rf "$seeds"' EXIT
run env TIKLIVE_FUZZ_SEEDS_DIR="$seeds" cargo test --test fuzz_smoke

# Builds the fuzz target; prints the sanitizer that worked, fails when none did.
build_fuzz_target() {
	command -v cargo-fuzz >/dev/null 2>&1 || return 1
	local sanitizer
	for sanitizer in address none; do
		if (cd fuzz && run env ${fuzz_env:+"$fuzz_env"} cargo fuzz build --sanitizer "$sanitizer" frame) >&2; then
			echo "$sanitizer"
			return 0
		fi
	done
	return 1
}

# cargo-fuzz passes -Z flags (sanitizers, coverage): a stable rustc accepts them with RUSTC_BOOTSTRAP=1.
fuzz_env=""
if ! rustc -V | grep -q nightly; then
	fuzz_env="RUSTC_BOOTSTRAP=1"
fi
if sanitizer="$(build_fuzz_target)"; then
	mkdir -p fuzz/corpus/frame
	# A crash fails this command, and the script with it; the input is in fuzz/artifacts/frame/.
	(cd fuzz && run env ${fuzz_env:+"$fuzz_env"} cargo fuzz run --sanitizer "$sanitizer" frame corpus/frame "$seeds" -- \
		-max_total_time="$FUZZ_SECONDS" -dict=frame.dict -max_len=65536 -print_final_stats=1)
else
	printf '\ncargo-fuzz is unavailable or does not build here: running the smoke fuzzer longer instead\n' >&2
	run env TIKLIVE_FUZZ_ITERS=200000 cargo test --test fuzz_smoke -- --nocapture
fi
printf '\nbenches/run.sh: done\n' >&2
