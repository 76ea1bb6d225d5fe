import * as fs from "node:fs";
import * as path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { recoverLeftovers, swapIn } from "../../runtime/output/atomic.js";
import { adapterFolderOwnership, folderOwnership } from "../../runtime/output/owned.js";
import { tempDir } from "../helpers/hf-model.js";

/** The steps writes are made of, where the file system has no exchange, and what is loraflow's. */
let dir: string;
beforeEach(() => (dir = tempDir("loraflow-output-")));
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

const folder = (name: string, files: Record<string, string>) => {
  fs.mkdirSync(path.join(dir, name), { recursive: true });
  for (const [f, text] of Object.entries(files)) fs.writeFileSync(path.join(dir, name, f), text);
  return path.join(dir, name);
};
const DEAD = 999_999_999;

describe("without the exchange", () => {
  it("swapIn renames the old version aside, then the new one in, and says where the old one is", () => {
    const target = folder("a", { v: "old" });
    const staging = folder(".a.loraflow-tmp-1-0", { v: "new" });
    const old = swapIn(staging, target, undefined)!;
    expect(fs.readFileSync(path.join(target, "v"), "utf8")).toBe("new");
    expect(fs.readFileSync(path.join(old, "v"), "utf8")).toBe("old");
  });

  it("a kill between the two renames is undone by the next run: the old version is put back", () => {
    folder(`.a.loraflow-old-${DEAD}-0`, { v: "old" });
    folder(`.a.loraflow-tmp-${DEAD}-1`, { v: "new, never swapped in" });
    const notes = recoverLeftovers(path.join(dir, "a"));
    expect(fs.readFileSync(path.join(dir, "a/v"), "utf8")).toBe("old");
    expect(fs.readdirSync(dir)).toEqual(["a"]);
    expect(notes.join("\n")).toMatch(/put back .*a, which a run that was stopped had moved aside/);
  });

  it("leaves the staging folders of a live writer alone", () => {
    folder(`.a.loraflow-tmp-${process.ppid}-0`, { v: "being written" });
    expect(recoverLeftovers(path.join(dir, "a"))).toEqual([]);
    expect(fs.readdirSync(dir)).toHaveLength(1);
  });
});

describe("what loraflow recognises as its own", () => {
  it.each<{ name: string; files: Record<string, string>; owned: boolean }>([
    { name: "an empty folder", files: {}, owned: true },
    { name: "a config without weights", files: { "adapter_config.json": "{}" }, owned: false },
    { name: "a README beside an adapter", files: { "README.md": "x" }, owned: false },
  ])("$name", ({ files, owned }) => {
    expect(adapterFolderOwnership(folder("x", files)).owned).toBe(owned);
  });

  it("a compile folder: the compile's files, links in inputs/, a plan that is loraflow's", () => {
    const d = folder("c", { "plan.json": JSON.stringify({ format: "loraflow.plan/1" }), "summary.json": "{}" });
    fs.mkdirSync(path.join(d, "inputs/a"), { recursive: true });
    fs.symlinkSync("../../../data.jsonl", path.join(d, "inputs/a/data.jsonl"));
    expect(folderOwnership(d, true).owned).toBe(true);
    fs.writeFileSync(path.join(d, "inputs/a/real.txt"), "mine");
    expect(folderOwnership(d, true)).toEqual({ owned: false, why: "holds inputs/, which loraflow did not write" });
  });
});
