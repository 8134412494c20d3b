// Dev-only diagnosis of (b): where a slot of the fan-out waits between a job's exit and the
// next launch in it. Runs a foreach of N `true` at concurrency 8 (like engine-commands.ts)
// and timestamps, in core, every launch request queued to the agent and every `started` /
// `exited` event dispatched from it (wrapping AgentConnection's methods in this process
// only; product code records nothing). With the agent's own `ts` (ms, wall clock) it splits
// a slot's cycle into:
//   launch→started  core queued the launch .. the agent forked it (agent read, mkdir, fork)
//   started→exit    the agent's started ts .. its exit ts (the job itself, plus reaping)
//   exit→recv       the agent's exit ts .. core dispatched the event (journal, socket)
//   recv→launch     core got exit k .. queued launch k+8, the one that refills the slot
//                   (status handling, group commit, afterCommit launch)
// The agent's ts are whole milliseconds (truncated), so its two hops carry ±0.5 ms of
// quantisation each; their means are corrected by 0.5 ms.
// Run: TMPDIR=/dev/shm npx tsx bench/engine-slots.ts [fanout]
import { readFileSync } from "node:fs";
import { AgentConnection } from "../core/src/backends/local/agent-client.js";
import { RUN_ENDED } from "../core/src/engine/notifier.js";
import { startEngineKaon } from "../test/engine/support/harness.js";

const fanout = Number(process.argv[2] ?? 10_000);
const CONC = 8;
const nowMs = () => performance.timeOrigin + performance.now();

const launchAt: number[] = [];
const launchId: string[] = [];
const exitRecv: number[] = [];
const exitTs: number[] = [];
const exitId: string[] = [];
const startedTs = new Map<string, number>();
let dispatchCalls = 0;
let exitsPerBurst: number[] = [];
let burstExits = 0;
let sendBursts = 0;
let corkedNow = false;

type Proto = {
  dispatch(line: string): void;
  receive(chunk: string): void;
  launch(req: { taskId: string }): void;
};
const proto = AgentConnection.prototype as unknown as Proto;
const origDispatch = proto.dispatch;
proto.dispatch = function (this: unknown, line: string) {
  dispatchCalls++;
  if (line.includes('"exited"')) {
    const m = JSON.parse(line) as { taskId: string; ts: number };
    exitRecv.push(nowMs());
    exitTs.push(m.ts);
    exitId.push(m.taskId);
    burstExits++;
  } else if (line.includes('"started"')) {
    const m = JSON.parse(line) as { taskId: string; ts: number };
    startedTs.set(m.taskId, m.ts);
  }
  origDispatch.call(this, line);
};
const origReceive = proto.receive;
proto.receive = function (this: unknown, chunk: string) {
  burstExits = 0;
  origReceive.call(this, chunk);
  if (burstExits > 0) exitsPerBurst.push(burstExits);
};
const origLaunch = proto.launch;
proto.launch = function (this: unknown, req: { taskId: string }) {
  if (!corkedNow) {
    corkedNow = true;
    sendBursts++;
    process.nextTick(() => {
      corkedNow = false;
    });
  }
  launchAt.push(nowMs());
  launchId.push(req.taskId);
  origLaunch.call(this, req);
};

/** Idle and total jiffies of the whole machine (other processes included), from /proc/stat. */
function machineTicks(): { idle: number; total: number } {
  const f =
    readFileSync("/proc/stat", "utf8").split("\n")[0]?.trim().split(/\s+/).slice(1).map(Number) ??
    [];
  const total = f.reduce((a, b) => a + b, 0);
  return { idle: (f[3] ?? 0) + (f[4] ?? 0), total };
}

const k = await startEngineKaon({ resources: { cpus: 2 } });
const tiny = { cpus: 0.1, memMb: 16 };
try {
  await k.deploy({
    id: "fanout",
    steps: [
      {
        id: "fe",
        type: "foreach",
        foreach: {
          axes: [{ values: Array.from({ length: fanout }, (_, i) => i) }],
          concurrency: CONC,
          body: [{ id: "t", type: "command", config: { argv: ["true"] }, resources: tiny }],
        },
      },
    ],
  });
  launchAt.length = 0;
  launchId.length = 0;
  exitRecv.length = 0;
  exitTs.length = 0;
  exitId.length = 0;
  exitsPerBurst = [];
  sendBursts = 0;
  let runId = "";
  const ended = new Promise<void>((resolve) => {
    const off = k.engine.notifier.subscribe(RUN_ENDED, () => {
      if (runId && !k.engine.isLive(runId)) {
        off();
        resolve();
      }
    });
  });
  const m0 = machineTicks();
  const t0 = performance.now();
  ({ runId } = await k.engine.startRun({ workflowId: "fanout", version: 0, params: {} }));
  if (k.engine.isLive(runId)) await ended;
  const wallMs = performance.now() - t0;
  const m1 = machineTicks();

  const stats = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    const q = (p: number) => s[Math.min(s.length - 1, Math.floor(p * s.length))] ?? Number.NaN;
    const mean = s.reduce((a, b) => a + b, 0) / Math.max(1, s.length);
    const r = (x: number) => Number(x.toFixed(3));
    return { n: s.length, mean: r(mean), p50: r(q(0.5)), p90: r(q(0.9)), p99: r(q(0.99)) };
  };
  const launchById = new Map(launchId.map((id, i) => [id, launchAt[i] as number]));
  const recvToLaunch: number[] = [];
  for (let i = 0; i + CONC < launchAt.length && i < exitRecv.length; i++) {
    recvToLaunch.push((launchAt[i + CONC] as number) - (exitRecv[i] as number));
  }
  const launchToStarted: number[] = [];
  const startedToExit: number[] = [];
  const exitToRecv: number[] = [];
  exitId.forEach((id, i) => {
    const st = startedTs.get(id);
    const la = launchById.get(id);
    if (st !== undefined && la !== undefined) launchToStarted.push(st + 0.5 - la);
    if (st !== undefined) startedToExit.push((exitTs[i] as number) - st);
    exitToRecv.push((exitRecv[i] as number) - ((exitTs[i] as number) + 0.5));
  });
  const cycle = stats(launchToStarted).mean + stats(startedToExit).mean + stats(exitToRecv).mean;
  console.log(
    JSON.stringify({
      bench: "engine-slots",
      tasks: fanout,
      wallMs: Math.round(wallMs),
      machineIdle: Number(((m1.idle - m0.idle) / Math.max(1, m1.total - m0.total)).toFixed(3)),
      slotCycleMs: Number(((wallMs * CONC) / fanout).toFixed(3)),
      launchToStartedMs: stats(launchToStarted),
      startedToExitMs: stats(startedToExit),
      exitToRecvMs: stats(exitToRecv),
      recvToLaunchMs: stats(recvToLaunch),
      sumOfMeansMs: Number((cycle + stats(recvToLaunch).mean).toFixed(3)),
      exitsPerRead: stats(exitsPerBurst),
      launchesPerWrite: Number((launchAt.length / Math.max(1, sendBursts)).toFixed(2)),
      dispatchCalls,
    }),
  );
} finally {
  await k.stop();
}
