import * as fs from "node:fs";
import * as path from "node:path";
import { expect, it } from "vitest";
import { Diagnostics, VERSION } from "../compiler/index.js";
import { ROOT } from "./helpers/paths.js";

it("the compiler's version is package.json's", () => {
  expect(VERSION).toBe(JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8")).version);
});

it("the README lists every diagnostic code", () => {
  const readme = fs.readFileSync(path.join(ROOT, "README.md"), "utf8");
  const missing = Object.values(Diagnostics).filter((d) => !readme.includes(`| ${d.code} | ${d.severity} |`));
  expect(missing.map((d) => d.code)).toEqual([]);
});
