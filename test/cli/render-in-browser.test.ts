import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { compile } from "../../compiler/index.js";
import { tempDir } from "../helpers/hf-model.js";
import { EXAMPLES } from "../helpers/paths.js";
import { countColour, decodePng } from "../helpers/png.js";

/**
 * schedule.svg and report.html as a user's browser shows them: headless Chromium parses each
 * (no XML or HTML errors, nothing logged) and takes a screenshot, whose pixels must show every
 * adapter's colour. CI installs Chromium and sets LORAFLOW_REQUIRE_BROWSER, so there the test
 * cannot be skipped; elsewhere it runs when a Chromium is on the PATH.
 */
function findBrowser(): string | undefined {
  const candidates = [process.env.CHROMIUM, "chromium", "chromium-browser", "google-chrome"].filter((c): c is string => !!c);
  return candidates.find((c) => spawnSync(c, ["--version"], { encoding: "utf8" }).status === 0);
}

const browser = findBrowser();
const required = process.env.LORAFLOW_REQUIRE_BROWSER === "1";
const ADAPTER_COLOURS = { math: "#4e79a7", code: "#f28e2b", chat: "#59a14f", summarize: "#e15759" };

let dir: string;
beforeAll(() => {
  dir = tempDir("loraflow-browser-");
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function chromium(args: string[]) {
  const r = spawnSync(
    browser!,
    ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars", "--no-first-run", `--user-data-dir=${path.join(dir, "profile")}`, "--enable-logging=stderr", "--v=0", ...args],
    { encoding: "utf8", timeout: 60_000 },
  );
  expect(r.status, r.stderr).toBe(0);
  // Page-level problems Chromium logs: console messages and uncaught errors (not its own D-Bus noise).
  expect(r.stderr.split("\n").filter((l) => /CONSOLE|Uncaught|SyntaxError/.test(l))).toEqual([]);
  return r.stdout;
}

describe.skipIf(!browser && !required)("the pictures in a browser", () => {
  it("a browser is there when CI requires one", () => {
    expect(browser, "LORAFLOW_REQUIRE_BROWSER is set but no chromium is on the PATH").toBeDefined();
  });

  it("schedule.svg and report.html parse and render every adapter", () => {
    const file = path.join(EXAMPLES, "llama2-7b-4xa6000.lf");
    const r = compile(fs.readFileSync(file, "utf8"), { fileName: file, compare: true });
    fs.writeFileSync(path.join(dir, "schedule.svg"), r.scheduleSvg!);
    fs.writeFileSync(path.join(dir, "report.html"), r.reportHtml!);

    for (const page of ["schedule.svg", "report.html"]) {
      const url = `file://${path.join(dir, page)}`;
      const dom = chromium(["--dump-dom", url]);
      expect(dom, page).not.toMatch(/parsererror|This page contains the following errors/);
      for (const s of [0, 1, 2, 3]) expect(dom, page).toContain(`>stage ${s}</text>`);

      const png = path.join(dir, page + ".png");
      chromium([`--screenshot=${png}`, "--window-size=1280,1100", url]);
      const image = decodePng(fs.readFileSync(png));
      expect([image.width, image.height]).toEqual([1280, 1100]);
      for (const [name, colour] of Object.entries(ADAPTER_COLOURS)) expect(countColour(image, colour), `${page}: ${name}`).toBeGreaterThan(200);
      if (page === "report.html") {
        for (const [part, colour] of [["base weights", "#8c8c8c"], ["adapter state", "#3b5b92"], ["activations", "#e07b39"], ["workspace", "#f2c14e"]]) {
          expect(countColour(image, colour!), `${part} bars`).toBeGreaterThan(100);
        }
        expect(countColour(image, "#cc0000"), "capacity lines").toBeGreaterThan(40);
      }
    }
  }, 180_000);
});
