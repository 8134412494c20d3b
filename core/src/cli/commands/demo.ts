// `kaon demo`: the recommendations example end to end, with one command. It generates the
// example's data when missing, uses the kaon server already running for the data directory or
// starts one in this process (SQLite + the local backend) configured with the example's SQL
// connection and Python, deploys examples/recommendations/pipeline.py (compiled by the Python
// DSL, with the checkout's SCM metadata), starts a run, shows the live progress view, and ends
// with a summary: the chosen models, the artifacts announced, the time taken and where the
// logs and data are. Exit code 0 only when the run SUCCEEDED.
import { execFile } from "node:child_process";
import { createWriteStream, existsSync, mkdirSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import {
  type Artifact,
  ArtifactServiceDefinition,
  messageFromJson,
  type Run,
  RunServiceDefinition,
  RunStatus,
  WorkflowDefinition,
  WorkflowServiceDefinition,
} from "@kaon/proto";
import type { Command } from "commander";
import {
  type Channel,
  ChannelCredentials,
  type Client,
  createChannel,
  createClientFactory,
  Metadata,
} from "nice-grpc";
import { readServerInfo, resolveDataDir, resolveServerConfig } from "../../config.js";
import { createLogger } from "../../log.js";
import { createKaon, type Kaon } from "../../server-main.js";
import { findRuntime } from "../../steps/types/container.js";
import { type CliContext, CliError, EXIT, resolveToken } from "../client.js";
import { formatDuration } from "../progress/render.js";
import { runStatusName } from "../progress/state.js";
import { watchRun } from "../progress/watch.js";
import { clientInfo, isInteractive, parseParams } from "./runs.js";
import { gitInfo } from "./workflows.js";

const exec = promisify(execFile);

/** The repository this CLI runs from (core/{src,dist}/cli/commands -> four levels up). */
export const REPO_ROOT = resolve(fileURLToPath(new URL("../../../../", import.meta.url)));
export const EXAMPLE_DIR = join(REPO_ROOT, "examples", "recommendations");
/** The SQL connection name pipeline.py uses. */
export const DEMO_SQL_CONNECTION = "recommendations";
export const DEMO_WORKFLOW = "recommendations";
/** Artifacts the example's jobs announce. */
export const DEMO_ARTIFACTS = ["recommendations.model.regional", "recommendations.model.published"];
/** The data spans the 60 days before generation and a run looks 30 days back: refresh often. */
const DATA_MAX_AGE_MS = 14 * 86_400_000;

/** Where the demo keeps its things inside a data directory. */
export function demoPaths(dataDir: string) {
  const home = join(dataDir, "examples", "recommendations");
  return {
    home,
    db: join(home, "viewing.db"),
    workspaces: join(home, "runs"),
    serverLog: join(home, "server.log"),
    attemptLogs: join(dataDir, "runs"),
  };
}

/** The Python the example's jobs need: the repo venv, else KAON_PYTHON, else python3. */
export function demoPython(env: Record<string, string | undefined> = process.env): string {
  const venv = join(REPO_ROOT, ".venv", "bin", "python");
  if (existsSync(venv)) return venv;
  return env.KAON_PYTHON || "python3";
}

interface DemoOptions {
  param?: string[];
  regenerate?: boolean;
  keepServer?: boolean;
}

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

export function register(program: Command, ctx: CliContext): void {
  program
    .command("demo")
    .description(
      "run the recommendations example end to end: data, server, deploy, run with live progress, summary (exit 0 only if the run succeeds)",
    )
    .option(
      "-p, --param <name=value>",
      "override a pipeline param, e.g. -p target_rmse=0.95 (repeatable)",
      collect,
    )
    .option("--regenerate", "generate the example's data again")
    .option("--keep-server", "keep the embedded server running after the run (Ctrl-C stops it)")
    .action(async (options: DemoOptions) => {
      await runDemo(ctx, options);
    });
}

type Say = (text: string) => void;

async function runDemo(ctx: CliContext, options: DemoOptions): Promise<void> {
  const started = Date.now();
  const globals = ctx.globals();
  const dataDir = resolveDataDir(globals.dataDir);
  const paths = demoPaths(dataDir);
  const python = demoPython();
  const quiet = ctx.json;
  const say: Say = (text) => {
    if (!quiet) ctx.out(`${text}\n`);
  };
  const overrides = parseParams(options.param);

  say(`kaon demo: the recommendations pipeline (data directory ${dataDir})`);
  await checkPython(python);
  await ensureData(python, paths.db, options.regenerate === true, say);

  const server = await connectOrStart(ctx, dataDir, paths, python, say);
  try {
    const image = await publishImage(python, say);
    const definition = await compilePipeline(python, { KAON_RECOMMENDATIONS_IMAGE: image });
    const workflows = server.client(WorkflowServiceDefinition);
    const deployed = await workflows.deploy({
      definition,
      scm: await gitInfo(join(EXAMPLE_DIR, "pipeline.py")),
      client: clientInfo(),
    });
    const version = deployed.version?.version ?? 0;
    say(
      `deployed ${DEMO_WORKFLOW} v${version}${deployed.created ? " (new version)" : " (unchanged)"}`,
    );

    mkdirSync(paths.workspaces, { recursive: true });
    const runs = server.client(RunServiceDefinition);
    const startedRun = await runs.startRun({
      workflowId: DEMO_WORKFLOW,
      version: { selector: { $case: "number", value: version } },
      params: { root: paths.workspaces, python, ...overrides },
      tags: { demo: "true" },
      client: clientInfo(),
    });
    const runId = (startedRun.run as Run).id;
    say(`started run ${runId}${server.embedded ? "" : ` on ${server.address}`}\n`);

    const controller = new AbortController();
    const onInterrupt = () => controller.abort();
    process.once("SIGINT", onInterrupt);
    let result: Awaited<ReturnType<typeof watchRun>>;
    try {
      result = await watchRun({
        client: runs,
        runId,
        write: quiet ? () => {} : ctx.out,
        tty: !quiet && isInteractive(),
        color: process.env.NO_COLOR === undefined,
        columns: () => process.stdout.columns ?? 0,
        signal: controller.signal,
      });
    } finally {
      process.removeListener("SIGINT", onInterrupt);
    }
    if (result.detached) {
      if (server.embedded) {
        say(
          "stopping the embedded server; the run resumes when a server starts on this data directory",
        );
      }
      throw new CliError(`interrupted; run ${runId} did not finish`, EXIT.failure);
    }
    const summary = await summarize(server, runId, dataDir, paths, Date.now() - started);
    if (ctx.json) ctx.out(`${JSON.stringify(summary.json, null, 2)}\n`);
    else ctx.out(`\n${summary.text}\n`);

    if (options.keepServer && server.embedded) {
      say(`\nthe server keeps running at ${server.address} (Ctrl-C stops it)`);
      await new Promise<void>((done) => process.once("SIGINT", () => done()));
    }
    if (summary.run.status !== RunStatus.RUN_STATUS_SUCCEEDED) {
      throw new CliError(
        `run ${runId} ended ${runStatusName(summary.run.status)}; see kaon status ${runId} and kaon logs ${runId} PATH --stderr`,
        EXIT.failure,
      );
    }
  } finally {
    await server.close();
  }
}

// ---------------------------------------------------------------------------------------
// Python and data

async function checkPython(python: string): Promise<void> {
  const modules = ["kaon", "numpy", "matplotlib", "pyspark"];
  try {
    await exec(python, ["-c", `import ${modules.join(", ")}`], { timeout: 60_000 });
  } catch (err) {
    const detail = ((err as { stderr?: string }).stderr ?? String(err)).trim().split("\n").pop();
    throw new CliError(
      `the example needs Python with ${modules.join(", ")} (using ${python}): ${detail}\n` +
        `set it up with: bash scripts/setup.sh (or ${python} -m pip install -e sdk-python -r examples/recommendations/requirements.txt)`,
    );
  }
}

async function ensureData(python: string, db: string, regenerate: boolean, say: Say) {
  const fresh = existsSync(db) && Date.now() - statSync(db).mtimeMs < DATA_MAX_AGE_MS;
  if (fresh && !regenerate) {
    say(`data: ${db}`);
    return;
  }
  say(`generating the example's viewing data into ${db} …`);
  try {
    await exec(python, [join(EXAMPLE_DIR, "jobs", "generate_data.py"), "--db", db], {
      timeout: 300_000,
    });
  } catch (err) {
    const stderr = ((err as { stderr?: string }).stderr ?? String(err)).trim();
    throw new CliError(`generating the example's data failed:\n${stderr}`);
  }
}

/** Canonical JSON of pipeline.py (the Python DSL), decoded into the definition message. */
/**
 * The image for the publish step: KAON_RECOMMENDATIONS_IMAGE when set (empty: no container);
 * otherwise, with podman on PATH, the image build-image.sh assembles offline from this host's
 * Python (seconds the first time, then reused by its content-hash tag). Without podman, or
 * when that build fails (said, not fatal), publish runs as a command step: "" here.
 */
async function publishImage(python: string, say: Say): Promise<string> {
  const given = process.env.KAON_RECOMMENDATIONS_IMAGE;
  if (given !== undefined) return given;
  if (!findRuntime(["podman"], process.env.PATH)) return "";
  try {
    const { stdout } = await exec(join(EXAMPLE_DIR, "build-image.sh"), [python], {
      timeout: 120_000,
    });
    const image = stdout.trim().split("\n").pop() ?? "";
    if (image !== "") say(`publish runs in podman (image ${image})`);
    return image;
  } catch (err) {
    const stderr = ((err as { stderr?: string }).stderr ?? String(err)).trim();
    say(`publish runs as a command: examples/recommendations/build-image.sh failed: ${stderr}`);
    return "";
  }
}

export async function compilePipeline(
  python: string,
  env: Record<string, string> = {},
): Promise<WorkflowDefinition> {
  let stdout: string;
  try {
    ({ stdout } = await exec(python, [join(EXAMPLE_DIR, "pipeline.py")], {
      timeout: 120_000,
      maxBuffer: 16 * 1024 * 1024,
      env: { ...process.env, ...env },
    }));
  } catch (err) {
    const stderr = ((err as { stderr?: string }).stderr ?? String(err)).trim();
    throw new CliError(`compiling examples/recommendations/pipeline.py failed:\n${stderr}`);
  }
  return messageFromJson(WorkflowDefinition, "kaon.v1.WorkflowDefinition", JSON.parse(stdout));
}

// ---------------------------------------------------------------------------------------
// The server: the one running for the data directory, or one embedded in this process

interface DemoServer {
  address: string;
  embedded: boolean;
  client<D extends Parameters<ReturnType<typeof createClientFactory>["create"]>[0]>(
    definition: D,
  ): Client<D>;
  close(): Promise<void>;
}

function clientsFor(token: string | undefined, channel: Channel) {
  const metadata = Metadata();
  if (token) metadata.set("authorization", `Bearer ${token}`);
  const factory = createClientFactory();
  return <D extends Parameters<typeof factory.create>[0]>(definition: D): Client<D> =>
    factory.create(definition, channel, { "*": { metadata } }) as Client<D>;
}

async function reachable(address: string, token: string | undefined): Promise<boolean> {
  const channel = createChannel(address, ChannelCredentials.createInsecure());
  try {
    const client = clientsFor(token, channel)(RunServiceDefinition);
    await client.listRuns({ pageSize: 1 }, { signal: AbortSignal.timeout(3000) });
    return true;
  } catch {
    return false;
  } finally {
    channel.close();
  }
}

async function connectOrStart(
  ctx: CliContext,
  dataDir: string,
  paths: ReturnType<typeof demoPaths>,
  python: string,
  say: Say,
): Promise<DemoServer> {
  const globals = ctx.globals();
  const explicit = globals.address ?? process.env.KAON_ADDRESS;
  const info = readServerInfo(dataDir);
  const existing = explicit ?? info?.grpc;
  const token = resolveToken(globals, process.env, existing ?? undefined)?.token;
  if (existing && !info?.tls && (await reachable(existing, token))) {
    say(
      `using the kaon server at ${existing}; it must have the sql connection '${DEMO_SQL_CONNECTION}' -> ${paths.db} and a Python with the kaon SDK`,
    );
    const channel = createChannel(existing, ChannelCredentials.createInsecure());
    return {
      address: existing,
      embedded: false,
      client: clientsFor(token, channel),
      async close() {
        channel.close();
      },
    };
  }
  if (explicit) {
    throw new CliError(
      `no kaon server answers at ${explicit}; drop --address/KAON_ADDRESS to let the demo start one`,
      EXIT.unreachable,
    );
  }

  mkdirSync(paths.home, { recursive: true });
  const logFile = createWriteStream(paths.serverLog, { flags: "a" });
  const config = {
    ...resolveServerConfig({ dataDir, grpcListen: "127.0.0.1:0", httpListen: "127.0.0.1:0" }),
    stepTypeSettings: {
      sqlConnections: { [DEMO_SQL_CONNECTION]: paths.db },
      pythonInterpreter: python,
    },
  };
  let kaon: Kaon;
  try {
    kaon = await createKaon({
      config,
      log: createLogger({ write: (line) => logFile.write(line), pretty: false }),
    });
  } catch (err) {
    logFile.end();
    throw new CliError(`starting the embedded kaon server failed: ${(err as Error).message}`);
  }
  say(`started an embedded kaon server at ${kaon.grpcAddress} (log: ${paths.serverLog})`);
  const channel = createChannel(kaon.grpcAddress, ChannelCredentials.createInsecure());
  return {
    address: kaon.grpcAddress,
    embedded: true,
    client: clientsFor(kaon.authFiles.adminToken, channel),
    async close() {
      channel.close();
      await kaon.shutdown("demo finished");
      await new Promise<void>((done) => logFile.end(() => done()));
    },
  };
}

// ---------------------------------------------------------------------------------------
// Summary

interface Summary {
  run: Run;
  text: string;
  json: Record<string, unknown>;
}

function mapOf(value: unknown): Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : {};
}

function partitionText(a: Artifact): string {
  return Object.entries(a.partitions)
    .sort(([x], [y]) => x.localeCompare(y))
    .map(([k, v]) => `${k}=${v}`)
    .join(",");
}

async function summarize(
  server: DemoServer,
  runId: string,
  dataDir: string,
  paths: ReturnType<typeof demoPaths>,
  tookMs: number,
): Promise<Summary> {
  const runs = server.client(RunServiceDefinition);
  const run = (await runs.getRun({ runId })).run as Run;
  const loop = await runs
    .getStep({ runId, path: "train_loop" })
    .then((r) => r.step)
    .catch(() => undefined);
  const outputs = mapOf(loop?.outputs);
  const choice = mapOf(outputs.choice);
  const chosenRmse = mapOf(outputs.chosen_rmse);
  const artifactsClient = server.client(ArtifactServiceDefinition);
  const artifacts: Artifact[] = [];
  for (const name of DEMO_ARTIFACTS) {
    const res = await artifactsClient
      .listArtifacts({ name, pageSize: 1000 })
      .catch(() => undefined);
    for (const a of res?.artifacts ?? []) if (a.producerRunId === runId) artifacts.push(a);
  }
  const workspace = String(run.params.workspace ?? join(paths.workspaces, runId));
  const runTook = formatDuration(
    (run.endedAt?.getTime() ?? Date.now()) -
      (run.startedAt ?? run.createdAt ?? new Date()).getTime(),
  );

  const lines: string[] = [];
  const row = (label: string, text: string) => lines.push(`${label.padEnd(11)}${text}`);
  row(
    "run",
    `${runId} ${runStatusName(run.status)} in ${runTook} (demo total ${formatDuration(tookMs)})`,
  );
  if (outputs.iterations !== undefined) {
    row(
      "loop",
      `${String(outputs.iterations)} iteration(s); stable: ${String(outputs.stable ?? "?")} (target RMSE ${String(run.params.target_rmse ?? "?")})`,
    );
  }
  if (Object.keys(choice).length > 0) {
    row(
      "choice",
      Object.entries(choice)
        .sort(([a], [b]) => a.localeCompare(b))
        .map(
          ([region, model]) => `${region} ${String(model)} (${String(chosenRmse[region] ?? "?")})`,
        )
        .join(" · "),
    );
  }
  if (outputs.mean_rmse !== undefined) row("mean RMSE", String(outputs.mean_rmse));
  if (artifacts.length === 0) row("artifacts", "none announced by this run");
  artifacts.forEach((a, i) => {
    row(i === 0 ? "artifacts" : "", `${a.name} {${partitionText(a)}} ${a.uri}`);
  });
  row("workspace", workspace);
  row("logs", `${join(paths.attemptLogs, runId)}  (kaon logs ${runId} <step path>)`);
  row("data dir", dataDir);
  row("next", `kaon status ${runId} · kaon steps ${runId} --prefix 'train_loop@' · kaon runs`);

  return {
    run,
    text: lines.join("\n"),
    json: {
      runId,
      status: runStatusName(run.status),
      tookMs,
      outputs,
      runOutputs: run.outputs,
      artifacts: artifacts.map((a) => ({ name: a.name, partitions: a.partitions, uri: a.uri })),
      workspace,
      logs: join(paths.attemptLogs, runId),
      dataDir,
    },
  };
}
