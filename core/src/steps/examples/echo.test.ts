// biome-ignore-all lint/suspicious/noTemplateCurlyInString: step configs hold kaon templates, whose syntax is ${...}
// The example of docs/extending.md, run through the plugin interface and a registry.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { defaultStepTypeSettings, StepTypeRegistry } from "../registry.js";
import { makeStepContext, recordingReporter } from "../testing.js";
import { echoStepType } from "./echo.js";

describe("example step type: echo", () => {
  const registry = new StepTypeRegistry().register(echoStepType);
  const settings = defaultStepTypeSettings();
  const paths = { typePath: "steps[0].type", configPath: "steps[0].config" };

  it("is validated through the registry", () => {
    expect(registry.validate("echo", { message: "hi ${params.who}" }, paths, settings)).toEqual([]);
    expect(registry.validate("echo", { mesage: "hi", uppercase: "yes" }, paths, settings)).toEqual([
      {
        field: "steps[0].config.mesage",
        description: "unknown echo config key 'mesage'",
        hint: "did you mean 'message'?",
      },
      { field: "steps[0].config.message", description: "echo config needs 'message'", hint: "" },
      {
        field: "steps[0].config.uppercase",
        description: "'uppercase' must be true or false, got \"yes\"",
        hint: "",
      },
    ]);
    expect(registry.validate("ecko", {}, paths, settings)[0]?.hint).toBe("did you mean 'echo'?");
  });

  it("runs through the interface", async () => {
    const type = registry.get("echo");
    if (type?.kind !== "inline") throw new Error("echo should be an inline type");
    const ctx = makeStepContext({
      config: { message: "hello ${params.who}", uppercase: true },
      params: { who: "kaon" },
    });
    const { reporter, reports } = recordingReporter();
    const result = await type.run(ctx, reporter, new AbortController().signal);
    expect(result).toEqual({ succeeded: true, outputs: { message: "HELLO KAON" } });
    expect(readFileSync(join(ctx.workDir, "echo.txt"), "utf8")).toBe("HELLO KAON\n");
    expect(reports.progress).toEqual([{ percent: 100, message: "written" }]);
  });
});
