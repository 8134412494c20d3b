// Spawn floor of the local backend: what a launch costs through the agent compared with the
// agent spawning on its own, and why core does not spawn itself (Node's fork blocks the event
// loop for a time that grows with the heap). Prints figures; asserts nothing.
//
//   npx tsx bench/spawn-floor.ts [N=2000] [CONCURRENCY=8]

import { execFileSync, spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { Offer, TaskSpec, TaskStatus } from "../core/src/backends/backend.js";
import { isTerminalTaskState } from "../core/src/backends/backend.js";
import { AgentConnection } from "../core/src/backends/local/agent-client.js";
import { LocalBackend } from "../core/src/backends/local/index.js";

const N = Number(process.argv[2] ?? 2000);
const CONCURRENCY = Number(process.argv[3] ?? 8);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

execFileSync(path.join(root, "core/scripts/build-agent.sh"), { stdio: "inherit" });
/** N `true` through LocalBackend: offers, launches, statuses, acks; CONCURRENCY cpus of 1. */
async function throughBackend(dataDir: string, n: number): Promise<number> {
  const backend = new LocalBackend({
    dataDir,
    resources: { cpus: CONCURRENCY, memMb: 1024, gpus: 0, diskMb: 0 },
  });
  let next = 0;
  let done = 0;
  let began = 0;
  // Like the engine's attempts: one directory per task under the run's, holding its logs
  // (docs/decisions/0004-attempt-layout.md).
  const runDir = path.join(dataDir, "runs", `r${n}-${Date.now()}`);
  fs.mkdirSync(runDir, { recursive: true });
  const task = (i: number): TaskSpec => ({
    taskId: `b${i}`,
    name: `b${i}`,
    agentId: "local",
    resources: { cpus: 1, memMb: 1, gpus: 0, diskMb: 0 },
    command: { kind: "argv", argv: ["true"] },
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin" },
    cwd: path.join(runDir, `b${i}.1`),
    stdoutPath: path.join(runDir, `b${i}.1`, "stdout"),
    stderrPath: path.join(runDir, `b${i}.1`, "stderr"),
  });
  const finished = new Promise<void>((resolve) => {
    void backend.start({
      onOffers(offers: Offer[]) {
        for (const offer of offers) {
          const slots = Math.floor(offer.resources.cpus);
          const batch: TaskSpec[] = [];
          while (batch.length < slots && next < n) batch.push(task(next++));
          if (batch.length === 0) backend.decline([offer.id], 60);
          else {
            if (began === 0) began = performance.now();
            backend.launch([offer.id], batch);
          }
        }
      },
      onRescind() {},
      onStatus(s: TaskStatus) {
        if (!isTerminalTaskState(s.state)) return;
        if (s.state !== "FINISHED") throw new Error(`${s.taskId}: ${s.state} ${s.message}`);
        backend.acknowledge(s.taskId);
        if (++done === n) resolve();
      },
    });
  });
  await finished;
  const elapsed = performance.now() - began;
  await backend.stop();
  return elapsed;
}

async function agentAlone(dataDir: string, n: number): Promise<number> {
  const conn = await AgentConnection.connect(
    path.join(dataDir, "agent", "agent.sock"),
    () => {},
    () => {},
  );
  const reply = await conn.request<{ type: string; elapsedMs: number; failures: number }>({
    type: "bench",
    n,
    concurrency: CONCURRENCY,
    argv: ["true"],
  });
  conn.close();
  if (reply.failures) throw new Error(`${reply.failures} agent spawns failed`);
  return reply.elapsedMs;
}

/** N `true` spawned by Node itself at CONCURRENCY; returns elapsed and the mean spawn() block. */
async function nodeSpawns(
  n: number,
): Promise<{ elapsed: number; blockMs: number; maxBlockMs: number }> {
  let started = 0;
  let blocked = 0;
  let maxBlock = 0;
  const begin = performance.now();
  await new Promise<void>((resolve) => {
    let finished = 0;
    const one = () => {
      if (started >= n) return;
      started++;
      const t0 = performance.now();
      const child = spawn("true", [], { stdio: "ignore" });
      const dt = performance.now() - t0;
      blocked += dt;
      maxBlock = Math.max(maxBlock, dt);
      child.on("exit", () => {
        if (++finished === n) resolve();
        else one();
      });
    };
    for (let i = 0; i < CONCURRENCY; i++) one();
  });
  return { elapsed: performance.now() - begin, blockMs: blocked / n, maxBlockMs: maxBlock };
}

const ballast: unknown[] = [];
function growHeapTo(mb: number): number {
  let i = ballast.length;
  while (process.memoryUsage().heapUsed < mb * 1024 * 1024) {
    for (let k = 0; k < 10_000; k++, i++) ballast.push({ i, s: `item-${i}`, a: [i, i + 1] });
  }
  return process.memoryUsage().heapUsed / (1024 * 1024);
}

const fmt = (ms: number) => ms.toFixed(3);
console.log(
  `machine: ${os.cpus().length} cpus, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB, Node ${process.version}`,
);
console.log(`N=${N} launches of \`true\` at concurrency ${CONCURRENCY}\n`);

/** Mean cost of creating a file in dir: what each job's stdout/stderr file costs there. */
function createCostMs(dir: string): number {
  const t0 = performance.now();
  for (let i = 0; i < 200; i++) fs.closeSync(fs.openSync(path.join(dir, `probe-${i}`), "a"));
  return (performance.now() - t0) / 200;
}

const bases = [os.tmpdir(), "/dev/shm"].filter((d, i) => i === 0 || fs.existsSync(d));
for (const base of bases) {
  const dataDir = fs.mkdtempSync(path.join(base, "kaon-bench-"));
  const create = createCostMs(dataDir);
  await throughBackend(dataDir, 200); // warm-up: agent start, page cache
  const viaBackend = await throughBackend(dataDir, N);
  const alone = await agentAlone(dataDir, N);
  console.log(
    `data dir on ${base} (creating a file there: ${fmt(create)} ms; each job creates a directory and 2 log files)`,
  );
  console.log(
    `  through LocalBackend + agent: ${fmt(viaBackend / N)} ms/spawn  (${(N / (viaBackend / 1000)).toFixed(0)}/s)`,
  );
  console.log(
    `  agent spawning alone (floor): ${fmt(alone / N)} ms/spawn  (${(N / (alone / 1000)).toFixed(0)}/s)`,
  );
  console.log(`  ratio backend/floor:          ${(viaBackend / alone).toFixed(2)}x`);
  const pid = Number(fs.readFileSync(path.join(dataDir, "agent", "agent.pid"), "utf8"));
  process.kill(pid, "SIGTERM");
  fs.rmSync(dataDir, { recursive: true, force: true });
}
console.log();

for (const mb of [50, 600]) {
  const heap = growHeapTo(mb);
  const r = await nodeSpawns(mb === 50 ? N : Math.min(N, 500));
  const count = mb === 50 ? N : Math.min(N, 500);
  console.log(
    `Node child_process.spawn at ${heap.toFixed(0)} MB heap: event loop blocked ${fmt(r.blockMs)} ms/spawn ` +
      `(max ${fmt(r.maxBlockMs)}), ${fmt(r.elapsed / count)} ms/spawn wall over ${count}`,
  );
}
