// Run commands: start runs and follow them (`run`, `watch`), look at them (`runs`, `status`,
// `steps`, `logs`) and steer them (`stop`, `restart`). Everything goes through RunService;
// `--json` prints proto3 JSON for scripts. `run --wait`, `restart --wait` and `watch` show the
// live progress view (./progress) and exit 0 only when the run SUCCEEDED.
import { randomUUID } from "node:crypto";
import { hostname, userInfo } from "node:os";
import {
  LogStream,
  messageToJson,
  RestartFrom,
  Run,
  RunServiceDefinition,
  RunStatus,
  StepInstance,
  StepStatus,
} from "@kaon/proto";
import type { Command } from "commander";
import { type CliContext, CliError, EXIT, formatTable } from "../client.js";
import { formatDuration } from "../progress/render.js";
import { runStatusName, stepStatusName } from "../progress/state.js";
import { watchRun } from "../progress/watch.js";

/** The CLI's version as reported to the server (ClientInfo). */
export const CLI_CLIENT = { name: "kaon-cli", version: "0.1.0" } as const;

export function clientInfo() {
  let user = "";
  try {
    user = userInfo().username;
  } catch {
    user = process.env.USER ?? "";
  }
  return { ...CLI_CLIENT, user, host: hostname() };
}

// ---------------------------------------------------------------------------------------
// Argument parsing (exported for tests)

/** commander collector for repeatable options. */
function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** `VALUE` as JSON when it parses (`3`, `true`, `["US","BR"]`, `"x"`), else the string. */
export function parseParamValue(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

/** `-p name=value …` → params; the value is JSON when valid JSON, else a string. */
export function parseParams(items: readonly string[] = [], option = "-p"): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const item of items) {
    const eq = item.indexOf("=");
    if (eq <= 0) {
      throw new CliError(
        `${option} '${item}': expected name=value, e.g. ${option} countries='["US","BR"]' or ${option} epochs=10`,
        EXIT.usage,
      );
    }
    out[item.slice(0, eq).trim()] = parseParamValue(item.slice(eq + 1));
  }
  return out;
}

/** `--tag k=v …` → tags (values stay strings). */
export function parseTags(items: readonly string[] = []): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of items) {
    const eq = item.indexOf("=");
    if (eq <= 0) {
      throw new CliError(`--tag '${item}': expected key=value, e.g. --tag team=recs`, EXIT.usage);
    }
    out[item.slice(0, eq).trim()] = item.slice(eq + 1);
  }
  return out;
}

function enumByName<E extends Record<string, string | number>>(
  values: E,
  prefix: string,
  text: string,
  option: string,
): number {
  const key = `${prefix}${text.trim().toUpperCase().replace(/-/g, "_")}`;
  const value = values[key];
  if (typeof value === "number" && !key.endsWith("UNSPECIFIED")) return value;
  const names = Object.keys(values)
    .filter((k) => k.startsWith(prefix) && !k.endsWith("UNSPECIFIED"))
    .map((k) => k.slice(prefix.length).toLowerCase());
  throw new CliError(
    `${option}: '${text}' is not a status; use one of ${names.join(", ")}`,
    EXIT.usage,
  );
}

/** `--status failed,running` (or repeated) → RunStatus values. */
export function parseRunStatuses(items: readonly string[] = []): RunStatus[] {
  return items
    .flatMap((i) => i.split(","))
    .filter((s) => s.trim() !== "")
    .map((s) => enumByName(RunStatus, "RUN_STATUS_", s, "--status") as RunStatus);
}

/** `--status failed,running` (or repeated) → StepStatus values. */
export function parseStepStatuses(items: readonly string[] = []): StepStatus[] {
  return items
    .flatMap((i) => i.split(","))
    .filter((s) => s.trim() !== "")
    .map((s) => enumByName(StepStatus, "STEP_STATUS_", s, "--status") as StepStatus);
}

function parsePositiveInt(text: string, option: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) {
    throw new CliError(`${option}: '${text}' is not a positive whole number`, EXIT.usage);
  }
  return n;
}

// ---------------------------------------------------------------------------------------
// Shared helpers

/** Whether live progress should be a redrawn frame: stdout is a terminal and TERM allows it. */
export function isInteractive(env: Record<string, string | undefined> = process.env): boolean {
  return process.stdout.isTTY === true && env.TERM !== "dumb" && env.KAON_PLAIN_PROGRESS !== "1";
}

/** Follows a run with the live view; Ctrl-C detaches (the run goes on). */
export async function followRun(
  ctx: CliContext,
  runId: string,
  options: { outcome?: boolean } = {},
) {
  const controller = new AbortController();
  const onInterrupt = () => controller.abort();
  process.once("SIGINT", onInterrupt);
  try {
    const tty = isInteractive();
    return await watchRun({
      client: ctx.client(RunServiceDefinition),
      runId,
      write: ctx.out,
      tty,
      color: process.env.NO_COLOR === undefined,
      columns: () => process.stdout.columns ?? 0,
      signal: controller.signal,
      ...(options.outcome === undefined ? {} : { outcome: options.outcome }),
    });
  } finally {
    process.removeListener("SIGINT", onInterrupt);
  }
}

/** Exit code for a finished run: 0 only when it SUCCEEDED. */
export function exitForRun(run: Run | undefined): void {
  if (!run) throw new CliError("the run's final state is unknown");
  if (run.status !== RunStatus.RUN_STATUS_SUCCEEDED) {
    throw new CliError(`run ${run.id} ended ${runStatusName(run.status)}`, EXIT.failure);
  }
}

function runJson(run: Run | undefined) {
  return run ? messageToJson(Run, "kaon.v1.Run", run) : null;
}

function stepJson(step: StepInstance) {
  return messageToJson(StepInstance, "kaon.v1.StepInstance", step);
}

function progressCell(step: StepInstance): string {
  if (step.progress < 0) return "";
  return `${Math.round(step.progress)}%`;
}

function childCell(step: StepInstance): string {
  const counts = Object.entries(step.childCounts ?? {});
  if (counts.length > 0) {
    const total = counts.reduce((a, [, n]) => a + Number(n), 0);
    const done = Number(step.childCounts.SUCCEEDED ?? step.childCounts.STEP_STATUS_SUCCEEDED ?? 0);
    return `${done}/${total} iterations`;
  }
  if (step.type === "loop" && step.status !== StepStatus.STEP_STATUS_NOT_STARTED) {
    return `iteration ${step.loopIteration + 1}`;
  }
  return "";
}

function stepRows(steps: readonly StepInstance[]) {
  return formatTable(steps, [
    { header: "path", value: (s) => s.path },
    { header: "status", value: (s) => stepStatusName(s.status) },
    { header: "attempts", value: (s) => (s.attemptCount > 0 ? s.attemptCount : "") },
    {
      header: "progress",
      value: (s) => [progressCell(s), childCell(s)].filter((x) => x !== "").join(" "),
    },
    {
      header: "reason",
      value: (s) =>
        s.message && s.message !== s.reason
          ? `${s.reason}${s.reason ? " — " : ""}${s.message}`
          : s.reason,
    },
  ]);
}

function runElapsed(run: Run): string {
  const start = (run.startedAt ?? run.createdAt)?.getTime();
  if (start === undefined) return "";
  return formatDuration((run.endedAt?.getTime() ?? Date.now()) - start);
}

/** Every step instance of a run matching the filter, across pages (bounded by `limit`). */
async function listAllSteps(
  ctx: CliContext,
  runId: string,
  filter: { statuses?: StepStatus[]; pathPrefix?: string },
  limit: number,
): Promise<{ steps: StepInstance[]; truncated: boolean }> {
  const client = ctx.client(RunServiceDefinition);
  const steps: StepInstance[] = [];
  let pageToken = "";
  do {
    const res = await client.listSteps({
      runId,
      statuses: filter.statuses ?? [],
      pathPrefix: filter.pathPrefix ?? "",
      pageSize: Math.min(1000, limit - steps.length),
      pageToken,
    });
    steps.push(...res.steps);
    pageToken = res.nextPageToken;
  } while (pageToken !== "" && steps.length < limit);
  return { steps, truncated: pageToken !== "" };
}

function describeRun(run: Run): string {
  const lines = [
    `run       ${run.id}`,
    `workflow  ${run.workflowId} v${run.version}`,
    `status    ${runStatusName(run.status)}${run.message ? ` (${run.message})` : ""}`,
    `elapsed   ${runElapsed(run)}`,
  ];
  if (Object.keys(run.params).length > 0) lines.push(`params    ${JSON.stringify(run.params)}`);
  if (Object.keys(run.tags).length > 0) lines.push(`tags      ${JSON.stringify(run.tags)}`);
  if (Object.keys(run.outputs).length > 0) lines.push(`outputs   ${JSON.stringify(run.outputs)}`);
  if (run.restartCount > 0) lines.push(`restarts  ${run.restartCount}`);
  return lines.join("\n");
}

// ---------------------------------------------------------------------------------------
// Commands

interface RunOptions {
  param?: string[];
  version?: string;
  latest?: boolean;
  tag?: string[];
  wait?: boolean;
  requestId?: string;
}

interface RestartOptions {
  param?: string[];
  fromFailed?: boolean;
  fromStep?: string;
  fromBeginning?: boolean;
  wait?: boolean;
}

export function register(program: Command, ctx: CliContext): void {
  program
    .command("run")
    .description(
      "start a run of a workflow (with --wait: follow it live; exit 0 only if it succeeds)",
    )
    .argument("<workflow>", "workflow id")
    .option(
      "-p, --param <name=value>",
      "a workflow param; the value is JSON when it parses, else a string (repeatable)",
      collect,
    )
    .option("--version <n>", "run this version (default: the active one)")
    .option("--latest", "run the newest version instead of the active one")
    .option("--tag <key=value>", "a label for the run (repeatable)", collect)
    .option("--wait", "follow the run live until it ends")
    .option(
      "--request-id <id>",
      "idempotency key: repeating the command with it returns the same run",
    )
    .action(async (workflowId: string, options: RunOptions) => {
      if (options.version !== undefined && options.latest) {
        throw new CliError("--version and --latest exclude each other; pick one", EXIT.usage);
      }
      const version =
        options.version !== undefined
          ? {
              selector: {
                $case: "number" as const,
                value: parsePositiveInt(options.version, "--version"),
              },
            }
          : options.latest
            ? { selector: { $case: "latest" as const, value: true } }
            : undefined;
      const res = await ctx.client(RunServiceDefinition).startRun({
        workflowId,
        ...(version ? { version } : {}),
        params: parseParams(options.param),
        tags: parseTags(options.tag),
        requestId: options.requestId ?? randomUUID(),
        client: clientInfo(),
      });
      const run = res.run as Run;
      if (!options.wait) {
        ctx.print(
          runJson(run),
          () =>
            `started run ${run.id} (${run.workflowId} v${run.version})\nfollow it: kaon watch ${run.id}`,
        );
        return;
      }
      await waitAndReport(ctx, run);
    });

  program
    .command("watch")
    .description("follow a run live until it ends (exit 0 only if it succeeds)")
    .argument("<run>", "run id")
    .action(async (runId: string) => {
      const run = (await ctx.client(RunServiceDefinition).getRun({ runId })).run as Run;
      await waitAndReport(ctx, run);
    });

  program
    .command("runs")
    .description("list runs, newest first")
    .option("--workflow <id>", "only runs of this workflow")
    .option(
      "--status <status>",
      "only runs in these statuses (comma-separated or repeated)",
      collect,
    )
    .option("--limit <n>", "at most this many runs (default 20)")
    .action(async (options: { workflow?: string; status?: string[]; limit?: string }) => {
      const limit = options.limit === undefined ? 20 : parsePositiveInt(options.limit, "--limit");
      const res = await ctx.client(RunServiceDefinition).listRuns({
        workflowId: options.workflow ?? "",
        statuses: parseRunStatuses(options.status),
        pageSize: Math.min(1000, limit),
      });
      ctx.print(ctx.json ? res.runs.map(runJson) : undefined, () =>
        res.runs.length === 0
          ? "no runs"
          : formatTable(res.runs, [
              { header: "run", value: (r) => r.id },
              { header: "workflow", value: (r) => `${r.workflowId} v${r.version}` },
              { header: "status", value: (r) => runStatusName(r.status) },
              { header: "created", value: (r) => r.createdAt },
              { header: "elapsed", value: (r) => runElapsed(r) },
              { header: "message", value: (r) => r.message },
            ]),
      );
    });

  program
    .command("status")
    .description("a run and its steps: path, status, attempts, progress, reason")
    .argument("<run>", "run id")
    .action(async (runId: string) => {
      const run = (await ctx.client(RunServiceDefinition).getRun({ runId })).run as Run;
      const { steps, truncated } = await listAllSteps(ctx, runId, {}, 10_000);
      const visible = steps.filter(
        (s) => s.status !== StepStatus.STEP_STATUS_NOT_STARTED || !s.path.includes("/"),
      );
      ctx.print(ctx.json ? { run: runJson(run), steps: steps.map(stepJson) } : undefined, () =>
        [
          describeRun(run),
          "",
          stepRows(visible),
          truncated ? `… more steps than shown; use kaon steps ${runId} --prefix PATH` : "",
        ]
          .filter((x, i, all) => x !== "" || i < all.length - 1)
          .join("\n"),
      );
    });

  program
    .command("steps")
    .description("a run's step instances, filtered by status and path prefix")
    .argument("<run>", "run id")
    .option(
      "--status <status>",
      "only steps in these statuses (comma-separated or repeated)",
      collect,
    )
    .option("--prefix <path>", "only paths starting with this, e.g. 'train_loop@0/regional['")
    .option("--limit <n>", "at most this many steps (default 1000)")
    .action(
      async (runId: string, options: { status?: string[]; prefix?: string; limit?: string }) => {
        const limit =
          options.limit === undefined ? 1000 : parsePositiveInt(options.limit, "--limit");
        const { steps, truncated } = await listAllSteps(
          ctx,
          runId,
          {
            statuses: parseStepStatuses(options.status),
            ...(options.prefix ? { pathPrefix: options.prefix } : {}),
          },
          limit,
        );
        ctx.print(ctx.json ? steps.map(stepJson) : undefined, () =>
          steps.length === 0
            ? "no matching steps"
            : `${stepRows(steps)}${truncated ? `\n… more than ${limit}; raise --limit or narrow with --prefix/--status` : ""}`,
        );
      },
    );

  program
    .command("logs")
    .description("stdout (or stderr) of a step's attempt; -f follows it until the attempt ends")
    .argument("<run>", "run id")
    .argument("<path>", "step instance path, e.g. wrangle or 'train_loop@0/regional[2]/train'")
    .option("--attempt <n>", "attempt number (default: the latest)")
    .option("--stderr", "standard error instead of standard output")
    .option("-f, --follow", "keep printing new output until the attempt ends")
    .action(
      async (
        runId: string,
        path: string,
        options: { attempt?: string; stderr?: boolean; follow?: boolean },
      ) => {
        const controller = new AbortController();
        const onInterrupt = () => controller.abort();
        process.once("SIGINT", onInterrupt);
        try {
          const stream = ctx.client(RunServiceDefinition).tailLogs(
            {
              runId,
              path,
              attempt:
                options.attempt === undefined ? 0 : parsePositiveInt(options.attempt, "--attempt"),
              stream: options.stderr ? LogStream.LOG_STREAM_STDERR : LogStream.LOG_STREAM_STDOUT,
              offset: 0,
              follow: options.follow === true,
            },
            { signal: controller.signal },
          );
          const decoder = new TextDecoder();
          for await (const chunk of stream) {
            const text = decoder.decode(chunk.data, { stream: true });
            if (ctx.json)
              ctx.out(`${JSON.stringify({ data: text, nextOffset: chunk.nextOffset })}\n`);
            else ctx.out(text);
          }
          const rest = decoder.decode();
          if (rest && !ctx.json) ctx.out(rest);
        } catch (err) {
          if (!controller.signal.aborted) throw err;
        } finally {
          process.removeListener("SIGINT", onInterrupt);
        }
      },
    );

  program
    .command("stop")
    .description("stop a run: running attempts are killed, nothing new starts")
    .argument("<run>", "run id")
    .option("--reason <text>", "recorded as the reason")
    .action(async (runId: string, options: { reason?: string }) => {
      const res = await ctx
        .client(RunServiceDefinition)
        .stopRun({ runId, reason: options.reason ?? "" });
      const run = res.run as Run;
      ctx.print(
        runJson(run),
        () => `run ${run.id} ${runStatusName(run.status)}${run.message ? ` (${run.message})` : ""}`,
      );
    });

  program
    .command("restart")
    .description("restart a finished run in place (default: from its failed steps)")
    .argument("<run>", "run id")
    .option(
      "--from-failed",
      "re-run failed, stopped and timed-out steps and what they blocked (default)",
    )
    .option("--from-step <id>", "re-run this top-level step and everything downstream of it")
    .option("--from-beginning", "re-run everything")
    .option("-p, --param <name=value>", "override a param (repeatable)", collect)
    .option("--wait", "follow the run live until it ends")
    .action(async (runId: string, options: RestartOptions) => {
      const chosen = [
        options.fromFailed,
        options.fromStep !== undefined,
        options.fromBeginning,
      ].filter(Boolean);
      if (chosen.length > 1) {
        throw new CliError(
          "--from-failed, --from-step and --from-beginning exclude each other; pick one",
          EXIT.usage,
        );
      }
      const from =
        options.fromStep !== undefined
          ? RestartFrom.RESTART_FROM_STEP
          : options.fromBeginning
            ? RestartFrom.RESTART_FROM_BEGINNING
            : RestartFrom.RESTART_FROM_FAILED;
      const res = await ctx.client(RunServiceDefinition).restartRun({
        runId,
        from,
        stepId: options.fromStep ?? "",
        params: parseParams(options.param),
        requestId: randomUUID(),
      });
      const run = res.run as Run;
      if (!options.wait) {
        ctx.print(
          runJson(run),
          () =>
            `restarted run ${run.id} (restart ${run.restartCount})\nfollow it: kaon watch ${run.id}`,
        );
        return;
      }
      await waitAndReport(ctx, run);
    });
}

/** Follows `run` to its end: the live view for people, the final run as JSON for scripts. */
async function waitAndReport(ctx: CliContext, run: Run): Promise<void> {
  if (ctx.json) {
    // Scripts get no progress view, only the final run.
    const stream = ctx.client(RunServiceDefinition).watchRun({ runId: run.id, afterSeq: 0 });
    for await (const _ of stream) {
      // drain: the stream ends after the run's terminal event
    }
    const final = (await ctx.client(RunServiceDefinition).getRun({ runId: run.id })).run as Run;
    ctx.print(runJson(final), () => "");
    exitForRun(final);
    return;
  }
  const result = await followRun(ctx, run.id);
  if (result.detached) return;
  exitForRun(result.run);
}
