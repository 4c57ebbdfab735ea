#!/usr/bin/env bash
# Fuzzes every target (or those named) for longer than CI's smoke run, one after another.
#
#   fuzz/fuzz-long.sh [SECONDS_PER_TARGET] [TARGET...]     (default: 600 s, every target)
#
# CI runs each target for 100,000 executions, seconds of work; some findings take minutes (the
# NaN round trip of issue 15 took about four). Each target starts from its working corpus
# (corpus/TARGET, kept between runs) and the committed seeds; a crash leaves its input in
# artifacts/TARGET/ and makes the script exit 1 after the remaining targets have run. Reproduce
# one with `cargo fuzz run TARGET -s none artifacts/TARGET/crash-...`, and commit it to
# seeds/TARGET/ with a test once fixed.
#
# Environment: SANITIZER (default `none`, which runs on stable; `address` needs a nightly
# toolchain, e.g. TOOLCHAIN=nightly), JOBS (parallel fuzzing processes per target, default 1).
set -euo pipefail
cd "$(dirname "$0")"

seconds=${1:-600}
shift || true
case "$seconds" in
  '' | *[!0-9]*) echo "usage: $0 [SECONDS_PER_TARGET] [TARGET...]" >&2; exit 2 ;;
esac
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list)
fi
sanitizer=${SANITIZER:-none}
jobs=${JOBS:-1}
toolchain=()
if [ -n "${TOOLCHAIN:-}" ]; then
  toolchain=("+$TOOLCHAIN")
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

failed=()
for target in "${targets[@]}"; do
  echo "=== $target: ${seconds}s (sanitizer $sanitizer, $jobs job(s))"
  mkdir -p "corpus/$target" "artifacts/$target"
  if cargo "${toolchain[@]}" fuzz run "$target" -s "$sanitizer" --jobs "$jobs" \
      "corpus/$target" "seeds/$target" -- \
      -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="artifacts/$target/" 2>&1 | tail -n 15; then
    echo "=== $target: nothing found"
  else
    echo "=== $target: FAILED, see fuzz/artifacts/$target/"
    failed+=("$target")
  fi
done
if [ "${#failed[@]}" -ne 0 ]; then
  echo "targets with findings: ${failed[*]}"
  exit 1
fi
echo "every target ran ${seconds}s without a finding"
