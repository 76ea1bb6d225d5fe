#!/usr/bin/env bash
# bench/gpu/make-runs.sh: the run files bench/gpu/check.sh trains with the standalone driver,
# made here, where Node.js is (the GPU machine has none), into bench/gpu/runs/ (not committed;
# the device call carries it):
#   tiny-fp32.lfrun   examples/tiny.lf, 10 steps (fp32: CUDA against the CPU engine, tightly)
#   tiny-bf16.lfrun   the same model in bf16 (the dtype GPUs train in)
#   llama7b-4.lfrun   bench/gpu/llama7b-4-adapters.lf: the throughput run beside PEFT's
# Each holds its data and programs; the models' weights and fresh adapters go as their seeds.
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=bench/gpu/runs
rm -rf "$runs"
mkdir -p "$runs/tiny" "$runs/llama7b"
npx tsc -p tsconfig.build.json
root="$PWD"
loraflow() { node "$root/bin/loraflow.js" "$@"; }
cp -r examples/data "$runs/tiny/data"
cp examples/tiny.lf "$runs/tiny/tiny-fp32.lf"
sed 's/dtype fp32/dtype bf16/' examples/tiny.lf >"$runs/tiny/tiny-bf16.lf"
for dtype in fp32 bf16; do
  (cd "$runs/tiny" && loraflow run "tiny-$dtype.lf" -o "plan-$dtype" --max-steps 10 --backend cuda --engine-run "../tiny-$dtype.lfrun")
done
# Random tokens, 64 examples of 512 per adapter (seeded: the same files every time).
node -e '
const fs = require("fs");
for (let a = 0; a < 4; a++) {
  let s = 7919 * a + 1;
  const next = () => (s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 4294967296;
  const lines = Array.from({ length: 64 }, () => JSON.stringify({ input_ids: Array.from({ length: 512 }, () => Math.floor(next() * 32000)) }));
  fs.writeFileSync(process.argv[1] + "/a" + a + ".jsonl", lines.join("\n") + "\n");
}' "$runs/llama7b"
cp bench/gpu/llama7b-4-adapters.lf "$runs/llama7b/job.lf"
(cd "$runs/llama7b" && loraflow run job.lf -o plan --backend cuda --engine-run ../llama7b-4.lfrun)
du -sh "$runs"/*.lfrun
