// biome-ignore-all lint/suspicious/noTemplateCurlyInString: step configs hold kaon templates, whose syntax is ${...}
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { defaultStepTypeSettings } from "../registry.js";
import type { JsonObject } from "../step-type.js";
import { makeStepContext, runPlan } from "../testing.js";
import { FUNCTION_RUNNER_MODULE, pythonStepType } from "./python.js";

const settings = defaultStepTypeSettings();
const v = (config: unknown) =>
  pythonStepType
    .validate(config as JsonObject, "steps[0].config", settings)
    .map((x) => `${x.field}: ${x.description}${x.hint ? ` (${x.hint})` : ""}`);

const repoRoot = resolve(import.meta.dirname, "../../../..");
const venvPython = join(repoRoot, ".venv/bin/python");

describe("python: validation", () => {
  it("accepts each mode", () => {
    expect(v({ script: "print(1)" })).toEqual([]);
    expect(
      v({ path: "train.py", args: ["--epochs", "${params.epochs}"], venv: "/opt/venv" }),
    ).toEqual([]);
    expect(v({ module: "pkg.train", args: ["x"], interpreter: "python3.11" })).toEqual([]);
    expect(
      v({ function: { name: "f", source: "def f(): pass", pickle_b64: "gAU=", python: "3.11" } }),
    ).toEqual([]);
  });

  it("needs exactly one mode", () => {
    expect(v({})).toEqual([
      "steps[0].config: python config needs one of 'script', 'path', 'module', 'function'",
    ]);
    expect(v({ script: "x", module: "m" })).toEqual([
      "steps[0].config.module: python config has both 'script' and 'module' (use only one of 'script', 'path', 'module', 'function')",
    ]);
  });

  it("checks each field", () => {
    expect(v({ module: "my-pkg.train" })).toEqual([
      'steps[0].config.module: "my-pkg.train" is not a Python module name (e.g. "mypkg.train")',
    ]);
    expect(v({ script: "x", venv: "/v", interpreter: "/p" })).toEqual([
      "steps[0].config.venv: python config has both 'venv' and 'interpreter' (use only one)",
    ]);
    expect(v({ script: "x", args: "a b" })[0]).toContain(
      "steps[0].config.args: 'args' must be a list of strings",
    );
    expect(v({ function: "f" })[0]).toContain(
      "steps[0].config.function: 'function' must be an object",
    );
    expect(v({ function: { name: "f", pickle_b64: "%%%", python: "three" }, args: ["x"] })).toEqual(
      [
        "steps[0].config.function.pickle_b64: is not base64 text",
        'steps[0].config.function.python: "three" is not a Python version like "3.11"',
        "steps[0].config.args: function steps take their arguments from the pickled call, not 'args' (remove 'args')",
      ],
    );
    expect(v({ function: { source: "def f(): pass" } })).toEqual([
      "steps[0].config.function.name: python function config needs 'name'",
      "steps[0].config.function.pickle_b64: python function config needs 'pickle_b64'",
    ]);
  });
});

describe("python: plan and run", () => {
  it("runs inline source with params in argv and the environment", async () => {
    const ctx = makeStepContext({
      config: {
        script:
          "import os, sys\nprint(sys.argv[1:], os.environ['MODE'], os.environ['PYTHONUNBUFFERED'])\n",
        args: ["--region", "${params.region}"],
        env: { MODE: "m-${params.n}" },
      },
      params: { region: "us", n: 7 },
    });
    const plan = await pythonStepType.plan(ctx);
    expect(plan.command).toEqual({
      kind: "argv",
      argv: ["python3", join(ctx.workDir, "script.py"), "--region", "us"],
    });
    expect(plan.files).toEqual([{ path: "script.py", content: ctx.config.script }]);
    const r = await runPlan(ctx, plan);
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe("['--region', 'us'] m-7 1\n");
  });

  it("runs a script file and a module with the chosen interpreter", async () => {
    const ctx = makeStepContext({
      config: { path: "job.py", args: ["a"], interpreter: "python3" },
    });
    writeFileSync(join(ctx.workDir, "job.py"), "import sys; print('file', sys.argv[1])\n");
    expect((await runPlan(ctx, await pythonStepType.plan(ctx))).stdout).toBe("file a\n");

    const mod = makeStepContext({ config: { module: "json.tool", args: ["--compact"] } });
    writeFileSync(join(mod.workDir, "in.json"), '{"a": [1, 2]}');
    const plan = await pythonStepType.plan(mod);
    expect(plan.command).toEqual({
      kind: "argv",
      argv: ["python3", "-m", "json.tool", "--compact"],
    });
    const withInput = {
      ...plan,
      command: {
        kind: "argv" as const,
        argv: [...(plan.command as { argv: string[] }).argv, "in.json"],
      },
    };
    expect((await runPlan(mod, withInput)).stdout).toBe('{"a":[1,2]}\n');
  });

  it("uses a venv's interpreter", async () => {
    const ctx = makeStepContext({ config: { module: "m", venv: "/opt/envs/train" } });
    expect((await pythonStepType.plan(ctx)).command).toEqual({
      kind: "argv",
      argv: ["/opt/envs/train/bin/python", "-m", "m"],
    });
  });

  it("plans a function step for the SDK's runner", async () => {
    const ctx = makeStepContext({
      config: {
        function: {
          name: "f",
          source: "def f(): ...",
          pickle_b64: Buffer.from([1, 2, 3]).toString("base64"),
        },
      },
    });
    const plan = await pythonStepType.plan(ctx);
    expect(plan.command).toEqual({
      kind: "argv",
      argv: ["python3", "-m", FUNCTION_RUNNER_MODULE, ctx.workDir],
    });
    expect(plan.files).toEqual([
      { path: "call.pkl", content: new Uint8Array([1, 2, 3]) },
      { path: "function.py", content: "def f(): ..." },
    ]);
  });

  it.runIf(existsSync(venvPython))(
    "runs a real function step through kaon._function_runner",
    async () => {
      // The Python SDK's venv (scripts/setup.sh) has kaon and cloudpickle.
      const pickle = execFileSync(venvPython, [
        "-c",
        "import base64, cloudpickle\n" +
          "def train(a, b=1):\n    return {'sum': a + b, 'tags': ['x']}\n" +
          "print(base64.b64encode(cloudpickle.dumps((train, (2,), {'b': 3}))).decode())",
      ])
        .toString()
        .trim();
      const ctx = makeStepContext({
        config: {
          function: {
            name: "train",
            source: "def train(a, b=1): ...",
            pickle_b64: pickle,
            python: "3.11",
          },
        },
        settings: { ...settings, pythonInterpreter: venvPython },
      });
      const r = await runPlan(ctx, await pythonStepType.plan(ctx));
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      expect(JSON.parse(readFileSync(join(ctx.workDir, "outputs.json"), "utf8"))).toEqual({
        sum: 5,
        tags: ["x"],
      });
    },
  );
});
