#!/usr/bin/env bash
# The engine built with AddressSanitizer and UndefinedBehaviorSanitizer, and the tests that drive
# it (the CUDA kernels on the CPU harness, engine, training, hostile plans, the CLI's hardening
# cases) run against that build. Node itself is not instrumented, so the ASan runtime is
# preloaded; leak checking is off because Node keeps memory to the end by design.
set -euo pipefail
cd "$(dirname "$0")/.."
npx cmake-js compile -d native -O build-sanitized --CDLORAFLOW_SANITIZE=ON >/dev/null
export LORAFLOW_NATIVE_BUILD=build-sanitized
export LD_PRELOAD="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)"
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:halt_on_error=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
# Sanitized code runs several times slower: generous time limits, the same assertions.
npx vitest run --testTimeout=600000 --hookTimeout=600000 test/native test/runtime test/cli/hardening.test.ts test/cli/hostile-plans.test.ts
