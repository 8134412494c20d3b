// biome-ignore-all lint/suspicious/noTemplateCurlyInString: step configs hold kaon templates, whose syntax is ${...}
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import {
  chmodSync,
  createWriteStream,
  existsSync,
  mkdtempSync,
  readFileSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  containersNamed,
  ensureTestImage,
  podmanAvailability,
} from "../../../../test/support/podman.js";
import { defaultStepTypeSettings } from "../registry.js";
import type { JsonObject, ProcessPlan, StepContext } from "../step-type.js";
import { makeStepContext } from "../testing.js";
import { CONTAINER_STOP_GRACE_SECONDS, containerName, containerStepType } from "./container.js";
import { STDERR_FILE, STDOUT_FILE } from "./stderr-tail.js";

const settings = defaultStepTypeSettings();
const v = (config: unknown) =>
  containerStepType
    .validate(config as JsonObject, "steps[0].config", settings)
    .map((x) => `${x.field}: ${x.description}${x.hint ? ` (${x.hint})` : ""}`);

describe("container: validation", () => {
  it("accepts an image with a command or a shell script, env, mounts and options", () => {
    expect(v({ image: "python:3.11-slim" })).toEqual([]);
    expect(
      v({
        image: "localhost/trainer:${params.tag}",
        command: ["python", "train.py", "--epochs", "${params.epochs}"],
        env: { MODE: "fast" },
        mounts: [
          { source: "/data", target: "/data", read_only: true },
          { source: "cache", target: "/cache" },
        ],
        workdir: "/app",
        runtime: "podman",
        network: "none",
        pull: "never",
        init: false,
      }),
    ).toEqual([]);
    expect(v({ image: "busybox", shell: "echo $A > out" })).toEqual([]);
  });

  it("needs an image, and at most one of command and shell", () => {
    expect(v({})).toEqual(["steps[0].config.image: container config needs 'image'"]);
    expect(v({ image: "a b" })).toEqual([
      'steps[0].config.image: "a b" is not an image reference (e.g. "python:3.11-slim" or "localhost/trainer:1.2")',
    ]);
    expect(v({ image: "x", command: ["a"], shell: "a" })).toEqual([
      "steps[0].config.shell: container config has both 'command' and 'shell' (use only one of 'command', 'shell')",
    ]);
    expect(v({ image: "x", command: [] })).toEqual([
      "steps[0].config.command: 'command' must not be empty",
    ]);
    expect(v({ image: "x", command: "python train.py" })[0]).toContain(
      "'command' must be a list of strings",
    );
    expect(v({ image: "x", command: ["python train.py"] })[0]).toContain(
      "one argv item containing spaces",
    );
  });

  it("checks mounts", () => {
    expect(v({ image: "x", mounts: { source: "/a", target: "/b" } })[0]).toContain(
      "'mounts' must be a list",
    );
    expect(
      v({
        image: "x",
        mounts: [
          "/a:/b",
          { source: "/a" },
          { source: "/a", target: "b", read_only: "yes" },
          { source: "/a:x", target: "/c", readonly: true },
          { source: "/d", target: "/c" },
        ],
      }),
    ).toEqual([
      'steps[0].config.mounts[0]: a mount must be an object {source, target, read_only?}, got "/a:/b"',
      "steps[0].config.mounts[1].target: container mount config needs 'target'",
      'steps[0].config.mounts[2].target: "b" is not an absolute path (e.g. "/b")',
      "steps[0].config.mounts[2].read_only: 'read_only' must be true or false, got \"yes\"",
      "steps[0].config.mounts[3].readonly: unknown container mount config key 'readonly' (did you mean 'read_only'?)",
      "steps[0].config.mounts[3].source: \"/a:x\" contains ':', which the runtime's --volume syntax cannot take",
      'steps[0].config.mounts[4].target: "/c" is mounted twice',
    ]);
  });

  it("checks choices, workdir, env and unknown keys", () => {
    expect(
      v({ image: "x", runtime: "containerd", network: "overlay", pull: "sometimes", init: "yes" }),
    ).toEqual([
      'steps[0].config.runtime: "containerd" is not one of "podman", "docker"',
      'steps[0].config.network: "overlay" is not one of "host", "none", "bridge"',
      'steps[0].config.pull: "sometimes" is not one of "missing", "always", "never"',
      "steps[0].config.init: 'init' must be true or false, got \"yes\"",
    ]);
    expect(v({ image: "x", workdir: "app" })).toEqual([
      'steps[0].config.workdir: "app" is not an absolute path inside the container (leave it out to run in the attempt\'s working directory)',
    ]);
    expect(v({ image: "x", env: { KAON_TOKEN: "x" } })[0]).toContain("'KAON_TOKEN' is reserved");
    expect(v({ image: "x", cmd: ["a"] })).toEqual([
      "steps[0].config.cmd: unknown container config key 'cmd' (known keys: image, command, args, shell, env, mounts, workdir, runtime, network, pull, init)",
    ]);
  });
});

/** A directory with fake runtimes, for plan tests that must not depend on the machine. */
function fakeBin(...names: string[]): string {
  const dir = mkdtempSync(join(tmpdir(), "kaon-fake-bin-"));
  for (const n of names) {
    writeFileSync(join(dir, n), "#!/bin/sh\nexit 0\n");
    chmodSync(join(dir, n), 0o755);
  }
  return dir;
}

describe("container: plan", () => {
  it("runs the client under the stop-on-signal wrapper, with env by name only", async () => {
    const bin = fakeBin("docker", "podman");
    const ctx = makeStepContext({
      runId: "r-42",
      path: "regional[2]/publish",
      attempt: 3,
      config: {
        image: "localhost/app:${params.tag}",
        command: ["run", "${params.region}"],
        args: ["--fast"],
        env: { MODE: "m-${params.tag}" },
      },
      params: { tag: "1.0", region: "eu west" },
      env: { PATH: bin, KAON_TOKEN: "secret-token", KAON_OUTPUT: "/w/output" },
    });
    const plan = await containerStepType.plan(ctx);
    const argv = plan.command.kind === "argv" ? plan.command.argv : [];
    const name = "kaon-r-42-regional-2-publish-3";
    expect(containerName(ctx)).toBe(name);
    expect(argv.slice(0, 2)).toEqual(["/bin/sh", "-c"]);
    expect(argv.slice(3, 7)).toEqual([
      "kaon-container",
      join(bin, "podman"),
      name,
      String(CONTAINER_STOP_GRACE_SECONDS),
    ]);
    expect(argv.slice(7)).toEqual([
      "--rm",
      "--name",
      name,
      "--label",
      "kaon.run=r-42",
      "--label",
      "kaon.step=regional[2]/publish",
      "--label",
      "kaon.attempt=3",
      "--network",
      "host",
      "--pull",
      "missing",
      "--replace",
      "--init",
      "--volume",
      `${ctx.workDir}:${ctx.workDir}`,
      "--workdir",
      ctx.workDir,
      "--env",
      "KAON_TOKEN",
      "--env",
      "KAON_OUTPUT",
      "--env",
      "MODE",
      "--entrypoint",
      "run",
      "localhost/app:1.0",
      "eu west",
      "--fast",
    ]);
    expect(argv.join(" ")).not.toContain("secret-token");
    expect(plan.env).toMatchObject({ MODE: "m-1.0" });
  });

  it("uses docker when it is the only runtime, or the one asked for", async () => {
    const onlyDocker = makeStepContext({
      config: { image: "x" },
      env: { PATH: fakeBin("docker") },
    });
    const argv = (await containerStepType.plan(onlyDocker)).command;
    expect(argv.kind === "argv" && argv.argv[4]).toMatch(/\/docker$/);
    expect(argv.kind === "argv" && argv.argv.includes("--replace")).toBe(false);
    const asked = makeStepContext({
      config: { image: "x", runtime: "docker" },
      env: { PATH: fakeBin("podman", "docker") },
    });
    const a = (await containerStepType.plan(asked)).command;
    expect(a.kind === "argv" && a.argv[4]).toMatch(/\/docker$/);
  });

  it("fails the attempt with a clear error when the agent has neither runtime", async () => {
    const ctx = makeStepContext({
      stepId: "publish",
      config: { image: "x" },
      env: { PATH: fakeBin() },
    });
    expect(() => containerStepType.plan(ctx)).toThrow(
      "container step 'publish' needs podman or docker on the agent; install podman (apt-get install podman) or use a command step",
    );
    const asked = makeStepContext({
      stepId: "publish",
      config: { image: "x", runtime: "docker" },
      env: { PATH: fakeBin("podman") },
    });
    expect(() => containerStepType.plan(asked)).toThrow(
      "asks for docker, which is not on the agent's PATH",
    );
    const missingMount = makeStepContext({
      config: { image: "x", mounts: [{ source: "/nonexistent/data", target: "/data" }] },
      env: { PATH: fakeBin("podman") },
    });
    expect(() => containerStepType.plan(missingMount)).toThrow(
      "mount source /nonexistent/data (mounts[0].source) does not exist on the agent",
    );
  });
});

// ---- real podman --------------------------------------------------------------------------

interface Started {
  child: ChildProcess;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Carries out a plan as the local backend does: env, own process group, output files. */
function launch(ctx: StepContext, plan: ProcessPlan): Started {
  if (plan.command.kind !== "argv") throw new Error("argv expected");
  const [program, ...args] = plan.command.argv;
  const child = spawn(program as string, args, {
    cwd: plan.cwd ?? ctx.workDir,
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...ctx.env, ...plan.env },
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout?.pipe(createWriteStream(join(ctx.workDir, STDOUT_FILE)));
  child.stderr?.pipe(createWriteStream(join(ctx.workDir, STDERR_FILE)));
  const exit = once(child, "exit").then(([code, signal]) => ({
    code: code as number | null,
    signal: signal as NodeJS.Signals | null,
  }));
  return { child, exit };
}

function jobContext(overrides: Partial<StepContext>): StepContext {
  const ctx = makeStepContext(overrides);
  writeFileSync(join(ctx.workDir, "params.json"), JSON.stringify(ctx.params));
  ctx.env = {
    KAON_OUTPUT: join(ctx.workDir, "output"),
    KAON_PARAMS_FILE: join(ctx.workDir, "params.json"),
    KAON_RUN_ID: ctx.runId,
    KAON_TOKEN: "t0ken",
    ...ctx.env,
  };
  return ctx;
}

async function until<T>(
  what: string,
  deadlineMs: number,
  probe: () => Promise<T | undefined> | T | undefined,
): Promise<T> {
  const end = Date.now() + deadlineMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out after ${deadlineMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe("container: real podman", () => {
  let skipReason: string | undefined;
  let image = "";
  const started: Started[] = [];
  beforeAll(async () => {
    const a = await podmanAvailability();
    if (!a.ok) {
      skipReason = a.reason;
      console.warn(`skipping real podman tests: ${a.reason}`);
      return;
    }
    image = await ensureTestImage();
  }, 180_000);
  afterAll(() => {
    for (const s of started) {
      try {
        if (s.child.pid) process.kill(-s.child.pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
  });

  it("runs a command whose outputs, params and env reach the job's files", async (t) => {
    if (skipReason) return t.skip();
    const hostData = mkdtempSync(join(tmpdir(), "kaon-mount-"));
    writeFileSync(join(hostData, "cohort.txt"), "42 users\n");
    const ctx = jobContext({
      runId: `r${Date.now()}`,
      config: {
        image,
        shell: [
          'echo "hello from $(hostname) in $(pwd)"',
          'echo "rows=$(cat /data/cohort.txt | cut -d" " -f1)" >> "$KAON_OUTPUT"',
          'echo "greeting=$GREETING" >> "$KAON_OUTPUT"',
          'echo "params=$(cat "$KAON_PARAMS_FILE")" >> "$KAON_OUTPUT"',
          'echo "run=$KAON_RUN_ID" >> "$KAON_OUTPUT"',
          'if touch /data/new 2>/dev/null; then echo "ro=no" >> "$KAON_OUTPUT"; else echo "ro=yes" >> "$KAON_OUTPUT"; fi',
          "echo done > result.txt",
        ].join("\n"),
        env: { GREETING: "hi ${params.who}" },
        mounts: [{ source: hostData, target: "/data", read_only: true }],
      },
      params: { who: "kaon" },
    });
    expect(containerStepType.validate(ctx.config, "config", settings)).toEqual([]);
    const plan = await containerStepType.plan(ctx);
    const run = launch(ctx, plan);
    started.push(run);
    const end = await run.exit;
    const stderr = readFileSync(join(ctx.workDir, STDERR_FILE), "utf8");
    expect(end, stderr).toEqual({ code: 0, signal: null });
    expect(readFileSync(join(ctx.workDir, STDOUT_FILE), "utf8")).toContain(`in ${ctx.workDir}`);
    expect(readFileSync(join(ctx.workDir, "output"), "utf8")).toBe(
      [
        "rows=42",
        "greeting=hi kaon",
        'params={"who":"kaon"}',
        `run=${ctx.runId}`,
        "ro=yes",
        "",
      ].join("\n"),
    );
    expect(readFileSync(join(ctx.workDir, "result.txt"), "utf8")).toBe("done\n");
    expect(await containersNamed(containerName(ctx))).toEqual([]); // --rm
  }, 120_000);

  it("reports a failing command's exit code, and a missing image as a runtime failure", async (t) => {
    if (skipReason) return t.skip();
    const ctx = jobContext({
      runId: `r${Date.now()}`,
      config: { image, command: ["sh", "-c", "echo bad input >&2; exit 3"] },
    });
    const run = launch(ctx, await containerStepType.plan(ctx));
    started.push(run);
    expect((await run.exit).code).toBe(3);
    expect(
      await containerStepType.interpretEnd?.(ctx, {
        taskId: "t",
        state: "FAILED",
        exitCode: 3,
        timestamp: 0,
      }),
    ).toEqual({
      succeeded: false,
      message: "container failed: exit code 3: bad input",
    });
    const missing = jobContext({
      runId: `r${Date.now()}`,
      config: { image: "localhost/kaon-no-such-image:1", pull: "never" },
    });
    const run2 = launch(missing, await containerStepType.plan(missing));
    started.push(run2);
    expect((await run2.exit).code).toBe(125);
    const r = await containerStepType.interpretEnd?.(missing, {
      taskId: "t",
      state: "FAILED",
      exitCode: 125,
      timestamp: 0,
    });
    expect(r?.message).toContain(
      "container failed: exit code 125 (the container runtime failed to run the container)",
    );
    expect(r?.message).toContain("kaon-no-such-image");
  }, 120_000);

  it("is stopped by a kill of the client's process group, even when the container ignores SIGTERM", async (t) => {
    if (skipReason) return t.skip();
    const ctx = jobContext({
      runId: `r${Date.now()}`,
      config: { image, shell: "trap '' TERM; echo started; while true; do sleep 1; done" },
    });
    const name = containerName(ctx);
    const run = launch(ctx, await containerStepType.plan(ctx));
    started.push(run);
    const stdout = join(ctx.workDir, STDOUT_FILE);
    await until("the container to start", 60_000, () =>
      existsSync(stdout) && readFileSync(stdout, "utf8").includes("started") ? true : undefined,
    );
    expect(await containersNamed(name)).toEqual([name]);
    const t0 = Date.now();
    process.kill(-(run.child.pid as number), "SIGTERM"); // what the local agent does first
    const end = await run.exit;
    expect(end.code === 0).toBe(false);
    // Stopped within the wrapper's grace, before the backend's SIGKILL (10 s) would come.
    expect(Date.now() - t0).toBeLessThan((CONTAINER_STOP_GRACE_SECONDS + 4) * 1000);
    await until("the container to be gone", 30_000, async () =>
      (await containersNamed(name)).length === 0 ? true : undefined,
    );
  }, 120_000);
});

describe("container: test image", () => {
  it("builds once and is then reused", async (t) => {
    const a = await podmanAvailability();
    if (!a.ok) return t.skip();
    const first = await ensureTestImage();
    expect(first).toMatch(/^localhost\/kaon-test-busybox:[0-9a-f]{16}$/);
    expect(await ensureTestImage()).toBe(first);
  });
});
