// Benchmark (d): in-job Report calls per second into one core. `jobs` command steps (a foreach)
// run at once, each with its own step token; a separate load-generator process (so the client
// is not in core's process; on a 2-core machine it still shares the CPUs) then calls Report the
// way the in-job SDKs do (sdk-python/src/kaon/_reporter.py, sdk-ts/src/job/reporter.ts): one
// reporter per job with its own connection, ONE call in flight per job (the next batch goes out
// when the previous one is answered), sequence 1, 2, 3, … per attempt, the bearer token in
// the metadata and a 10 s deadline. Every call is therefore applied (none is an ignored
// duplicate). Each call carries `items` items (default 1: one output, i.e. the SDK sending
// every item on its own; more: one output plus counter increments, as the SDKs batch them).
// Prints calls/s, items/s and the CPU time core and the load generator spent per call, which
// tells whether core or the client is the limit, and checks that every job's last output
// arrived.
// Run: npx tsx bench/engine-report.ts [calls] [itemsPerCall] [jobs]
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { JobServiceDefinition, type ReportItem, StepStatus } from "@kaon/proto";
import { createChannel, createClient, Metadata } from "nice-grpc";
import { startEngineKaon } from "../test/engine/support/harness.js";

/** The SDKs' deadline for a Report call (python: timeout=10; TypeScript: deadlineMs 10_000). */
const CALL_DEADLINE_MS = 10_000;

if (process.argv[2] === "--client") {
  // Load generator: --client calls items address tokensFile
  const [, , , callsArg, itemsArg, address, tokensFile] = process.argv;
  const calls = Number(callsArg);
  const items = Number(itemsArg);
  const tokens = readFileSync(tokensFile as string, "utf8")
    .trim()
    .split("\n");
  const batch = (seq: number): ReportItem[] => {
    const out: ReportItem[] = [{ kind: { $case: "output", value: { name: "n", value: seq } } }];
    for (let i = 1; i < items; i++)
      out.push({ kind: { $case: "counter", value: { name: "c", delta: 1 } } });
    return out;
  };
  const perJob = Math.floor(calls / tokens.length);
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const reporter = async (token: string) => {
    const md = Metadata();
    md.set("authorization", `Bearer ${token}`);
    // One channel (connection) per job, as each job process has its own.
    const job = createClient(JobServiceDefinition, createChannel(address as string), {
      "*": { metadata: md },
    });
    for (let seq = 1; seq <= perJob; seq++) {
      await job.report(
        { sequence: seq, items: batch(seq) },
        // The TypeScript SDK's deadline is an AbortSignal timer on the client (raw.ts).
        { signal: AbortSignal.timeout(CALL_DEADLINE_MS) },
      );
    }
  };
  await Promise.all(tokens.map(reporter));
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  process.stdout.write(
    `${JSON.stringify({ ms, calls: perJob * tokens.length, cpuMs: (cpu.user + cpu.system) / 1000 })}\n`,
  );
  process.exit(0);
}

const requested = Number(process.argv[2] ?? 20_000);
const items = Math.max(1, Number(process.argv[3] ?? 1));
const jobs = Math.max(1, Number(process.argv[4] ?? 64));
const k = await startEngineKaon();
try {
  const dir = mkdtempSync(join(tmpdir(), "kaon-bench-report-"));
  const tokensFile = join(dir, "tokens");
  await k.deploy({
    id: "reporter",
    steps: [
      {
        id: "jobs",
        type: "foreach",
        foreach: {
          axes: [{ name: "i", values: Array.from({ length: jobs }, (_, i) => i) }],
          concurrency: jobs,
          body: [
            {
              id: "job",
              type: "command",
              // Lines shorter than PIPE_BUF appended with O_APPEND do not interleave. The job
              // then waits without using CPU until the run is stopped.
              config: { shell: `echo "$KAON_TOKEN" >> ${tokensFile}; exec sleep 3600` },
              resources: { cpus: 0.01, memMb: 1 },
            },
          ],
        },
      },
    ],
  });
  const { run } = await k.runs.startRun({ workflowId: "reporter" });
  const runId = run?.id as string;
  let running = 0;
  for await (const msg of k.runs.watchRun({ runId, afterSeq: 0 })) {
    for (const e of msg.events) {
      if (e.kind?.$case === "stepStatus" && e.kind.value === StepStatus.STEP_STATUS_RUNNING)
        running += e.path.endsWith("/job") ? 1 : 0;
    }
    if (running >= jobs) break;
  }
  const countTokens = () => {
    try {
      return readFileSync(tokensFile, "utf8").trim().split("\n").filter(Boolean).length;
    } catch {
      return 0;
    }
  };
  while (countTokens() < jobs) await new Promise((r) => setTimeout(r, 20));

  const self = new URL(import.meta.url).pathname;
  const tsx = new URL("../node_modules/.bin/tsx", import.meta.url).pathname;
  // KAON_BENCH_CLIENT=python: the load generator is bench/report-client.py (grpcio, the Python
  // SDK's stack; its C core spends less CPU per call than grpc-js, leaving more of the 2 cores
  // to core).
  const python = process.env.KAON_BENCH_CLIENT === "python";
  const venvPython = new URL("../.venv/bin/python", import.meta.url).pathname;
  const pyClient = new URL("./report-client.py", import.meta.url).pathname;
  const args = [String(requested), String(items), k.server.grpcAddress, tokensFile];
  const cpu0 = process.cpuUsage();
  const commits0 = k.engine.journalFlushes;
  const child = spawn(
    python ? venvPython : tsx,
    python ? [pyClient, ...args] : [self, "--client", ...args],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  let out = "";
  child.stdout.on("data", (d) => {
    out += d;
  });
  await new Promise((r) => child.once("exit", r));
  const cpu = process.cpuUsage(cpu0);
  const commits = k.engine.journalFlushes - commits0;
  const { ms, calls, cpuMs } = JSON.parse(out) as { ms: number; calls: number; cpuMs: number };
  await k.runs.stopRun({ runId, reason: "benchmark done" });
  await k.watch(runId, 60_000);
  // Every job's last call must have been applied: its output is its own last sequence.
  const { steps } = await k.runs.listSteps({
    runId,
    statuses: [],
    pathPrefix: "jobs[",
    pageSize: 1000,
    pageToken: "",
  });
  const perJob = calls / jobs;
  const complete = steps.filter((s) => s.path.endsWith("/job") && s.outputs?.n === perJob).length;
  console.log(
    JSON.stringify({
      bench: "engine-report",
      client: python ? "python grpcio" : "node nice-grpc",
      calls,
      itemsPerCall: items,
      jobs,
      seconds: Number((ms / 1000).toFixed(2)),
      reportsPerSecond: Math.round(calls / (ms / 1000)),
      itemsPerSecond: Math.round((calls * items) / (ms / 1000)),
      // CPU per call: core (the whole server process while the load generator ran, including
      // its start-up) and the load generator (its calls only); their sum against 2 cores
      // bounds the rate.
      coreCpuUsPerCall: Math.round((cpu.user + cpu.system) / calls),
      clientCpuUsPerCall: Math.round((cpuMs * 1000) / calls),
      // Group commits while the load generator ran (each answers the calls it made durable).
      commits,
      jobsWithAllReports: `${complete}/${jobs}`,
    }),
  );
} finally {
  await k.stop();
}
