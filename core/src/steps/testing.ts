// Helpers for testing step types without an engine: a StepContext with sensible defaults, a
// reporter that records what it is told, and a small runner that carries out a ProcessPlan
// with node:child_process the way a backend would (files, env, cwd, argv or `/bin/sh -c`).
// Used by this directory's tests and by docs/extending.md's example.
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { defaultStepTypeSettings } from "./registry.js";
import type { JsonValue, ProcessPlan, StepContext, StepReporter } from "./step-type.js";

/**
 * Work directories made here live under one scratch directory per process (not one entry of
 * the system temp dir each), removed when the process exits normally.
 */
let scratchRoot: string | undefined;

function scratchDir(): string {
  if (scratchRoot === undefined) {
    const root = mkdtempSync(join(tmpdir(), "kaon-step-"));
    scratchRoot = root;
    process.once("exit", () => rmSync(root, { recursive: true, force: true }));
  }
  return mkdtempSync(join(scratchRoot, "ctx-"));
}

export function makeStepContext(overrides: Partial<StepContext> = {}): StepContext {
  const workDir = overrides.workDir ?? scratchDir();
  return {
    runId: "run-1",
    workflowId: "wf",
    path: "step",
    stepId: "step",
    attempt: 1,
    config: {},
    params: {},
    env: {},
    workDir,
    resources: { cpus: 1, memMb: 128, gpus: 0, diskMb: 0 },
    settings: defaultStepTypeSettings(),
    ...overrides,
  };
}

export interface RecordedReports {
  outputs: Record<string, JsonValue>;
  progress: Array<{ percent: number; message?: string | undefined }>;
  milestones: string[];
  links: Array<{ name: string; url: string }>;
  messages: Array<{ text: string; level: string }>;
}

/** A reporter and the record of what it was told. */
export function recordingReporter(): { reporter: StepReporter; reports: RecordedReports } {
  const reports: RecordedReports = {
    outputs: {},
    progress: [],
    milestones: [],
    links: [],
    messages: [],
  };
  const reporter: StepReporter = {
    output: (name, value) => {
      reports.outputs[name] = value;
    },
    progress: (percent, message) => {
      reports.progress.push({ percent, message });
    },
    milestone: (name) => {
      reports.milestones.push(name);
    },
    link: (name, url) => {
      reports.links.push({ name, url });
    },
    message: (text, level = "info") => {
      reports.messages.push({ text, level });
    },
  };
  return { reporter, reports };
}

/** Carries out a plan as a backend would; resolves with the exit code and captured output. */
export function runPlan(
  ctx: StepContext,
  plan: ProcessPlan,
): Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string }> {
  for (const f of plan.files ?? []) {
    const target = join(ctx.workDir, f.path);
    mkdirSync(dirname(target), { recursive: true });
    writeFileSync(target, f.content);
  }
  const env = { PATH: process.env.PATH ?? "/usr/bin:/bin", ...ctx.env, ...plan.env };
  const cwd = plan.cwd ?? ctx.workDir;
  mkdirSync(cwd, { recursive: true });
  const child =
    plan.command.kind === "argv"
      ? spawn(plan.command.argv[0]!, plan.command.argv.slice(1), { cwd, env })
      : spawn("/bin/sh", ["-c", plan.command.script], { cwd, env });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  return new Promise((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}
