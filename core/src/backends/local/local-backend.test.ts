// The local backend against the real agent binary and real processes: statuses, output
// files, env, kills of whole process groups, resource offers, and the two restarts that
// matter (core's and the agent's) without losing or re-running a job.

import { execFileSync, spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ResourceAmounts } from "../backend.js";
import { LocalBackend, type LocalBackendOptions } from "./local-backend.js";
import {
  argv,
  journalState,
  killAgent,
  processAlive,
  Recorder,
  shell,
  spec,
  tempDataDir,
  untilReleased,
  waitFor,
} from "./test-support.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, "../../../..");
const dataDirs: string[] = [];
const backends: LocalBackend[] = [];

function newDataDir(): string {
  const dir = tempDataDir();
  dataDirs.push(dir);
  return dir;
}

async function startBackend(
  dataDir: string,
  options: Partial<LocalBackendOptions> = {},
): Promise<{ backend: LocalBackend; rec: Recorder }> {
  const backend = new LocalBackend({
    dataDir,
    resources: { cpus: 4, memMb: 4096, gpus: 0, diskMb: 0 },
    ...options,
  });
  backends.push(backend);
  const rec = new Recorder();
  await backend.start(rec);
  return { backend, rec };
}

function release(dataDir: string): void {
  fs.mkdirSync(path.join(dataDir, "work"), { recursive: true });
  fs.writeFileSync(path.join(dataDir, "work", "release"), "");
}

beforeAll(() => {
  execFileSync(path.join(repoRoot, "core/scripts/build-agent.sh"), { stdio: "inherit" });
});

afterAll(async () => {
  for (const b of backends) await b.stop();
  for (const dir of dataDirs) {
    release(dir); // jobs that wait for it end on their own
    killAgent(dir);
  }
  for (const dir of dataDirs) fs.rmSync(dir, { recursive: true, force: true });
});

describe("LocalBackend", () => {
  it("reports exit codes, writes stdout/stderr to files and passes env exactly", async () => {
    const dir = newDataDir();
    const { backend, rec } = await startBackend(dir);
    const offer = await rec.takeOffer();
    backend.launch(
      [offer.id],
      [
        spec(dir, "t-true", argv("true")),
        spec(dir, "t-false", argv("false")),
        spec(dir, "t-exit3", shell("echo out; echo err >&2; exit 3")),
        spec(dir, "t-env", argv("env"), { env: { FOO: "bar baz", PATH: "/usr/bin:/bin" } }),
        spec(dir, "t-nopath", argv("env"), { env: { ONLY: "1" } }),
      ],
    );
    expect(await rec.final("t-true")).toMatchObject({
      state: "FINISHED",
      exitCode: 0,
      agentId: "local",
    });
    expect(await rec.final("t-false")).toMatchObject({ state: "FAILED", exitCode: 1 });
    expect(await rec.final("t-exit3")).toMatchObject({
      state: "FAILED",
      exitCode: 3,
      message: "exited with code 3",
    });
    expect(rec.statusesOf("t-true").map((s) => s.state)).toEqual(["RUNNING", "FINISHED"]);
    expect(fs.readFileSync(path.join(dir, "logs", "t-exit3.out"), "utf8")).toBe("out\n");
    expect(fs.readFileSync(path.join(dir, "logs", "t-exit3.err"), "utf8")).toBe("err\n");

    expect(await rec.final("t-env")).toMatchObject({ state: "FINISHED" });
    const envLines = fs
      .readFileSync(path.join(dir, "logs", "t-env.out"), "utf8")
      .trim()
      .split("\n");
    expect(envLines.sort()).toEqual(["FOO=bar baz", "PATH=/usr/bin:/bin"]);
    // Without PATH the job gets the agent's, so that commands resolve.
    await rec.final("t-nopath");
    const noPath = fs
      .readFileSync(path.join(dir, "logs", "t-nopath.out"), "utf8")
      .trim()
      .split("\n");
    expect(noPath.sort()).toEqual(["ONLY=1", `PATH=${process.env.PATH}`].sort());
  });

  it("gives every job exactly its env when launches share most of it (env bases)", async () => {
    const dir = newDataDir();
    const { backend, rec } = await startBackend(dir, {
      resources: { cpus: 64, memMb: 4096, gpus: 0, diskMb: 0 },
    });
    const shared = { PATH: "/usr/bin:/bin", HOME: "/home/x", RUN: "r1", LONG: "v".repeat(500) };
    const envs: Array<Record<string, string>> = [
      ...Array.from({ length: 12 }, (_, i) => ({ ...shared, I: String(i), TOKEN: `t${i}` })),
      { ...shared, I: "x", HOME: "/elsewhere" }, // overrides a shared variable
      { RUN: "r1", I: "y" }, // lacks shared ones, and PATH: the agent's
      { ...shared, I: "z", constructor: "c" }, // a name of an Object method is data
    ];
    const offer = await rec.takeOffer();
    backend.launch(
      [offer.id],
      envs.map((env, i) => spec(dir, `t-env${i}`, argv("env"), { env })),
    );
    for (const [i, env] of envs.entries()) {
      expect(await rec.final(`t-env${i}`)).toMatchObject({ state: "FINISHED" });
      const got = fs
        .readFileSync(path.join(dir, "logs", `t-env${i}.out`), "utf8")
        .trim()
        .split("\n")
        .sort();
      const want = Object.entries({ PATH: process.env.PATH, ...env })
        .map(([k, v]) => `${k}=${v}`)
        .sort();
      expect(got, `env of task ${i}`).toEqual(want);
    }
  });

  it("refuses an agent that speaks another protocol version, saying how to fix it", async () => {
    const dir = newDataDir();
    const agentDir = path.join(dir, "agent");
    fs.mkdirSync(agentDir, { recursive: true });
    // An agent of an older kaon: says hello with version 1 and nothing else.
    const server = net.createServer((socket) =>
      socket.write(`${JSON.stringify({ type: "hello", pid: 4242, version: 1 })}\n`),
    );
    await new Promise<void>((resolve) => server.listen(path.join(agentDir, "agent.sock"), resolve));
    try {
      const backend = new LocalBackend({ dataDir: dir, startTimeoutMs: 2000 });
      await expect(backend.start(new Recorder())).rejects.toThrow(
        /speaks protocol version 1, but this core speaks version 2.*kill 4242/,
      );
      await backend.stop();
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it("reports a missing binary as ERROR with a clear message", async () => {
    const dir = newDataDir();
    const { backend, rec } = await startBackend(dir);
    const offer = await rec.takeOffer();
    backend.launch([offer.id], [spec(dir, "t-missing", argv("kaon-no-such-command", "x"))]);
    const status = await rec.final("t-missing");
    expect(status.state).toBe("ERROR");
    expect(status.message).toMatch(/^command not found: kaon-no-such-command/);
  });

  it("kills the whole process group, escalating to SIGKILL after the grace time", async () => {
    const dir = newDataDir();
    const { backend, rec } = await startBackend(dir, { killGraceMs: 300 });
    const offer = await rec.takeOffer();
    const work = path.join(dir, "work");
    backend.launch(
      [offer.id],
      [
        spec(dir, "t-tree", shell("sleep 60 & echo $! > child.pid; wait")),
        spec(dir, "t-stubborn", shell("trap '' TERM; sleep 60 & echo $! > stubborn.pid; wait")),
      ],
    );
    await rec.state("t-tree", "RUNNING");
    await rec.state("t-stubborn", "RUNNING");
    // Whole lines: the shell creates the file before echo writes the pid into it.
    const pidWritten = (file: string) => {
      try {
        return fs.readFileSync(path.join(work, file), "utf8").endsWith("\n");
      } catch {
        return false;
      }
    };
    await waitFor(
      () => pidWritten("child.pid") && pidWritten("stubborn.pid"),
      "the jobs' children",
    );
    const child = Number(fs.readFileSync(path.join(work, "child.pid"), "utf8"));
    const stubborn = Number(fs.readFileSync(path.join(work, "stubborn.pid"), "utf8"));
    expect(processAlive(child)).toBe(true);

    backend.kill("t-tree");
    backend.kill("t-stubborn");
    expect(await rec.final("t-tree")).toMatchObject({ state: "KILLED", signal: "SIGTERM" });
    expect(await rec.final("t-stubborn")).toMatchObject({ state: "KILLED", signal: "SIGKILL" });
    await waitFor(() => !processAlive(child) && !processAlive(stubborn), "the children to die");
  });

  it("offers the free pool, shrinking while tasks run and growing when they end", async () => {
    const dir = newDataDir();
    const pool: ResourceAmounts = { cpus: 2, memMb: 1000, gpus: 0, diskMb: 0 };
    const { backend, rec } = await startBackend(dir, {
      resources: pool,
      attributes: { zone: "a" },
    });
    const first = await rec.takeOffer();
    expect(first).toMatchObject({ agentId: "local", resources: pool, attributes: { zone: "a" } });

    expect(backend.fitsEver({ cpus: 2, memMb: 1000, gpus: 0, diskMb: 0 })).toBe(true);
    expect(backend.fitsEver({ cpus: 3, memMb: 10, gpus: 0, diskMb: 0 })).toBe(false);
    expect(backend.whyNeverFits({ cpus: 3, memMb: 10, gpus: 1, diskMb: 0 })).toMatch(
      /cpus 3 > 2, gpus 1 > 0/,
    );

    const big = { cpus: 1, memMb: 400, gpus: 0, diskMb: 0 };
    backend.launch(
      [first.id],
      [
        spec(dir, "t-hold", untilReleased, { resources: big }),
        spec(dir, "t-toobig", argv("true"), { resources: { ...big, cpus: 1.5 } }),
      ],
    );
    expect(await rec.final("t-toobig")).toMatchObject({ state: "ERROR" });
    const second = await rec.takeOffer();
    expect(second.resources).toEqual({ cpus: 1, memMb: 600, gpus: 0, diskMb: 0 });
    expect(backend.agentInfo()).toMatchObject({ used: big, runningTasks: 1, backend: "local" });

    // A declined offer is not made again while nothing changes...
    backend.decline([second.id], 600);
    const offersBefore = rec.allOffers.length;
    await rec.state("t-hold", "RUNNING");
    release(dir);
    expect(await rec.final("t-hold")).toMatchObject({ state: "FINISHED" });
    // ...but is as soon as resources free up: one offer for the whole pool.
    const third = await rec.takeOffer();
    expect(rec.allOffers.length).toBe(offersBefore + 1);
    expect(third.resources).toEqual(pool);

    // A stale offer id cannot launch anything.
    backend.launch([second.id], [spec(dir, "t-stale", argv("true"))]);
    expect(await rec.final("t-stale")).toMatchObject({ state: "LOST" });

    // Suppressed: no offers; revived: the pool again.
    backend.suppress();
    backend.decline([third.id], 0);
    backend.revive();
    const fourth = await rec.takeOffer();
    expect(fourth.resources).toEqual(pool);
    expect(backend.agentInfo().used).toEqual({ cpus: 0, memMb: 0, gpus: 0, diskMb: 0 });
  });

  it("survives a core restart: ended tasks are reported, running ones re-adopted, none re-run", async () => {
    const dir = newDataDir();
    const a = await startBackend(dir);
    const offer = await a.rec.takeOffer();
    const counter = path.join(dir, "work", "count.txt");
    a.backend.launch(
      [offer.id],
      [
        spec(dir, "t-long", untilReleased, {
          resources: { cpus: 1, memMb: 100, gpus: 0, diskMb: 0 },
        }),
        spec(dir, "t-write", shell("echo ran >> count.txt; exit 7")),
      ],
    );
    await a.rec.state("t-long", "RUNNING");
    await a.rec.state("t-write", "RUNNING");
    await a.backend.stop(); // core goes away; the agent and its jobs stay

    await waitFor(
      () => journalState(dir, "t-write") === "exited",
      "t-write to end while no core runs",
    );

    const b = await startBackend(dir);
    expect(await b.rec.final("t-write")).toMatchObject({ state: "FAILED", exitCode: 7 });
    await b.rec.state("t-long", "RUNNING");
    expect(b.backend.agentInfo().used).toMatchObject({ cpus: 1, memMb: 100 });
    // The re-adopted task's resources are not offered.
    expect((await b.rec.takeOffer()).resources.cpus).toBe(3);

    b.backend.reconcile([{ taskId: "t-write" }, { taskId: "t-never" }]);
    expect(await b.rec.final("t-never")).toMatchObject({ state: "LOST" });
    await b.rec.until(() => b.rec.statusesOf("t-write").length >= 2, "t-write reconciled");

    release(dir);
    expect(await b.rec.final("t-long")).toMatchObject({ state: "FINISHED", exitCode: 0 });
    expect(fs.readFileSync(counter, "utf8")).toBe("ran\n");

    b.backend.acknowledge("t-write");
    b.backend.acknowledge("t-long");
    await waitFor(
      () => journalState(dir, "t-write") === "deleted" && journalState(dir, "t-long") === "deleted",
      "the records to be dropped",
    );
  });

  it("lets the agent exit once it owns nothing: stopped, every status acknowledged", async () => {
    const dir = newDataDir();
    const { backend, rec } = await startBackend(dir, { agentIdleExitMs: 200 });
    const agentPid = backend.agentInfo().agentPid as number;
    expect(agentPid).toBeGreaterThan(0);
    backend.launch([(await rec.takeOffer()).id], [spec(dir, "t-idle", argv("true"))]);
    expect(await rec.final("t-idle")).toMatchObject({ state: "FINISHED" });
    expect(journalState(dir, "t-idle")).toBe("exited");
    // The ack leaves just before the connection closes; stop() closes gracefully, so the
    // agent reads it before the end (without it, the unacknowledged end would keep it).
    backend.acknowledge("t-idle");
    await backend.stop();
    await waitFor(() => !processAlive(agentPid), "the idle agent to exit");
    for (const file of ["agent.sock", "agent.pid", "agent.lock", "tasks.journal"]) {
      expect(fs.existsSync(path.join(dir, "agent", file)), file).toBe(false);
    }
    expect(fs.readFileSync(path.join(dir, "agent", "agent.log"), "utf8")).toMatch(
      /owned nothing for 200ms: exited/,
    );
  });

  it("keeps an idle-exiting agent while a task runs, until its end reaches the next core", async () => {
    const dir = newDataDir();
    const a = await startBackend(dir, { agentIdleExitMs: 200 });
    const agentPid = a.backend.agentInfo().agentPid as number;
    a.backend.launch(
      [(await a.rec.takeOffer()).id],
      [spec(dir, "t-outlive", shell("sleep 1; exit 5"))],
    );
    await a.rec.state("t-outlive", "RUNNING");
    await a.backend.stop();
    // The job runs for five idle graces with no core connected, and its end is recorded...
    await waitFor(() => journalState(dir, "t-outlive") === "exited", "t-outlive to end");
    // ...by the same agent, which stays: the end is not acknowledged yet.
    expect(processAlive(agentPid)).toBe(true);

    const b = await startBackend(dir, { agentIdleExitMs: 200 });
    expect(b.backend.agentInfo().agentPid).toBe(agentPid);
    expect(await b.rec.final("t-outlive")).toMatchObject({ state: "FAILED", exitCode: 5 });
    b.backend.acknowledge("t-outlive");
    await b.backend.stop();
    await waitFor(() => !processAlive(agentPid), "the agent to exit after the ack");
    expect(fs.existsSync(path.join(dir, "agent", "tasks.journal"))).toBe(false);
  });

  it("reaches an agent even when it is exiting idle just as core connects", async () => {
    const dir = newDataDir();
    // A 1 ms grace: the agent a stop() leaves behind is exiting as the next start connects.
    for (let i = 0; i < 20; i++) {
      const { backend, rec } = await startBackend(dir, { agentIdleExitMs: 1 });
      backend.launch([(await rec.takeOffer()).id], [spec(dir, `t-race-${i}`, argv("true"))]);
      expect(await rec.final(`t-race-${i}`)).toMatchObject({ state: "FINISHED" });
      backend.acknowledge(`t-race-${i}`);
      await backend.stop();
    }
  });

  it("survives core being killed abruptly", async () => {
    const dir = newDataDir();
    const fixture = path.join(here, "testdata", "doomed-core.ts");
    const core = spawn(process.execPath, ["--import", "tsx", fixture, dir], {
      cwd: repoRoot,
      stdio: ["ignore", "pipe", "inherit"],
    });
    let out = "";
    core.stdout.setEncoding("utf8");
    await new Promise<void>((resolve, reject) => {
      core.stdout.on("data", (c: string) => {
        out += c;
        if (out.includes("running")) resolve();
      });
      core.once("exit", (code) =>
        reject(new Error(`the doomed core exited early (${code}): ${out}`)),
      );
    });
    core.kill("SIGKILL");
    await new Promise((r) => core.once("exit", r));

    fs.writeFileSync(path.join(dir, "work", "go"), ""); // the quick task ends while no core runs
    await waitFor(
      () => fs.existsSync(path.join(dir, "work", "quick.done")),
      "the quick task to run",
    );
    const b = await startBackend(dir);
    await b.rec.state("c-long", "RUNNING");
    expect(await b.rec.final("c-quick")).toMatchObject({ state: "FINISHED" });
    release(dir);
    expect(await b.rec.final("c-long")).toMatchObject({ state: "FINISHED" });
    expect(fs.readFileSync(path.join(dir, "work", "quick.done"), "utf8")).toBe("x\n");
  });

  it("survives an agent restart: a running job is re-adopted and reported lost when it ends", async () => {
    const dir = newDataDir();
    const { backend, rec } = await startBackend(dir);
    const offer = await rec.takeOffer();
    backend.launch([offer.id], [spec(dir, "t-orphan", untilReleased)]);
    await rec.state("t-orphan", "RUNNING");
    const firstAgent = backend.agentInfo().agentPid;
    expect(firstAgent).toBeGreaterThan(0);

    process.kill(firstAgent as number, "SIGKILL");
    await rec.until(() => rec.rescinded.length > 0, "the offer to be rescinded");
    // The backend starts a new agent, which re-adopts the job.
    await rec.until(() => rec.offers.length > 0, "an offer from the new agent");
    const secondAgent = backend.agentInfo().agentPid;
    expect(secondAgent).not.toBe(firstAgent);
    expect(rec.statusesOf("t-orphan").every((s) => s.state === "RUNNING")).toBe(true);

    release(dir);
    const status = await rec.final("t-orphan");
    expect(status.state).toBe("LOST");
    expect(status.message).toMatch(/exit status is unknown/);
  });

  it("runs a task once even when it is launched twice", async () => {
    const dir = newDataDir();
    const { backend, rec } = await startBackend(dir);
    const once = spec(dir, "t-once", shell("echo x >> once.txt"));
    backend.launch([(await rec.takeOffer()).id], [once]);
    await rec.final("t-once");
    backend.launch([(await rec.takeOffer()).id], [once]);
    await rec.until(() => rec.statusesOf("t-once").length >= 3, "the repeated status");
    expect(fs.readFileSync(path.join(dir, "work", "once.txt"), "utf8")).toBe("x\n");
  });

  it("fails clearly when the agent binary is missing", async () => {
    const dir = newDataDir();
    const backend = new LocalBackend({ dataDir: dir, agentBinary: path.join(dir, "nope") });
    await expect(backend.start(new Recorder())).rejects.toThrow(/core\/scripts\/build-agent\.sh/);
  });
});
