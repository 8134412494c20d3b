// Benchmark (d): in-job Report calls per second into one core. A command step waits while a
// separate load-generator process (so the client does not share core's CPU time) sends
// Report batches of one output each with the step's token, 64 in flight.
// Run: npx tsx bench/engine-report.ts [calls]
import { spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { JobServiceDefinition, StepStatus } from "@kaon/proto";
import { createChannel, createClient, Metadata } from "nice-grpc";
import { startEngineKaon } from "../test/engine/support/harness.js";

const calls = Number(process.argv[2] ?? 20_000);

if (process.argv[3] === "--client") {
  // Load generator: argv[4] = address, argv[5] = token.
  const md = Metadata();
  md.set("authorization", `Bearer ${process.argv[5]}`);
  const job = createClient(JobServiceDefinition, createChannel(process.argv[4] as string), {
    "*": { metadata: md },
  });
  let next = 1;
  const t0 = performance.now();
  const worker = async () => {
    while (next <= calls) {
      const seq = next++;
      await job.report({
        sequence: seq,
        items: [{ kind: { $case: "output", value: { name: "n", value: seq } } }],
      });
    }
  };
  await Promise.all(Array.from({ length: 64 }, worker));
  process.stdout.write(`${JSON.stringify({ ms: performance.now() - t0 })}\n`);
  process.exit(0);
}

const k = await startEngineKaon();
try {
  await k.deploy({
    id: "reporter",
    steps: [
      {
        id: "job",
        type: "command",
        config: { shell: 'echo "$KAON_TOKEN" > token; while [ ! -f go ]; do sleep 0.05; done' },
      },
    ],
  });
  const { run } = await k.runs.startRun({ workflowId: "reporter" });
  const runId = run?.id as string;
  for await (const msg of k.runs.watchRun({ runId, afterSeq: 0 })) {
    if (
      msg.events.some(
        (e) =>
          e.path === "job" &&
          e.kind?.$case === "stepStatus" &&
          e.kind.value === StepStatus.STEP_STATUS_RUNNING,
      )
    )
      break;
  }
  const dir = join(k.dataDir, "runs", runId, "job", "1");
  let token = "";
  while (!token) {
    try {
      token = readFileSync(join(dir, "token"), "utf8").trim();
    } catch {
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  const self = new URL(import.meta.url).pathname;
  const tsx = new URL("../node_modules/.bin/tsx", import.meta.url).pathname;
  const child = spawn(tsx, [self, String(calls), "--client", k.server.grpcAddress, token], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  let out = "";
  child.stdout.on("data", (d) => {
    out += d;
  });
  await new Promise((r) => child.once("exit", r));
  const { ms } = JSON.parse(out) as { ms: number };
  writeFileSync(join(dir, "go"), "");
  await k.watch(runId);
  const step = (await k.runs.getStep({ runId, path: "job" })).step;
  console.log(
    JSON.stringify({
      bench: "engine-report",
      calls,
      seconds: Number((ms / 1000).toFixed(2)),
      reportsPerSecond: Math.round(calls / (ms / 1000)),
      lastOutput: step?.outputs?.n,
    }),
  );
} finally {
  await k.stop();
}
