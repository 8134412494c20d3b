// Benchmark (c): a foreach of N noop steps (default 100,000) through the whole engine on
// SQLite — group-committed journal, event log, foreach materialisation — reporting step
// completions per second and the process's peak RSS. Run: npx tsx bench/engine-noop.ts [N]
import { RunStatus } from "@kaon/proto";
import { RUN_ENDED } from "../core/src/engine/notifier.js";
import { startEngineKaon } from "../test/engine/support/harness.js";

const n = Number(process.argv[2] ?? 100_000);
const dbUrl = process.env.KAON_BENCH_DB;
const k = await startEngineKaon(dbUrl ? { dbUrl } : {});
await k.deploy({
  id: "noops",
  steps: [
    {
      id: "fe",
      type: "foreach",
      foreach: {
        axes: [{ name: "i", values: Array.from({ length: n }, (_, i) => i) }],
        body: [{ id: "n", type: "noop" }],
      },
    },
  ],
});
const flushesBefore = k.engine.journalFlushes;
const t0 = performance.now();
let runId = "";
const ended = new Promise<void>((resolve) => {
  const off = k.engine.notifier.subscribe(RUN_ENDED, () => {
    if (runId && !k.engine.isLive(runId)) {
      off();
      resolve();
    }
  });
});
({ runId } = await k.engine.startRun({ workflowId: "noops", version: 0, params: {} }));
if (k.engine.isLive(runId)) await ended;
const seconds = (performance.now() - t0) / 1000;
const run = (await k.runs.getRun({ runId })).run;
const peakRssMb = process.resourceUsage().maxRSS / 1024;
const result = {
  bench: "engine-noop",
  steps: n,
  status: RunStatus[run?.status ?? 0],
  seconds: Number(seconds.toFixed(2)),
  completionsPerSecond: Math.round(n / seconds),
  peakRssMb: Math.round(peakRssMb),
  commits: k.engine.journalFlushes - flushesBefore,
  db: dbUrl ? "postgres" : "sqlite",
};
console.log(JSON.stringify(result));
await k.stop();
