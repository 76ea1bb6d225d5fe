#!/usr/bin/env bash
# bench/gpu/check.sh: what only a GPU can check, in one command of under 8 minutes on the GPU
# machine (nvcc, CMake and PyTorch's wheels there; no Node.js needed). From the repository root:
#   bash bench/gpu/check.sh [OUT_DIR]
# It writes its report to OUT_DIR/gpu-DATE.md (default: bench/results/) and prints it. Steps:
#   1. the machine: GPU, driver, nvcc, and where pip put cuBLAS and NCCL;
#   2. build the engine's C++ tests and the fakes with nvcc (sm_80, sm_90; warnings and spills
#      are errors);
#   3. compile the project's cuBLASLt and NCCL declarations against the wheels' real headers;
#   4. every kernel on the GPU against the CPU harness, the real cuBLASLt against the fake;
#   5. compute-sanitizer memcheck and racecheck over the kernel runs;
#   6. the native tests on the emulated GPU (what CI runs), as a sanity check of this build;
#   7. PyTorch + PEFT training 4 adapters one after another, and the GPU's bf16 GEMM rate.
# Not yet here (the CUDA trainer and the standalone driver come next): training the tiny model
# for 10 steps on CUDA against the CPU engine, and loraflow's own tokens/s beside PEFT's.
set -uo pipefail
cd "$(dirname "$0")/../.."
out="${1:-bench/results}"
mkdir -p "$out"
report="$out/gpu-$(date -u +%Y-%m-%d).md"
build=build-gpu
log() { printf '%s\n' "$*" | tee -a "$report"; }
section() { log ""; log "## $*"; log ""; }
run() {  # run CMD...: its output into the report as a code block; returns its status
  log '```'
  "$@" 2>&1 | tee -a "$report"
  local rc=${PIPESTATUS[0]}
  log '```'
  log "exit status $rc"
  return "$rc"
}
: >"$report"
failed=()
log "# GPU check, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
log ""
log "Commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)."

section "1. The machine"
run nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
run nvcc --version || failed+=("nvcc")
python3 - <<'PY' 2>&1 | tee -a "$report"
import glob, site, sys
paths = site.getsitepackages() + [site.getusersitepackages()]
for pkg in ("cublas", "nccl", "cu13", "cuda_runtime"):
    for p in paths:
        for d in glob.glob(f"{p}/nvidia/{pkg}"):
            print(d, sorted(x.split("/")[-1] for x in glob.glob(d + "/lib/*.so*"))[:6], "include:", bool(glob.glob(d + "/include/*.h")))
PY
libs=$(python3 -c 'import glob,site; print(":".join(sorted({d for p in site.getsitepackages() for d in glob.glob(p + "/nvidia/*/lib")})))' 2>/dev/null)
includes=$(python3 -c 'import glob,site; print(" ".join("-I" + d for d in sorted({d for p in site.getsitepackages() for d in glob.glob(p + "/nvidia/*/include")})))' 2>/dev/null)
export LORAFLOW_CUDA_LIBS="$libs"
log "LORAFLOW_CUDA_LIBS=$libs"

section "2. Build (nvcc, sm_80 and sm_90, -Werror all-warnings, spills refused)"
if run bash -c "LORAFLOW_REQUIRE_CUDA=1 cmake -S native -B $build -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build $build -j 16 --target loraflow_native_tests loraflow_fake_cublaslt loraflow_fake_nccl"; then
  built=1
else
  built=0
  failed+=("build")
fi

section "3. The project's declarations against the real cublasLt.h and nccl.h"
if [ -n "$includes" ]; then
  run g++ -std=c++17 -fsyntax-only -Inative/src $includes -I/usr/local/cuda/include native/test/gpu/declarations.cc || failed+=("declarations")
else
  log "The wheels here ship no headers: skipped."
fi

if [ "$built" = 1 ]; then
  section "4. Kernels on the GPU against the CPU harness; the real cuBLASLt against the fake"
  run "$build/loraflow_native_tests" --gpu || failed+=("gpu comparisons")

  section "5. compute-sanitizer over the kernel runs"
  if command -v compute-sanitizer >/dev/null; then
    for tool in memcheck racecheck; do
      for c in gpu.kernel.rmsnorm gpu.kernel.lora_shrink gpu.kernel.attention gpu.kernel.cross_entropy gpu.kernel.adamw; do
        run compute-sanitizer --tool "$tool" --error-exitcode 9 "$build/loraflow_native_tests" --gpu --case "$c" || failed+=("$tool $c")
      done
    done
  else
    log "compute-sanitizer is not on PATH: skipped."
  fi

  section "6. The native tests on the emulated GPU (as CI runs them)"
  run "$build/loraflow_native_tests" >/dev/null || failed+=("native tests")
fi

section "7. PyTorch + PEFT, 4 adapters one after another, and the bf16 GEMM rate"
run timeout 300 python3 bench/gpu/peft_baseline.py || failed+=("peft baseline")

section "Summary"
if [ ${#failed[@]} -eq 0 ]; then
  log "Every step passed."
else
  log "Failed: ${failed[*]}"
fi
[ ${#failed[@]} -eq 0 ]
