// Benchmarks (a) and (b): real processes through the engine and the local agent.
// (a) a chain of 200 trivial command steps: overhead per hop beyond the bare process cost
//     (the agent's own spawn+wait of `true`, one at a time, measured in the same run);
// (b) a foreach of 10,000 `true` at concurrency 8 against the agent's spawn floor at the
//     same concurrency, measured in the same run.
// For (b) it also prints the CPU time spent per task by core (this process), the agent and
// the jobs themselves (the agent's reaped children), for the floor and for the run: on a
// machine whose cores are saturated by the fan-out, the ratio is roughly the ratio of CPU
// per task, so these figures say where the gap comes from.
// The data directory is a temp dir under $TMPDIR; `TMPDIR=/dev/shm` takes the disk's cost of
// creating the attempt directories and log files out of the figures (bench/README.md).
// Run: npx tsx bench/engine-commands.ts [chainLength] [fanout]
import { readFileSync } from "node:fs";
import { RunStatus } from "@kaon/proto";
import { RUN_ENDED } from "../core/src/engine/notifier.js";
import { startEngineKaon } from "../test/engine/support/harness.js";

const chainLength = Number(process.argv[2] ?? 200);
const fanout = Number(process.argv[3] ?? 10_000);
const k = await startEngineKaon({ resources: { cpus: 2 } });

type Bench = { elapsedMs: number; failures: number };
const conn = (k.backend as unknown as { conn: { request(r: object): Promise<Bench> } }).conn;
const floor = (n: number, concurrency: number) =>
  conn.request({ type: "bench", n, concurrency, argv: ["true"] });

const tiny = { cpus: 0.1, memMb: 16 };

/** CPU ms of the agent itself and of its reaped children (the jobs), from /proc (USER_HZ 100). */
const agentPid = k.backend.agentInfo().agentPid;
function agentCpu(): { agent: number; jobs: number } {
  const fields = readFileSync(`/proc/${agentPid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? [];
  const tick = (i: number) => Number(fields[i]) * 10;
  return { agent: tick(11) + tick(12), jobs: tick(13) + tick(14) };
}
function coreCpu(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}
/** CPU µs per task of core, agent and jobs between two samples. */
function perTask(
  from: { core: number; agent: number; jobs: number },
  to: { core: number; agent: number; jobs: number },
  n: number,
) {
  const us = (a: number, b: number) => Math.round(((b - a) * 1000) / n);
  return {
    core: us(from.core, to.core),
    agent: us(from.agent, to.agent),
    jobs: us(from.jobs, to.jobs),
  };
}
const sample = () => ({ core: coreCpu(), ...agentCpu() });

/** Starts a run and resolves when it ends, waiting on the engine's notifier (no WatchRun). */
async function runToEnd(workflowId: string) {
  let runId = "";
  const ended = new Promise<void>((resolve) => {
    const off = k.engine.notifier.subscribe(RUN_ENDED, () => {
      if (runId && !k.engine.isLive(runId)) {
        off();
        resolve();
      }
    });
  });
  ({ runId } = await k.engine.startRun({ workflowId, version: 0, params: {} }));
  if (k.engine.isLive(runId)) await ended;
  return { run: (await k.runs.getRun({ runId })).run as { status: number } };
}
try {
  // (a) chain
  const steps = Array.from({ length: chainLength }, (_, i) => ({
    id: `s${i}`,
    type: "command",
    config: { argv: ["true"] },
    resources: tiny,
    ...(i + 1 < chainLength ? { next: [{ to: `s${i + 1}` }] } : {}),
  }));
  await k.deploy({ id: "chain", steps });
  await floor(50, 1); // warm up
  const chainFloor = await floor(chainLength, 1);
  const t0 = performance.now();
  const chain = await runToEnd("chain");
  const chainMs = performance.now() - t0;
  const perHop = chainMs / chainLength;
  const perProcess = chainFloor.elapsedMs / chainLength;

  // (b) fan-out
  await k.deploy({
    id: "fanout",
    steps: [
      {
        id: "fe",
        type: "foreach",
        foreach: {
          axes: [{ values: Array.from({ length: fanout }, (_, i) => i) }],
          concurrency: 8,
          body: [{ id: "t", type: "command", config: { argv: ["true"] }, resources: tiny }],
        },
      },
    ],
  });
  const c0 = sample();
  const fanFloor = await floor(fanout, 8);
  const c1 = sample();
  const t1 = performance.now();
  const fan = await runToEnd("fanout");
  const fanMs = performance.now() - t1;
  const c2 = sample();
  console.log(
    JSON.stringify({
      bench: "engine-commands",
      chain: {
        steps: chainLength,
        status: RunStatus[chain.run.status],
        totalMs: Math.round(chainMs),
        perHopMs: Number(perHop.toFixed(2)),
        bareProcessMs: Number(perProcess.toFixed(2)),
        overheadPerHopMs: Number((perHop - perProcess).toFixed(2)),
      },
      fanout: {
        tasks: fanout,
        concurrency: 8,
        status: RunStatus[fan.run.status],
        totalMs: Math.round(fanMs),
        floorMs: Math.round(fanFloor.elapsedMs),
        ratio: Number((fanMs / fanFloor.elapsedMs).toFixed(2)),
        floorCpuUsPerTask: perTask(c0, c1, fanout),
        runCpuUsPerTask: perTask(c1, c2, fanout),
      },
      peakRssMb: Math.round(process.resourceUsage().maxRSS / 1024),
    }),
  );
} finally {
  await k.stop();
}
