#!/usr/bin/env bash
# Builds the wire fuzzer, writes the seed corpus, and runs libFuzzer on it.
#   Fuzz/fuzz.sh                      fuzz until stopped (Ctrl-C), corpus in Fuzz/corpus
#   Fuzz/fuzz.sh -runs=10000000       any libFuzzer flag passes through
#   Fuzz/fuzz.sh crash-<sha1>         re-run one saved input
set -euo pipefail
# A saved input named relative to where the script was called from.
if [ $# -gt 0 ] && [ -f "$1" ]; then
    input=$(realpath "$1"); shift
    set -- "$input" "$@"
fi
cd "$(dirname "$0")"
export PATH="/opt/swift/usr/bin:$PATH"
# Swift's crash backtracer and ASan fight over a crashing process; libFuzzer reports alone.
export SWIFT_BACKTRACE=enable=no

swift build -c release -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library
bin=.build/release/WireFuzz

rm -rf .build/seeds
WIRE_FUZZ_WRITE_SEEDS=.build/seeds "$bin"
mkdir -p corpus artifacts
if [ $# -gt 0 ] && [ -f "$1" ]; then
    exec "$bin" "$@"
fi
exec "$bin" corpus .build/seeds -max_len=4200 -artifact_prefix=artifacts/ -print_final_stats=1 "$@"
