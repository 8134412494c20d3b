import { describe, expect, it } from "vitest";
import { launchTooLarge, MAX_LAUNCH_BYTES } from "./backend.js";

describe("launchTooLarge (review Q2)", () => {
  const kb = (n: number) => "x".repeat(n * 1000);

  it("accepts an ordinary launch and one just under the bound", () => {
    expect(launchTooLarge({ command: { kind: "argv", argv: ["true"] }, env: { A: "1" } })).toBe(
      undefined,
    );
    const env = Object.fromEntries(Array.from({ length: 10 }, (_, i) => [`P${i}`, kb(100)]));
    expect(launchTooLarge({ command: { kind: "shell", script: "true" }, env })).toBe(undefined);
  });

  it("names the total, the limit and the largest variables", () => {
    const env = Object.fromEntries(Array.from({ length: 12 }, (_, i) => [`P${i}`, kb(100)]));
    env.BIG = kb(120);
    expect(launchTooLarge({ command: { kind: "argv", argv: ["true"] }, env })).toBe(
      "the launch request is too large: its command and environment take 1.3 MiB, over the " +
        "limit of 1 MiB; the largest variables: BIG (117.2 KiB), P0 (97.7 KiB), P1 (97.7 KiB)",
    );
    expect(MAX_LAUNCH_BYTES).toBe(1024 * 1024);
  });

  it("bounds one string by Linux's MAX_ARG_STRLEN", () => {
    expect(launchTooLarge({ command: { kind: "argv", argv: ["true"] }, env: { X: kb(200) } })).toBe(
      "the launch request is too large: environment variable X takes 195.3 KiB, over the limit of 128 KiB for one string",
    );
    expect(launchTooLarge({ command: { kind: "shell", script: kb(132) }, env: {} })).toContain(
      "its shell script takes 128.9 KiB",
    );
  });
});
