import { describe, expect, it } from "vitest";
import { createLogger, isLogLevel } from "./log.js";

describe("logger", () => {
  it("writes one JSON object per line with level, time, msg and fields", () => {
    const lines: string[] = [];
    const log = createLogger({ level: "info", write: (l) => lines.push(l) }).child({
      component: "x",
    });
    log.debug("hidden");
    log.info("hello", { runId: "r1", count: 2n });
    log.error("failed", { err: new Error("bad") });
    expect(lines).toHaveLength(2);
    expect(lines.every((l) => l.endsWith("\n"))).toBe(true);
    const first = JSON.parse(lines[0] ?? "");
    expect(first).toMatchObject({
      level: "info",
      msg: "hello",
      component: "x",
      runId: "r1",
      count: "2",
    });
    expect(Number.isNaN(Date.parse(first.time))).toBe(false);
    const second = JSON.parse(lines[1] ?? "");
    expect(second.err).toMatchObject({ name: "Error", message: "bad" });
    expect(second.err.stack).toContain("log.test.ts");
    expect(log.enabled("debug")).toBe(false);
  });

  it("writes readable lines for people", () => {
    const lines: string[] = [];
    const log = createLogger({ level: "debug", pretty: true, write: (l) => lines.push(l) });
    log.warn("slow disk", { path: "/tmp/a b" });
    expect(lines[0]).toMatch(/WARN.*slow disk.*path="\/tmp\/a b"/);
  });

  it("accepts only the four level names (not Object.prototype members)", () => {
    expect(["debug", "info", "warn", "error"].every(isLogLevel)).toBe(true);
    for (const bad of ["toString", "constructor", "__proto__", "INFO", ""]) {
      expect(isLogLevel(bad)).toBe(false);
    }
  });
});
