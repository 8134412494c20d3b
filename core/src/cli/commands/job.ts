// `kaon job …`: the in-job API for languages without an SDK (R, Scala, bash, …). Each command
// reports one thing for the attempt it runs in (found through KAON_ENDPOINT and the attempt's
// KAON_TOKEN) and flushes before it exits, so `kaon job output auc 0.91 && next-command` is
// safe. It is a thin shell over the TypeScript SDK's in-job reporter (@kaon/sdk), so batching,
// retries while core is away and sequence numbering behave exactly as in the SDKs.
import { Job, type JsonObject, KaonError, type MessageLevelName } from "@kaon/sdk";
import type { Command } from "commander";
import { type CliContext, CliError, EXIT } from "../client.js";

type Env = Record<string, string | undefined>;

const LEVELS: readonly MessageLevelName[] = ["debug", "info", "warning", "error"];

/** `VALUE` as JSON when it parses (`0.91`, `true`, `[1,2]`, `"x"`), else the string itself. */
export function parseOutputValue(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

function parseNumber(text: string, what: string): number {
  const value = Number(text);
  if (text.trim() === "" || !Number.isFinite(value)) {
    throw new CliError(`${what}: '${text}' is not a number`, EXIT.usage);
  }
  return value;
}

function parsePartition(text: string, previous: Record<string, string>): Record<string, string> {
  const eq = text.indexOf("=");
  if (eq <= 0) {
    throw new CliError(
      `--partition: '${text}' is not key=value (e.g. --partition dateint=20261121)`,
      EXIT.usage,
    );
  }
  return { ...previous, [text.slice(0, eq)]: text.slice(eq + 1) };
}

/** Runs `report` against a Job of this process's attempt, flushes, and closes. */
async function withJob(env: Env, report: (job: Job) => void | Promise<void>): Promise<void> {
  let job: Job;
  try {
    job = new Job({ env, flushOnExit: false });
  } catch (err) {
    if (err instanceof KaonError) throw new CliError(`kaon job: ${err.message}`);
    throw err;
  }
  try {
    await report(job);
    await job.flush();
  } catch (err) {
    if (err instanceof KaonError) throw new CliError(`kaon job: ${err.message}`);
    throw err;
  } finally {
    await job.close().catch(() => undefined);
  }
}

export function register(program: Command, ctx: CliContext, env: Env = process.env): void {
  const job = program
    .command("job")
    .description("report from inside a running step (for languages without a kaon SDK)");

  job
    .command("output <name> <value>")
    .description(
      "set a step output; VALUE is parsed as JSON when it is valid JSON, else taken as a string",
    )
    .action(async (name: string, value: string) => {
      await withJob(env, (j) => j.output(name, parseOutputValue(value)));
    });

  job
    .command("progress <percent> [message]")
    .description("report percent complete (0-100) and what is going on")
    .action(async (percent: string, message: string | undefined) => {
      const pct = parseNumber(percent, "PERCENT");
      await withJob(env, (j) => j.progress(pct, message ?? ""));
    });

  job
    .command("milestone <name>")
    .description("mark a named point in time")
    .action(async (name: string) => {
      await withJob(env, (j) => j.milestone(name));
    });

  job
    .command("link <name> <url>")
    .description("show a named link on the step")
    .action(async (name: string, url: string) => {
      await withJob(env, (j) => j.link(name, url));
    });

  job
    .command("counter <name> [delta]")
    .description("add DELTA (default 1) to a counter")
    .action(async (name: string, delta: string | undefined) => {
      const d = delta === undefined ? 1 : parseNumber(delta, "DELTA");
      await withJob(env, (j) => j.counter(name, d));
    });

  job
    .command("message <text>")
    .description("a line of text for the UI")
    .option("--level <level>", "debug, info, warning or error", "info")
    .action(async (text: string, options: { level: string }) => {
      if (!LEVELS.includes(options.level as MessageLevelName)) {
        throw new CliError(
          `--level: '${options.level}' is not one of ${LEVELS.join(", ")}`,
          EXIT.usage,
        );
      }
      await withJob(env, (j) => j.message(text, options.level as MessageLevelName));
    });

  job
    .command("artifact <name>")
    .description("announce a data artifact this step produced")
    .option("--partition <key=value>", "a partition key (repeat for several)", parsePartition, {})
    .requiredOption("--uri <uri>", "where the data lives")
    .option("--metadata <json>", "metadata as a JSON object, e.g. '{\"rows\": 1200}'")
    .action(
      async (
        name: string,
        options: { partition: Record<string, string>; uri: string; metadata?: string },
      ) => {
        let metadata: JsonObject = {};
        if (options.metadata !== undefined) {
          const parsed = parseOutputValue(options.metadata);
          if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
            throw new CliError(
              `--metadata: '${options.metadata}' is not a JSON object`,
              EXIT.usage,
            );
          }
          metadata = parsed as JsonObject;
        }
        await withJob(env, async (j) => {
          const artifact = await j.artifact(name, options.partition, options.uri, metadata);
          ctx.print(
            { name: artifact.name, revision: artifact.revision },
            () => `announced ${artifact.name} (revision ${artifact.revision})`,
          );
        });
      },
    );
}
