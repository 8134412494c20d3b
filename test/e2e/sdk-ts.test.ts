// End to end: the TypeScript SDK against the real `kaon server` (started as a process with a
// temporary data directory, found by the SDK's own discovery through KAON_HOME). Each part
// first probes that the service it needs is served; a service that is not there yet answers
// UNIMPLEMENTED, and the test is skipped with that reason printed instead of passing.
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, watch } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  command,
  connect,
  InvalidDefinitionError,
  type KaonClient,
  noop,
  seq,
  UnimplementedError,
  workflow,
} from "@kaon/sdk";
import { afterAll, beforeAll, describe, expect, test } from "vitest";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const SDK_ENTRY = join(ROOT, "sdk-ts", "src", "index.ts");
const CLI_ENTRY = join(ROOT, "core", "src", "cli", "main.ts");

let home: string;
let server: ChildProcess | undefined;
let client: KaonClient | undefined;
let startFailure: string | undefined;

function waitForFile(dir: string, name: string, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const watcher = watch(dir, () => {
      if (existsSync(join(dir, name))) done();
    });
    const timer = setTimeout(() => {
      watcher.close();
      reject(new Error(`${name} did not appear in ${dir} within ${timeoutMs} ms`));
    }, timeoutMs);
    function done() {
      clearTimeout(timer);
      watcher.close();
      resolve();
    }
    if (existsSync(join(dir, name))) done();
  });
}

beforeAll(async () => {
  home = mkdtempSync(join(tmpdir(), "kaon-e2e-ts-"));
  let stderr = "";
  server = spawn(
    process.execPath,
    [
      "--import",
      "tsx",
      CLI_ENTRY,
      "server",
      "--grpc-listen",
      "127.0.0.1:0",
      "--http-listen",
      "127.0.0.1:0",
    ],
    { cwd: ROOT, env: { ...process.env, KAON_HOME: home }, stdio: ["ignore", "ignore", "pipe"] },
  );
  server.stderr?.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const exited = new Promise<never>((_, reject) =>
    server?.once("exit", (code) =>
      reject(new Error(`kaon server exited with ${code}: ${stderr.slice(-2000)}`)),
    ),
  );
  try {
    await Promise.race([waitForFile(home, "server.json", 60_000), exited]);
    client = await connect({ env: { KAON_HOME: home } });
  } catch (err) {
    startFailure = (err as Error).message;
  }
});

afterAll(async () => {
  client?.close();
  if (server && server.exitCode === null) {
    const gone = new Promise((resolve) => server?.once("exit", resolve));
    server.kill("SIGTERM");
    await gone;
  }
  rmSync(home, { recursive: true, force: true });
});

/** Runs `probe`; UNIMPLEMENTED (a service missing from the server) fails with its name. */
async function requireService<T>(what: string, probe: () => Promise<T>): Promise<T> {
  if (startFailure !== undefined || client === undefined) {
    throw new Error(`the real kaon server did not start: ${startFailure}`);
  }
  try {
    return await probe();
  } catch (err) {
    if (err instanceof UnimplementedError) {
      throw new Error(`${what} is not served by kaon: ${err.message}`);
    }
    throw err;
  }
}

const hello = (suffix = "") =>
  workflow({ id: "e2e.ts.hello", description: `hello${suffix}` }, () => {
    seq(command("greet", ["echo", "hello"]), noop("done"));
  });

describe("TypeScript SDK against the real server", () => {
  test("connect() finds the local server through KAON_HOME (server.json + admin.token)", () => {
    expect(startFailure).toBeUndefined();
    expect(client?.address).toMatch(/^127\.0\.0\.1:\d+$/);
  });

  test("validate: an invalid workflow raises InvalidDefinitionError with core's field paths", async () => {
    const bad = workflow({ id: "e2e.ts.bad" }, () => {
      const a = noop("a");
      a.to(noop("a"));
    });
    const err = await requireService("WorkflowService.Validate", () =>
      client!.validate(bad).then(
        () => undefined,
        (e: unknown) => {
          if (e instanceof UnimplementedError) throw e;
          return e;
        },
      ),
    );
    expect(err).toBeInstanceOf(InvalidDefinitionError);
    expect((err as InvalidDefinitionError).violations.map((v) => v.field)).toContain("steps[1].id");
  });

  test("deploy: versions, identical content, SCM metadata and the client name", async () => {
    const first = await requireService("WorkflowService.Deploy", () => client!.deploy(hello()));
    expect(first.version.version).toBeGreaterThanOrEqual(1);
    const again = await client!.deploy(hello());
    expect(again.created).toBe(false);
    expect(again.version.version).toBe(first.version.version);
    const changed = await client!.deploy(hello(" again"));
    expect(changed.version.version).toBe(first.version.version + 1);
    expect(changed.version.client?.name).toBe("kaon-ts");
    expect(changed.version.scm?.commit).toMatch(/^[0-9a-f]{40}$/);
  });

  test("run, wait with progress, steps, outputs, logs, in-job reports from TS, the CLI and $KAON_OUTPUT, restart", async () => {
    const script = [
      `import { job } from ${JSON.stringify(SDK_ENTRY)};`,
      `job.output("from_ts", { auc: 0.9 });`,
      `job.progress(100, "done");`,
    ].join(" ");
    const wf = workflow({ id: "e2e.ts.reports" }, () => {
      seq(
        // cwd: the repo, so that `--import tsx` resolves.
        command("ts_sdk", {
          argv: [process.execPath, "--import", "tsx", "--input-type=module", "-e", script],
          cwd: ROOT,
        }),
        command("cli", {
          argv: [
            process.execPath,
            "--import",
            "tsx",
            CLI_ENTRY,
            "job",
            "output",
            "from_cli",
            "[1,2]",
          ],
          cwd: ROOT,
        }),
        command("file", 'echo "from_file=hello" >> "$KAON_OUTPUT"; echo logged-line'),
      );
    });
    const run = await requireService("WorkflowService.Deploy + RunService.StartRun", () =>
      client!.run(wf),
    );
    const seen: string[] = [];
    const final = await run.wait({ onProgress: (p) => seen.push(p.status) });
    expect(run.status, final.message).toBe("SUCCEEDED");
    expect(seen.at(-1)).toBe("SUCCEEDED");
    const steps = await run.steps();
    expect(steps.map((s) => s.path)).toEqual(["ts_sdk", "cli", "file"]);
    expect(steps.find((s) => s.path === "ts_sdk")?.outputs).toEqual({ from_ts: { auc: 0.9 } });
    expect(steps.find((s) => s.path === "cli")?.outputs).toEqual({ from_cli: [1, 2] });
    expect(await run.outputs()).toMatchObject({ "file.from_file": "hello" });
    let log = "";
    for await (const chunk of run.logs("file")) log += chunk;
    expect(log).toContain("logged-line");
    const restarted = await run.restart({ from: "beginning" });
    expect(restarted.restartCount).toBe(1);
    await run.wait();
    expect(run.status).toBe("SUCCEEDED");
  });
});
