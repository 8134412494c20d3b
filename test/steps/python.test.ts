// The python step through the real server, in each of its forms: inline `script` source (with
// the in-job API of the Python SDK reporting outputs and a link), a script file `path`, a
// `module` run with `-m`, and a `function` step built exactly as the Python SDK builds it
// (its DSL, cloudpickle and `to_canonical_json()` in the repo's venv) whose return value
// becomes the step's outputs. The interpreter is the repo's venv (scripts/setup.sh).
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RunStatus, StepStatus } from "@kaon/proto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { explain, hasVenv, type StepsKaon, startStepsKaon, VENV_PYTHON } from "./support.js";

if (!hasVenv) {
  console.warn(
    `skipping python step tests: ${VENV_PYTHON} is missing (scripts/setup.sh creates it with the SDK)`,
  );
}

let k: StepsKaon;
const scratch = mkdtempSync(join(tmpdir(), "kaon-steps-py-"));
beforeAll(async () => {
  if (hasVenv) k = await startStepsKaon({ pythonInterpreter: VENV_PYTHON }, "kaon-steps-py-");
});
afterAll(async () => {
  await k?.stop();
  rmSync(scratch, { recursive: true, force: true });
});

describe.skipIf(!hasVenv)("python step", () => {
  it("script: inline source with args; the in-job API reports outputs and a link", async () => {
    await k.deploy({
      id: "py-script",
      params: [{ name: "epochs", type: "PARAM_TYPE_INT", value: 2 }],
      steps: [
        {
          id: "train",
          type: "python",
          config: {
            script: [
              "import os, sys",
              "from kaon import job",
              "epochs = int(sys.argv[1])",
              "print(f'training for {epochs} epochs in {os.path.basename(os.getcwd())}')",
              "job.outputs({'auc': 0.5 + epochs / 100, 'epochs': epochs, 'by': job.params()['epochs']})",
              "job.link('dashboard', 'http://127.0.0.1/dash')",
              "job.flush()",
            ].join("\n"),
            args: ["${params.epochs * 2}"],
          },
        },
      ],
    });
    const { run } = await k.run("py-script", { epochs: 3 });
    expect(run.status, await explain(k, run)).toBe(RunStatus.RUN_STATUS_SUCCEEDED);
    const train = (await k.step(run.id, "train")).step;
    expect(train?.outputs).toEqual({ auc: 0.56, epochs: 6, by: 3 });
    expect(train?.reports?.links).toEqual([{ name: "dashboard", url: "http://127.0.0.1/dash" }]);
    // Attempt 1's working directory (runs/<run>/train.1), where script.py was written.
    expect(await k.logs(run.id, "train")).toBe("training for 6 epochs in train.1\n");
  });

  it("path: a script file (templated path) with args, outputs via KAON_OUTPUT", async () => {
    const dir = join(scratch, "jobs");
    mkdirSync(dir, { recursive: true });
    writeFileSync(
      join(dir, "score.py"),
      [
        "import os, sys",
        "region = sys.argv[1]",
        "print('scoring', region)",
        "with open(os.environ['KAON_OUTPUT'], 'a') as f:",
        "    f.write(f'region={region}\\n')",
        "    f.write(f'rows={len(region) * 10}\\n')",
      ].join("\n"),
    );
    await k.deploy({
      id: "py-path",
      params: [
        { name: "dir", type: "PARAM_TYPE_STRING", value: dir },
        { name: "region", type: "PARAM_TYPE_STRING", value: "US" },
      ],
      steps: [
        {
          id: "score",
          type: "python",
          config: { path: "${params.dir}/score.py", args: ["${params.region}"] },
        },
      ],
    });
    const { run } = await k.run("py-path", { region: "BRA" });
    expect(run.status, await explain(k, run)).toBe(RunStatus.RUN_STATUS_SUCCEEDED);
    expect((await k.step(run.id, "score")).step?.outputs).toEqual({ region: "BRA", rows: 30 });
    expect(await k.logs(run.id, "score")).toBe("scoring BRA\n");
  });

  it("module: `python -m` with cwd and env, a failing module fails the step", async () => {
    const pkg = join(scratch, "mods", "cohort");
    mkdirSync(pkg, { recursive: true });
    writeFileSync(join(pkg, "__init__.py"), "");
    writeFileSync(
      join(pkg, "__main__.py"),
      [
        "import os, sys",
        "if os.environ['MODE'] == 'fail':",
        "    raise SystemExit('cohort is empty for ' + sys.argv[1])",
        "print('cohort', sys.argv[1], os.environ['MODE'])",
        "open(os.environ['KAON_OUTPUT'], 'a').write('size=' + str(len(sys.argv[1])) + '\\n')",
      ].join("\n"),
    );
    await k.deploy({
      id: "py-module",
      params: [{ name: "mode", type: "PARAM_TYPE_STRING", value: "ok" }],
      steps: [
        {
          id: "select",
          type: "python",
          config: {
            module: "cohort",
            args: ["2024-01-01"],
            cwd: join(scratch, "mods"),
            env: { MODE: "${params.mode}" },
          },
        },
      ],
    });
    const ok = await k.run("py-module");
    expect(ok.run.status, await explain(k, ok.run)).toBe(RunStatus.RUN_STATUS_SUCCEEDED);
    expect((await k.step(ok.run.id, "select")).step?.outputs).toEqual({ size: 10 });
    expect(await k.logs(ok.run.id, "select")).toBe("cohort 2024-01-01 ok\n");

    const bad = await k.run("py-module", { mode: "fail" });
    expect(bad.run.status).toBe(RunStatus.RUN_STATUS_FAILED);
    const select = await k.step(bad.run.id, "select");
    expect(select.step?.status).toBe(StepStatus.STEP_STATUS_FAILED);
    expect(select.attempts.at(-1)?.exitCode).toBe(1);
    expect(await k.logs(bad.run.id, "select", "stderr")).toContain(
      "cohort is empty for 2024-01-01",
    );
  });

  it("function: built by the Python SDK's DSL; the return value becomes outputs", async () => {
    const source = join(scratch, "wf_fn.py");
    writeFileSync(
      source,
      [
        "import kaon",
        "",
        "def train(rows, *, lr=0.1):",
        "    print(f'training on {len(rows)} rows, lr={lr}')",
        "    return {'loss': round(1 / (1 + sum(rows)), 4), 'rows': len(rows), 'lr': lr}",
        "",
        "def total(xs):",
        "    return sum(xs)",
        "",
        "with kaon.Workflow('py-function') as wf:",
        "    a = kaon.python('train', function=train, args=([1, 2, 3],), kwargs={'lr': 0.25})",
        "    b = kaon.python('total', function=total, args=([4, 5],))",
        "    a >> b",
        "print(wf.to_canonical_json())",
      ].join("\n"),
    );
    const json = JSON.parse(execFileSync(VENV_PYTHON, [source], { cwd: scratch }).toString());
    const fn = json.steps[0].config.function;
    expect(fn.name).toBe("train");
    expect(fn.source).toContain("def train(rows, *, lr=0.1):");
    expect(typeof fn.pickle_b64).toBe("string");
    await k.deploy(json);
    const { run } = await k.run("py-function");
    expect(run.status, await explain(k, run)).toBe(RunStatus.RUN_STATUS_SUCCEEDED);
    expect((await k.step(run.id, "train")).step?.outputs).toEqual({
      loss: 0.1429,
      rows: 3,
      lr: 0.25,
    });
    expect(await k.logs(run.id, "train")).toContain("training on 3 rows, lr=0.25");
    // A non-dict return value becomes the output `result`.
    expect((await k.step(run.id, "total")).step?.outputs).toEqual({ result: 9 });
  });

  it("refuses a bad config at deploy with the field path", async () => {
    const details = await k.deployError({
      id: "py-bad",
      steps: [
        {
          id: "f",
          type: "python",
          config: { function: { name: "f", pickle_b64: "%%%" }, args: ["x"] },
        },
      ],
    });
    expect(details).toContain("steps[0].config.function.pickle_b64: is not base64 text");
    const two = await k.deployError({
      id: "py-bad2",
      steps: [{ id: "s", type: "python", config: { script: "pass", module: "m" } }],
    });
    expect(two).toContain("steps[0].config");
  });
});
