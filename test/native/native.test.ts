// The engine's C++ tests (native/test/): every CUDA kernel on the CPU harness against
// model/ops.h, with its thread orders and tolerances, and the emulated device. Each case runs
// as a test of its own.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";

const root = path.join(path.dirname(new URL(import.meta.url).pathname), "..", "..");
const binary = path.join(root, process.env["LORAFLOW_NATIVE_BUILD"] ?? "build", "loraflow_native_tests");

function run(args: string[]) {
  return spawnSync(binary, args, { encoding: "utf8", timeout: 600_000 });
}

describe("native tests", () => {
  it("the harness is built", () => {
    expect(fs.existsSync(binary), `${binary} (built by npm ci)`).toBe(true);
  });

  const listed = fs.existsSync(binary) ? run(["--list"]).stdout.trim().split("\n").filter(Boolean) : [];
  it("lists its cases", () => {
    expect(listed.length).toBeGreaterThan(20);
  });

  it.each(listed)("%s", (name) => {
    const r = run(["--case", name]);
    expect(r.stderr).toBe("");
    expect(r.stdout).toMatch(new RegExp(`^ok ${name.replace(/\./g, "\\.")}: `));
    expect(r.status).toBe(0);
  });

  it("a name it does not know is an error", () => {
    const r = run(["--case", "no_such_case"]);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain("no case named no_such_case");
  });
});
