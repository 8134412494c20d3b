// Watches a running Spark application through the monitoring REST API of its driver's UI
// (`/api/v1/...`) and reports what a step shows: the application id (output
// `spark_application_id`), the "Spark UI" link, and percent done (completed + skipped tasks
// over all tasks of the application's jobs so far). Spark offers no push, so this polls about
// once a second while the attempt runs. It is best effort by design: a UI that is not up yet,
// disabled, or gone only means no progress — nothing here throws, and it stops when the
// signal aborts.
//
// Which UI is ours: the spark type picks a free port for `spark.ui.port` and tags the
// application with `spark.kaon.attempt`. If the port was taken before the driver bound it,
// Spark moves to the next ports (up to `spark.port.maxRetries`, 16); a UI that answers with
// another application's tag, or is not a Spark UI, sends the monitor one port up.
import type { StepReporter } from "../step-type.js";

/** The Spark conf key that marks an application as a given kaon attempt. */
export const SPARK_ATTEMPT_TAG_CONF = "spark.kaon.attempt";
/** Spark's default `spark.port.maxRetries`: how far above the asked port the UI may land. */
export const SPARK_PORT_RETRIES = 16;
export const SPARK_UI_LINK = "Spark UI";
export const SPARK_APP_ID_OUTPUT = "spark_application_id";

export interface SparkMonitorOptions {
  /** Poll interval; default 1000 ms. */
  intervalMs?: number;
  /** Per-request timeout; default 2000 ms. */
  requestTimeoutMs?: number;
  /** Host the driver UI listens on, as seen from core; default 127.0.0.1. */
  host?: string;
}

export interface SparkJobSummary {
  numTasks?: number;
  numCompletedTasks?: number;
  numSkippedTasks?: number;
  status?: string;
}

/** Percent done of an application's jobs so far, or undefined when no task is known yet. */
export function sparkPercent(
  jobs: readonly SparkJobSummary[],
): { percent: number; done: number; total: number; jobsDone: number } | undefined {
  let total = 0;
  let done = 0;
  let jobsDone = 0;
  for (const j of jobs) {
    const n = nonNegative(j.numTasks);
    total += n;
    done += Math.min(n, nonNegative(j.numCompletedTasks) + nonNegative(j.numSkippedTasks));
    if (j.status === "SUCCEEDED") jobsDone++;
  }
  if (total === 0) return undefined;
  return { percent: Math.floor((100 * done) / total), done, total, jobsDone };
}

function nonNegative(v: unknown): number {
  return typeof v === "number" && Number.isFinite(v) && v > 0 ? v : 0;
}

type Probe =
  | { kind: "ours"; appId: string }
  | { kind: "foreign" } // the UI of another Spark application
  | { kind: "strange" } // an answer that is not a Spark UI's (or one that is still starting)
  | { kind: "absent" }; // nothing answers (not up yet, or already gone)

/**
 * Consecutive non-Spark answers after which a port is given up. A starting driver binds its
 * port a moment before the REST API is ready (404s meanwhile), so one odd answer is no proof.
 */
const STRANGE_ANSWERS_BEFORE_MOVING_ON = 15;

/**
 * Polls the driver UI of the application tagged `tag`, starting at `uiPort`, until `signal`
 * aborts. Resolves (never rejects) when aborted.
 */
export async function monitorSparkApplication(
  uiPort: number,
  tag: string,
  report: StepReporter,
  signal: AbortSignal,
  options: SparkMonitorOptions = {},
): Promise<void> {
  const interval = options.intervalMs ?? 1000;
  const timeout = options.requestTimeoutMs ?? 2000;
  const host = options.host ?? "127.0.0.1";
  let port = uiPort;
  let appId: string | undefined;
  let lastPercent: number | undefined;
  let strangeAnswers = 0;

  const getJson = async (url: string): Promise<unknown> => {
    const res = await fetch(url, {
      signal: AbortSignal.any([signal, AbortSignal.timeout(timeout)]),
      headers: { accept: "application/json" },
    });
    if (!res.ok) {
      await res.body?.cancel();
      throw new NotSparkAnswer(`HTTP ${res.status}`);
    }
    return res.json();
  };

  const probe = async (base: string): Promise<Probe> => {
    let apps: unknown;
    try {
      apps = await getJson(`${base}/api/v1/applications`);
    } catch (e) {
      // Silence (refused, timed out) means the driver is not up yet, or is gone.
      return answered(e) ? { kind: "strange" } : { kind: "absent" };
    }
    if (!Array.isArray(apps)) return { kind: "strange" };
    for (const app of apps) {
      const id = (app as { id?: unknown }).id;
      if (typeof id !== "string") continue;
      try {
        const env = (await getJson(
          `${base}/api/v1/applications/${encodeURIComponent(id)}/environment`,
        )) as {
          sparkProperties?: unknown;
        };
        const props = Array.isArray(env.sparkProperties) ? env.sparkProperties : [];
        const mine = props.some(
          (p) => Array.isArray(p) && p[0] === SPARK_ATTEMPT_TAG_CONF && p[1] === tag,
        );
        if (mine) return { kind: "ours", appId: id };
      } catch {
        // An app listed but without an environment page yet: look again next round.
        return { kind: "absent" };
      }
    }
    return apps.length === 0 ? { kind: "absent" } : { kind: "foreign" };
  };

  const poll = async (): Promise<void> => {
    const base = `http://${host}:${port}`;
    if (appId === undefined) {
      const p = await probe(base);
      strangeAnswers = p.kind === "strange" ? strangeAnswers + 1 : 0;
      const moveOn = p.kind === "foreign" || strangeAnswers >= STRANGE_ANSWERS_BEFORE_MOVING_ON;
      if (moveOn && port < uiPort + SPARK_PORT_RETRIES) {
        port++;
        strangeAnswers = 0;
      }
      if (p.kind !== "ours") return;
      appId = p.appId;
      report.output(SPARK_APP_ID_OUTPUT, appId);
      report.link(SPARK_UI_LINK, `${base}/`);
      report.message(`Spark application ${appId} is running; UI at ${base}/`);
    }
    const jobs = await getJson(`${base}/api/v1/applications/${encodeURIComponent(appId)}/jobs`);
    if (!Array.isArray(jobs)) return;
    const p = sparkPercent(jobs as SparkJobSummary[]);
    if (!p || p.percent === lastPercent) return;
    lastPercent = p.percent;
    report.progress(
      p.percent,
      `${p.done}/${p.total} tasks; ${p.jobsDone}/${jobs.length} Spark jobs done`,
    );
  };

  while (!signal.aborted) {
    try {
      await poll();
    } catch {
      // The UI went away (the application ended) or answered badly: no progress this round.
    }
    await sleep(interval, signal);
  }
}

/** A server answered, but not as a Spark UI does (an HTTP error status, or not JSON). */
class NotSparkAnswer extends Error {}

function answered(e: unknown): boolean {
  return e instanceof NotSparkAnswer || e instanceof SyntaxError;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}
