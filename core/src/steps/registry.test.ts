import { describe, expect, it } from "vitest";
import {
  builtinStepTypes,
  CONTAINER_TYPES,
  defaultStepTypeSettings,
  lookupStepType,
  StepTypeRegistry,
} from "./registry.js";
import type { InlineStepType } from "./step-type.js";

const settings = defaultStepTypeSettings();
const paths = { typePath: "steps[0].type", configPath: "steps[0].config" };

describe("step type registry", () => {
  it("has the built-in types and knows the containers by name only", () => {
    expect([...builtinStepTypes().keys()].sort()).toEqual([
      "command",
      "container",
      "http",
      "noop",
      "python",
      "sleep",
      "spark",
      "sql",
    ]);
    expect(lookupStepType("command")?.kind).toBe("process");
    expect(lookupStepType("noop")?.kind).toBe("inline");
    for (const c of CONTAINER_TYPES) expect(lookupStepType(c)).toBeUndefined();
    expect([...CONTAINER_TYPES].sort()).toEqual(["foreach", "loop", "subworkflow"]);
  });

  it("validates unknown types with a hint and skips containers", () => {
    const r = new StepTypeRegistry();
    expect(r.validate("comand", { argv: ["x"] }, paths, settings)).toEqual([
      {
        field: "steps[0].type",
        description: "unknown step type 'comand'",
        hint: "did you mean 'command'?",
      },
    ]);
    expect(r.validate("", undefined, paths, settings)[0]?.description).toBe("step type is missing");
    expect(r.validate("foreach", undefined, paths, settings)).toEqual([]);
    expect(r.validate("noop", undefined, paths, settings)).toEqual([]);
    expect(r.validate("command", {}, paths, settings)[0]?.field).toBe("steps[0].config");
  });

  it("refuses duplicate, reserved and malformed names", () => {
    const r = new StepTypeRegistry();
    const t = (name: string): InlineStepType => ({
      kind: "inline",
      name,
      description: "",
      validate: () => [],
      run: async () => ({ succeeded: true }),
    });
    expect(() => r.register(t("noop"))).toThrow("already registered");
    expect(() => r.register(t("loop"))).toThrow("reserved for a container");
    expect(() => r.register(t("Bad Name"))).toThrow("must match");
    r.register(t("custom"));
    expect(r.get("custom")?.name).toBe("custom");
  });

  it("turns a plugin's crash in validate into a violation", () => {
    const r = new StepTypeRegistry([
      {
        kind: "inline",
        name: "buggy",
        description: "",
        validate: () => {
          throw new Error("boom");
        },
        run: async () => ({ succeeded: true }),
      },
    ]);
    expect(r.validate("buggy", {}, paths, settings)).toEqual([
      {
        field: "steps[0].config",
        description: "step type 'buggy' could not check its config: boom",
        hint: "",
      },
    ]);
  });
});
