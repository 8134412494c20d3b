// Benchmark (d): in-job Report calls per second into one core. A command step waits while a
// separate load-generator process (so the client is not in core's process; on a 2-core machine
// it still shares the CPUs) sends Report calls with the step's token, 64 in flight. Each call
// carries `items` items (default 1: one output; more: one output plus counter increments, as
// the SDKs batch them). Prints calls/s, items/s and the CPU time core and the load generator
// spent per call, which tells whether core or the client is the limit.
// Run: npx tsx bench/engine-report.ts [calls] [itemsPerCall]
import { spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { JobServiceDefinition, type ReportItem, StepStatus } from "@kaon/proto";
import { createChannel, createClient, Metadata } from "nice-grpc";
import { startEngineKaon } from "../test/engine/support/harness.js";

if (process.argv[2] === "--client") {
  // Load generator: --client calls items address token
  const [, , , callsArg, itemsArg, address, token] = process.argv;
  const calls = Number(callsArg);
  const items = Number(itemsArg);
  const md = Metadata();
  md.set("authorization", `Bearer ${token}`);
  const job = createClient(JobServiceDefinition, createChannel(address as string), {
    "*": { metadata: md },
  });
  const batch = (seq: number): ReportItem[] => {
    const out: ReportItem[] = [{ kind: { $case: "output", value: { name: "n", value: seq } } }];
    for (let i = 1; i < items; i++)
      out.push({ kind: { $case: "counter", value: { name: "c", delta: 1 } } });
    return out;
  };
  let next = 1;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const worker = async () => {
    while (next <= calls) {
      const seq = next++;
      await job.report({ sequence: seq, items: batch(seq) });
    }
  };
  await Promise.all(Array.from({ length: 64 }, worker));
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  process.stdout.write(`${JSON.stringify({ ms, cpuMs: (cpu.user + cpu.system) / 1000 })}\n`);
  process.exit(0);
}

const calls = Number(process.argv[2] ?? 20_000);
const items = Math.max(1, Number(process.argv[3] ?? 1));
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
  // KAON_BENCH_CLIENT=python: the load generator is bench/report-client.py (grpcio's C core
  // spends less CPU per call than grpc-js, leaving more of the 2 cores to core).
  const python = process.env.KAON_BENCH_CLIENT === "python";
  const venvPython = new URL("../.venv/bin/python", import.meta.url).pathname;
  const pyClient = new URL("./report-client.py", import.meta.url).pathname;
  const args = [String(calls), String(items), k.server.grpcAddress, token];
  const child = spawn(
    python ? venvPython : tsx,
    python ? [pyClient, ...args] : [self, "--client", ...args],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  let out = "";
  child.stdout.on("data", (d) => {
    out += d;
  });
  const cpu0 = process.cpuUsage();
  await new Promise((r) => child.once("exit", r));
  const cpu = process.cpuUsage(cpu0);
  const { ms, cpuMs } = JSON.parse(out) as { ms: number; cpuMs: number };
  writeFileSync(join(dir, "go"), "");
  await k.watch(runId);
  const step = (await k.runs.getStep({ runId, path: "job" })).step;
  console.log(
    JSON.stringify({
      bench: "engine-report",
      client: python ? "python grpcio" : "node nice-grpc",
      calls,
      itemsPerCall: items,
      seconds: Number((ms / 1000).toFixed(2)),
      reportsPerSecond: Math.round(calls / (ms / 1000)),
      itemsPerSecond: Math.round((calls * items) / (ms / 1000)),
      // CPU per call: core (the whole server process, including the client's start-up
      // window) and the load generator; their sum against 2 cores bounds the rate.
      coreCpuUsPerCall: Math.round(((cpu.user + cpu.system) / calls) * 1),
      clientCpuUsPerCall: Math.round((cpuMs * 1000) / calls),
      lastOutput: step?.outputs?.n,
    }),
  );
} finally {
  await k.stop();
}
