#!/usr/bin/env bash
# bench/gpu/check.sh: what only a GPU can check, in one command of under 8 minutes on the GPU
# machine (nvcc, CMake and PyTorch's wheels there; no Node.js needed). First, where Node is,
# `bash bench/gpu/make-runs.sh` writes the run files it trains into bench/gpu/runs/ (carry that
# folder along). Then, from the repository root:
#   bash bench/gpu/check.sh [OUT_DIR]
# It writes its report to OUT_DIR/gpu-DATE.md (default: bench/results/) and prints it. Steps:
#   1. the machine: GPU, driver, nvcc, and where pip put cuBLAS and NCCL;
#   2. build the engine's C++ tests and the fakes with nvcc (sm_80, sm_90; warnings and spills
#      are errors);
#   3. compile the project's cuBLASLt and NCCL declarations against the wheels' real headers;
#   4. every kernel on the GPU against the CPU harness, the real cuBLASLt against the fake;
#   5. compute-sanitizer memcheck and racecheck over the kernel runs;
#   6. the native tests on the emulated GPU (what CI runs), as a sanity check of this build;
#   7. the tiny model (examples/tiny.lf) trained 10 steps on the GPU by the standalone driver
#      and again on the CPU engine, compared: fp32 to 1e-4 of each loss and of each adapter's
#      update; bf16 (the CPU given the same bf16-rounded weights) to 5e-3 and 20%: on emulated
#      GPUs the same runs measure 5e-4 and 8% (bf16 activations, AdamW's sign-like first steps
#      and SGD's momentum at lr 0.5), and the real cuBLASLt sums in another order than the fake;
#      then compute-sanitizer memcheck and racecheck over that tiny run;
#   8. loraflow's throughput: 4 adapters (rank 16, q/k/v/o, seq 512, batch 8 as 4 micro-batches
#      of 2) on a Llama-2-7B-shaped model with random weights, on one GPU;
#   9. PyTorch + PEFT training the same 4 adapters one after another, and the GPU's bf16 GEMM
#      rate; then the two side by side: tokens/s, and model FLOPs as a fraction of that rate.
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
if run bash -c "LORAFLOW_REQUIRE_CUDA=1 cmake -S native -B $build -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build $build -j 16 --target loraflow_native_tests loraflow_engine_run loraflow_fake_cublaslt loraflow_fake_nccl"; then
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

runs=bench/gpu/runs
if [ "$built" = 1 ] && [ -f "$runs/tiny-fp32.lfrun" ]; then
  section "7. The tiny model, 10 steps on the GPU against the CPU engine"
  # examples/tiny.lf's two stages, both on GPU 0 (their messages copied on it).
  run timeout 120 "$build/loraflow_engine_run" "$runs/tiny-fp32.lfrun" --backend cuda --devices 0,0 --compare-cpu 1e-4,1e-4 --report "$out/tiny-fp32.json" || failed+=("tiny fp32 against the CPU")
  run timeout 120 "$build/loraflow_engine_run" "$runs/tiny-bf16.lfrun" --backend cuda --devices 0,0 --compare-cpu 5e-3,0.2 --report "$out/tiny-bf16.json" || failed+=("tiny bf16 against the CPU")
  if command -v compute-sanitizer >/dev/null; then
    for tool in memcheck racecheck; do
      run timeout 300 compute-sanitizer --tool "$tool" --error-exitcode 9 "$build/loraflow_engine_run" "$runs/tiny-bf16.lfrun" --backend cuda --devices 0,0 --quiet || failed+=("$tool tiny run")
    done
  fi

  section "8. loraflow: 4 adapters on a Llama-2-7B-shaped model, one GPU"
  run timeout 300 "$build/loraflow_engine_run" "$runs/llama7b-4.lfrun" --backend cuda --quiet --report "$out/llama7b-4.json" || failed+=("loraflow throughput")
elif [ "$built" = 1 ]; then
  section "7-8. Training"
  log "$runs/ is missing: run bench/gpu/make-runs.sh where Node is, and bring the folder along."
  failed+=("no run files")
fi

section "9. PyTorch + PEFT, the same 4 adapters one after another, and the bf16 GEMM rate"
log '```'
timeout 300 python3 bench/gpu/peft_baseline.py 2>&1 | tee "$out/peft.json.log" | tee -a "$report"
peft_rc=${PIPESTATUS[0]}
log '```'
[ "$peft_rc" = 0 ] || failed+=("peft baseline")
tail -n 1 "$out/peft.json.log" >"$out/peft.json" 2>/dev/null || true

section "Side by side"
python3 - "$out/llama7b-4.json" "$out/peft.json" <<'PY' 2>&1 | tee -a "$report"
import json, sys
try:
    ours = json.load(open(sys.argv[1]))
    peft = json.load(open(sys.argv[2]))
except Exception as e:
    print(f"not both measured ({e})")
    sys.exit(0)
# Steady state: from the moment every adapter has finished its second step (cuBLASLt's first
# choices and the allocator's first requests are behind) to the last step.
steps = ours["steps"]
t0 = max(s["at"] for s in steps if s["step"] == 2)
end = max(s["at"] for s in steps)
tokens = sum(s["tokens"] for s in steps if s["at"] > t0)
rate = tokens / (end - t0) if end > t0 else ours["tokensPerSecond"]
gemm = peft["gemm_bf16_flops_per_second"]
fpt = ours["flopsPerToken"]
print("| | tokens/s | model FLOPs / bf16 GEMM rate |")
print("|---|---|---|")
print(f"| loraflow, 4 adapters together | {rate:,.0f} | {rate * fpt / gemm:.3f} |")
print(f"| PyTorch + PEFT, one after another | {peft['tokens_per_second']:,.0f} | {peft['tokens_per_second'] * peft['flops_per_token'] / gemm:.3f} |")
print(f"\nloraflow / PEFT: {rate / peft['tokens_per_second']:.2f}x (goal 1.5x); fraction of the GEMM rate {rate * fpt / gemm:.3f} (goal 0.45);")
print(f"bf16 GEMM rate {gemm / 1e12:.0f} TFLOP/s; {fpt / 1e9:.2f} GFLOP per token; whole loraflow run {ours['tokensPerSecond']:,.0f} tokens/s over {ours['seconds']:.1f} s")
PY

section "Summary"
if [ ${#failed[@]} -eq 0 ]; then
  log "Every step passed."
else
  log "Failed: ${failed[*]}"
fi
[ ${#failed[@]} -eq 0 ]
