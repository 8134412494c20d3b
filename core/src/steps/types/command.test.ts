// biome-ignore-all lint/suspicious/noTemplateCurlyInString: step configs hold kaon templates, whose syntax is ${...}
import { existsSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { defaultStepTypeSettings } from "../registry.js";
import type { JsonObject } from "../step-type.js";
import { makeStepContext, runPlan } from "../testing.js";
import { commandStepType } from "./command.js";

const settings = defaultStepTypeSettings();
const v = (config: unknown) =>
  commandStepType
    .validate(config as JsonObject, "steps[2].config", settings)
    .map((x) => `${x.field}: ${x.description}${x.hint ? ` (${x.hint})` : ""}`);

describe("command: validation", () => {
  it("accepts argv or shell with cwd and env", () => {
    expect(v({ argv: ["echo", "hi"] })).toEqual([]);
    expect(
      v({
        argv: ["python", "train.py", "--epochs", "${params.epochs}"],
        cwd: "src",
        env: { A: "1" },
      }),
    ).toEqual([]);
    expect(v({ shell: "echo $A | wc -c" })).toEqual([]);
  });

  it("needs exactly one of argv and shell", () => {
    expect(v({})).toEqual(["steps[2].config: command config needs one of 'argv', 'shell'"]);
    expect(v({ argv: ["a"], shell: "a" })).toEqual([
      "steps[2].config.shell: command config has both 'argv' and 'shell' (use only one of 'argv', 'shell')",
    ]);
  });

  it("checks argv items", () => {
    expect(v({ argv: [] })).toEqual(["steps[2].config.argv: 'argv' must not be empty"]);
    expect(v({ argv: "echo hi" })).toEqual([
      'steps[2].config.argv: \'argv\' must be a list of strings, got a string "echo hi" (write it as a list: ["echo hi"])',
    ]);
    expect(v({ argv: ["echo", 3, null] })).toEqual([
      'steps[2].config.argv[1]: must be a string, got a number 3 (quote it: "3")',
      "steps[2].config.argv[2]: must be a string, got null null",
    ]);
    expect(v({ argv: ["", "x"] })).toEqual([
      "steps[2].config.argv[0]: the program name must not be empty",
    ]);
    expect(v({ argv: ["python train.py"] })[0]).toContain("one argv item containing spaces");
  });

  it("checks templates in argv", () => {
    expect(v({ argv: ["echo", "${parms.x}"] })[0]).toContain(
      "steps[2].config.argv[1]: bad template",
    );
    expect(v({ argv: ["echo", "${steps.a.outputs.x}"] })).toEqual([
      "steps[2].config.argv[1]: template \"${steps.a.outputs.x}\" uses 'steps.a.outputs.x'; step config templates see only params.* and run.* (declare a step param with that expression and use ${params.<name>} here)",
    ]);
  });

  it("checks env names and types, and reserves KAON_*", () => {
    expect(v({ argv: ["x"], env: { "1BAD": "v", OK: 1, KAON_TOKEN: "x" } })).toEqual([
      "steps[2].config.env.1BAD: '1BAD' is not a valid name: letters, digits and _, not starting with a digit",
      "steps[2].config.env.OK: must be a string, got a number 1",
      "steps[2].config.env.KAON_TOKEN: 'KAON_TOKEN' is reserved: kaon sets the KAON_* variables of every job (pick another name)",
    ]);
    expect(v({ argv: ["x"], env: ["A=1"] })[0]).toContain("'env' must be an object of strings");
  });

  it("flags unknown keys with a hint", () => {
    expect(v({ argv: ["x"], workdir: "/tmp" })).toEqual([
      "steps[2].config.workdir: unknown command config key 'workdir' (known keys: argv, shell, cwd, env)",
    ]);
    expect(v({ argv: ["x"], evn: {} })).toEqual([
      "steps[2].config.evn: unknown command config key 'evn' (did you mean 'env'?)",
    ]);
  });
});

describe("command: plan and run", () => {
  it("plans argv with rendered templates, env and cwd", async () => {
    const ctx = makeStepContext({
      config: {
        argv: ["echo", "${params.region}", "run=${run.id}", "n=${params.n + 1}"],
        cwd: "sub",
        env: { MODE: "${params.mode}" },
      },
      params: { region: "us west; rm -rf /", n: 2, mode: "fast" },
    });
    const plan = await commandStepType.plan(ctx);
    expect(plan).toEqual({
      command: { kind: "argv", argv: ["echo", "us west; rm -rf /", "run=run-1", "n=3"] },
      cwd: join(ctx.workDir, "sub"),
      env: { MODE: "fast" },
    });
    const r = await runPlan(ctx, plan);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe("us west; rm -rf / run=run-1 n=3\n");
  });

  it("never hands argv items to a shell", async () => {
    const ctx = makeStepContext({
      config: { argv: ["sh", "-c", 'printf "%s" "$1"', "sh", "${params.evil}"] },
      params: { evil: "$(touch pwned)`touch pwned2`" },
    });
    const r = await runPlan(ctx, await commandStepType.plan(ctx));
    expect(r.stdout).toBe("$(touch pwned)`touch pwned2`");
    expect(existsSync(join(ctx.workDir, "pwned"))).toBe(false);
    expect(existsSync(join(ctx.workDir, "pwned2"))).toBe(false);
  });

  it("runs shell mode as written, with params from the environment only", async () => {
    const ctx = makeStepContext({
      config: {
        shell: 'echo "${GREETING:-none} $KAON_PARAM_NAME" | tr a-z A-Z; exit 3',
        env: { GREETING: "hi" },
      },
      env: { KAON_PARAM_NAME: "$(touch pwned)" },
    });
    const plan = await commandStepType.plan(ctx);
    expect(plan.command).toEqual({
      kind: "shell",
      script: 'echo "${GREETING:-none} $KAON_PARAM_NAME" | tr a-z A-Z; exit 3',
    });
    const r = await runPlan(ctx, plan);
    expect(r.code).toBe(3);
    expect(r.stdout).toBe("HI $(TOUCH PWNED)\n");
    expect(existsSync(join(ctx.workDir, "pwned"))).toBe(false);
  });

  it("fails the plan with the field when a template cannot render", () => {
    const ctx = makeStepContext({ config: { argv: ["echo", "${params.missing}"] }, params: {} });
    expect(() => commandStepType.plan(ctx)).toThrow(
      /config argv\[1\] "\$\{params.missing\}": no such key 'missing'/,
    );
  });
});
