import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { attemptDir, attemptDirName, attemptLogFile } from "./attempt-layout.js";

describe("attempt layout", () => {
  it("flattens the step path into one directory name per attempt", () => {
    expect(attemptDirName("train", 1)).toBe("train.1");
    expect(attemptDirName("fe[17]/t", 2)).toBe("fe.i17.t.2");
    expect(attemptDirName("lp@3/body/x[0]/y", 1)).toBe("lp.l3.body.x.i0.y.1");
    expect(attemptDir("/d", "r1", "fe[17]/t", 1)).toBe("/d/runs/r1/fe.i17.t.1");
  });

  it("gives distinct paths and attempts distinct names", () => {
    const paths = ["a", "a[1]/b", "a[11]/b", "a[1]/b1", "a@1/b", "b", "a-b", "a_b"];
    const names = new Set<string>();
    for (const p of paths) for (const n of [1, 2, 11]) names.add(attemptDirName(p, n));
    expect(names.size).toBe(paths.length * 3);
  });

  it("hashes paths too long for a readable name", () => {
    const long = Array.from({ length: 8 }, (_, i) => `step${"x".repeat(40)}${i}[${i}]`).join("/");
    const name = attemptDirName(`${long}/leaf`, 3);
    expect(name).toMatch(/^h[0-9a-f]{32}\.3$/);
    expect(attemptDirName(`${long}/leaf`, 3)).toBe(name);
    expect(attemptDirName(`${long}/other`, 3)).not.toBe(name);
  });

  describe("log files", () => {
    const dataDir = mkdtempSync(join(tmpdir(), "kaon-layout-"));
    afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

    it("finds the flat layout, then the nested one of older attempts", () => {
      const flat = join(attemptDir(dataDir, "r1", "fe[2]/t", 1), "stdout");
      // Not there yet (a live attempt that has not started): the flat path, to be watched.
      expect(attemptLogFile(dataDir, "r1", "fe[2]/t", 1, "stdout")).toBe(flat);
      const legacy = join(dataDir, "runs", "r1", "fe[2]/t", "1");
      mkdirSync(legacy, { recursive: true });
      writeFileSync(join(legacy, "stdout"), "old\n");
      expect(attemptLogFile(dataDir, "r1", "fe[2]/t", 1, "stdout")).toBe(join(legacy, "stdout"));
      mkdirSync(attemptDir(dataDir, "r1", "fe[2]/t", 1), { recursive: true });
      writeFileSync(flat, "new\n");
      expect(attemptLogFile(dataDir, "r1", "fe[2]/t", 1, "stdout")).toBe(flat);
    });
  });
});
