// The command step through the real server: argv mode (the default) hands params to the job
// as argv items, KAON_PARAM_* variables and the params file, none of them ever read by a
// shell; shell mode runs a script only when asked, with params as environment variables;
// outputs come from $KAON_OUTPUT and stdout from TailLogs; other languages run the same way
// (Python, Java's single-file launcher, and R when `Rscript` is on this machine).
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RunStatus, StepStatus } from "@kaon/proto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { explain, type StepsKaon, startStepsKaon } from "./support.js";

function onPath(program: string): boolean {
  try {
    execFileSync("sh", ["-c", `command -v ${program}`], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

const hasRscript = onPath("Rscript");
const hasJava = onPath("java");
if (!hasRscript) {
  console.warn(
    "skipping the R command step: Rscript is not on PATH (apt-get install r-base-core to run it)",
  );
}
if (!hasJava) console.warn("skipping the Java command step: java is not on PATH");

let k: StepsKaon;
const scratch = mkdtempSync(join(tmpdir(), "kaon-steps-cmd-"));
beforeAll(async () => {
  k = await startStepsKaon({}, "kaon-steps-cmd-");
});
afterAll(async () => {
  await k?.stop();
  rmSync(scratch, { recursive: true, force: true });
});

// A region no shell may see unquoted: if anything spliced it into a script, `touch` would run.
const HOSTILE = `US; touch ${join(scratch, "pwned")} $(id -u) "'|`;

describe("command step", () => {
  it("argv mode: params reach the job as argv items, KAON_PARAM_* and the params file", async () => {
    await k.deploy({
      id: "cmd-argv",
      params: [
        { name: "region", type: "PARAM_TYPE_STRING", value: "BR" },
        { name: "epochs", type: "PARAM_TYPE_INT", value: 3 },
      ],
      steps: [
        {
          id: "echo",
          type: "command",
          // echo is the program; nothing here is read by a shell.
          config: { argv: ["echo", "${params.region}", "$HOME", "a|b"] },
          next: [{ to: "train" }],
        },
        {
          id: "train",
          type: "command",
          config: {
            argv: [
              "/bin/sh",
              "-c",
              [
                `printf 'arg_region=%s\\n' "$1" >> "$KAON_OUTPUT"`,
                `printf 'env_region=%s\\n' "$KAON_PARAM_REGION" >> "$KAON_OUTPUT"`,
                `printf 'env_epochs=%s\\n' "$KAON_PARAM_EPOCHS" >> "$KAON_OUTPUT"`,
                `printf 'params=%s\\n' "$(tr -d '\\n' < "$KAON_PARAMS_FILE")" >> "$KAON_OUTPUT"`,
                `printf 'cwd=%s\\n' "$PWD" >> "$KAON_OUTPUT"`,
                `printf 'extra=%s\\n' "$EXTRA" >> "$KAON_OUTPUT"`,
                `echo "training $1 for $KAON_PARAM_EPOCHS epochs"`,
              ].join("\n"),
              "train",
              "${params.region}",
            ],
            env: { EXTRA: "epochs=${params.epochs * 2}" },
          },
        },
      ],
    });
    const { run } = await k.run("cmd-argv", { region: HOSTILE, epochs: 5 });
    expect(run.status, await explain(k, run)).toBe(RunStatus.RUN_STATUS_SUCCEEDED);

    expect(await k.logs(run.id, "echo")).toBe(`${HOSTILE} $HOME a|b\n`);
    const train = (await k.step(run.id, "train")).step;
    expect(train?.status).toBe(StepStatus.STEP_STATUS_SUCCEEDED);
    expect(train?.outputs).toMatchObject({
      arg_region: HOSTILE,
      env_region: HOSTILE,
      env_epochs: 5,
      params: { region: HOSTILE, epochs: 5 },
      extra: "epochs=10",
    });
    // The attempt's private working directory is the default cwd.
    expect(String(train?.outputs.cwd)).toContain(join(k.dataDir, "runs", run.id, "train.1"));
    expect(await k.logs(run.id, "train")).toBe(`training ${HOSTILE} for 5 epochs\n`);
    expect(existsSync(join(scratch, "pwned"))).toBe(false);
    // Run outputs are those of the last step.
    expect(run.outputs["train.env_epochs"]).toBe(5);
  });

  it("shell mode only when asked: pipes work, params come as env, the script is not templated", async () => {
    await k.deploy({
      id: "cmd-shell",
      params: [{ name: "region", type: "PARAM_TYPE_STRING", value: "us" }],
      steps: [
        {
          id: "report",
          type: "command",
          config: {
            shell:
              'echo "$REGION" | tr a-z A-Z; echo "upper=$(echo "$REGION" | tr a-z A-Z)" >> "$KAON_OUTPUT"; echo \'literal=${params.region}\' >> "$KAON_OUTPUT"; echo "given=${REGION:+set}" >> "$KAON_OUTPUT"',
            env: { REGION: "${params.region}" },
          },
        },
      ],
    });
    const { run } = await k.run("cmd-shell", { region: HOSTILE });
    expect(run.status, await explain(k, run)).toBe(RunStatus.RUN_STATUS_SUCCEEDED);
    const report = (await k.step(run.id, "report")).step;
    expect(report?.outputs.upper).toBe(HOSTILE.toUpperCase());
    // The script is the shell's text, never kaon's template: `${...}` stays as written.
    expect(report?.outputs.literal).toBe("${params.region}");
    // Shell syntax is the shell's: `${REGION:+set}` expands (it would not be valid CEL).
    expect(report?.outputs.given).toBe("set");
    expect(await k.logs(run.id, "report")).toBe(`${HOSTILE.toUpperCase()}\n`);
    expect(existsSync(join(scratch, "pwned"))).toBe(false);
  });

  it("a failing program fails the step with its exit code, stderr via TailLogs", async () => {
    await k.deploy({
      id: "cmd-fail",
      steps: [
        {
          id: "bad",
          type: "command",
          config: { argv: ["/bin/sh", "-c", "echo 'cannot read cohort' >&2; exit 3"] },
        },
      ],
    });
    const { run } = await k.run("cmd-fail");
    expect(run.status).toBe(RunStatus.RUN_STATUS_FAILED);
    const bad = await k.step(run.id, "bad");
    expect(bad.step?.status).toBe(StepStatus.STEP_STATUS_FAILED);
    expect(bad.attempts.at(-1)?.exitCode).toBe(3);
    expect(await k.logs(run.id, "bad", "stderr")).toContain("cannot read cohort");
  });

  it("refuses a bad config at deploy with the field path and the fix", async () => {
    const details = await k.deployError({
      id: "cmd-bad",
      steps: [
        { id: "ok", type: "command", config: { argv: ["true"] }, next: [{ to: "split" }] },
        { id: "split", type: "command", config: { argv: ["python train.py"] } },
      ],
    });
    expect(details).toContain("steps[1].config.argv[0]");
    expect(details).toContain('split it into items, e.g. ["python","train.py"]');
    const both = await k.deployError({
      id: "cmd-bad2",
      steps: [{ id: "both", type: "command", config: { argv: ["true"], shell: "true" } }],
    });
    expect(both).toContain("steps[0].config");
  });

  it("runs another language as a program: Python with argv", async () => {
    await k.deploy({
      id: "cmd-python",
      params: [{ name: "n", type: "PARAM_TYPE_INT", value: 4 }],
      steps: [
        {
          id: "py",
          type: "command",
          config: {
            argv: [
              "python3",
              "-c",
              "import os, sys; n = int(sys.argv[1]); print(sum(range(n)))\n" +
                "open(os.environ['KAON_OUTPUT'], 'a').write(f'total={sum(range(n))}\\n')",
              "${params.n}",
            ],
          },
        },
      ],
    });
    const { run } = await k.run("cmd-python", { n: 10 });
    expect(run.status, await explain(k, run)).toBe(RunStatus.RUN_STATUS_SUCCEEDED);
    expect((await k.step(run.id, "py")).step?.outputs).toEqual({ total: 45 });
    expect(await k.logs(run.id, "py")).toBe("45\n");
  });

  it.skipIf(!hasJava)("runs Java (single-file source launcher) like any program", async () => {
    const src = join(scratch, "Score.java");
    writeFileSync(
      src,
      [
        "import java.nio.file.*;",
        "public class Score {",
        "  public static void main(String[] a) throws Exception {",
        "    int s = Integer.parseInt(a[0]) * 7;",
        '    System.out.println("score " + s);',
        '    Files.writeString(Path.of(System.getenv("KAON_OUTPUT")), "score=" + s + "\\n");',
        "  }",
        "}",
      ].join("\n"),
    );
    await k.deploy({
      id: "cmd-java",
      params: [{ name: "n", type: "PARAM_TYPE_INT", value: 6 }],
      steps: [{ id: "jv", type: "command", config: { argv: ["java", src, "${params.n}"] } }],
    });
    const { run } = await k.run("cmd-java", {}, 40_000);
    expect(run.status, await explain(k, run)).toBe(RunStatus.RUN_STATUS_SUCCEEDED);
    expect((await k.step(run.id, "jv")).step?.outputs).toEqual({ score: 42 });
    expect(await k.logs(run.id, "jv")).toBe("score 42\n");
  });

  it.skipIf(!hasRscript)(
    "runs R with Rscript, params as env, outputs via KAON_OUTPUT",
    async () => {
      const script = join(scratch, "fit.R");
      writeFileSync(
        script,
        [
          "args <- commandArgs(trailingOnly = TRUE)",
          "n <- as.integer(args[1])",
          'region <- Sys.getenv("KAON_PARAM_REGION")',
          'cat("fitting", region, "\\n")',
          'cat(sprintf("mean=%d\\nregion=%s\\n", sum(1:n) / n * 2, region), file = Sys.getenv("KAON_OUTPUT"), append = TRUE)',
        ].join("\n"),
      );
      await k.deploy({
        id: "cmd-r",
        params: [
          { name: "n", type: "PARAM_TYPE_INT", value: 9 },
          { name: "region", type: "PARAM_TYPE_STRING", value: "IN" },
        ],
        steps: [
          { id: "fit", type: "command", config: { argv: ["Rscript", script, "${params.n}"] } },
        ],
      });
      const { run } = await k.run("cmd-r", {}, 40_000);
      expect(run.status, await explain(k, run)).toBe(RunStatus.RUN_STATUS_SUCCEEDED);
      expect((await k.step(run.id, "fit")).step?.outputs).toEqual({ mean: 10, region: "IN" });
      expect(await k.logs(run.id, "fit")).toContain("fitting IN");
    },
  );
});
