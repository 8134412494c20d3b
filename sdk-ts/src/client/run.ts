// A run as the friendly layer shows it: its latest state, `wait()` driven by the WatchRun
// stream (no polling), its steps, outputs and logs, and the verbs stop/restart. A watch that
// loses the server resumes from the last event it saw, so a brief server restart is invisible.
import {
  type Attempt,
  LogStream,
  RestartFrom,
  type RunEvent,
  type Run as RunMessage,
  RunStatus,
  runStatusToJSON,
  type StepInstance,
  type StepStatus,
  stepStatusToJSON,
} from "@kaon/proto";
import type { JsonValue } from "../dsl/values.js";
import { ConnectionError, RunFailedError } from "../errors.js";
import type { RawClients } from "./raw.js";

/** Run statuses without their prefix. */
export type RunStatusName =
  | "UNSPECIFIED"
  | "QUEUED"
  | "RUNNING"
  | "SUCCEEDED"
  | "FAILED"
  | "STOPPED"
  | "TIMED_OUT";

/** Step statuses without their prefix. */
export type StepStatusName =
  | "UNSPECIFIED"
  | "NOT_STARTED"
  | "ACTIVATED"
  | "WAITING_FOR_DATA"
  | "QUEUED"
  | "LAUNCHING"
  | "RUNNING"
  | "RETRYING"
  | "SUCCEEDED"
  | "FAILED"
  | "SKIPPED"
  | "STOPPED"
  | "TIMED_OUT";

/** `RUN_STATUS_SUCCEEDED` → `SUCCEEDED`. */
export function runStatusName(status: RunStatus): RunStatusName {
  return runStatusToJSON(status).replace(/^RUN_STATUS_/, "") as RunStatusName;
}

/** `STEP_STATUS_RUNNING` → `RUNNING`. */
export function stepStatusName(status: StepStatus): StepStatusName {
  return stepStatusToJSON(status).replace(/^STEP_STATUS_/, "") as StepStatusName;
}

const TERMINAL = new Set([
  RunStatus.RUN_STATUS_SUCCEEDED,
  RunStatus.RUN_STATUS_FAILED,
  RunStatus.RUN_STATUS_STOPPED,
  RunStatus.RUN_STATUS_TIMED_OUT,
]);

/** True when a run status is final. */
export function isTerminal(status: RunStatus): boolean {
  return TERMINAL.has(status);
}

/** What `wait({ onProgress })` reports after each batch of events. */
export interface RunProgress {
  run: RunMessage;
  status: RunStatusName;
  /** Step instance counts by status name, e.g. `{ RUNNING: 2, SUCCEEDED: 5 }`. */
  stepCounts: Record<string, number>;
  /** The events of this batch. */
  events: RunEvent[];
}

/** Options of `wait`. */
export interface WaitOptions {
  onProgress?: (progress: RunProgress) => void;
  signal?: AbortSignal;
  /** Throw RunFailedError unless the run SUCCEEDED. Default false. */
  throwOnFailure?: boolean;
}

/** Where a restart begins: failed steps (default), the beginning, or a named step. */
export type RestartFromInput = "failed" | "beginning" | { step: string };

/** How many times a broken watch or log stream reconnects before giving up. */
const STREAM_RECONNECTS = 5;

/** One run on the server. */
export class Run {
  constructor(
    private readonly raw: RawClients,
    /** The run as last seen. */
    public info: RunMessage,
  ) {}

  get id(): string {
    return this.info.id;
  }
  get workflowId(): string {
    return this.info.workflowId;
  }
  get version(): number {
    return this.info.version;
  }
  /** Status as last seen, e.g. "RUNNING". */
  get status(): RunStatusName {
    return runStatusName(this.info.status);
  }
  get done(): boolean {
    return isTerminal(this.info.status);
  }

  /** Fetches the current state. */
  async refresh(): Promise<RunMessage> {
    const { run } = await this.raw.runs.getRun({ runId: this.id });
    if (run) this.info = run;
    return this.info;
  }

  /**
   * Waits until the run ends, following its event stream. `onProgress` sees every batch of
   * events with the run's state. Resolves with the final run.
   */
  async wait(options: WaitOptions = {}): Promise<RunMessage> {
    if (!this.done) {
      for await (const batch of this.batches(0, options.signal)) {
        if (batch.run) this.info = batch.run;
        options.onProgress?.({
          run: this.info,
          status: this.status,
          stepCounts: { ...this.info.stepCounts },
          events: batch.events,
        });
        if (this.done) break;
      }
      if (!this.done) await this.refresh();
    }
    if (options.throwOnFailure && this.info.status !== RunStatus.RUN_STATUS_SUCCEEDED) {
      throw new RunFailedError(
        `run ${this.id} of ${this.workflowId} ended ${this.status}` +
          (this.info.message ? `: ${this.info.message}` : ""),
        { code: this.status },
      );
    }
    return this.info;
  }

  /** The run's events from after `afterSeq` until it ends. */
  async *watch(
    options: { afterSeq?: number; signal?: AbortSignal } = {},
  ): AsyncGenerator<RunEvent> {
    for await (const batch of this.batches(options.afterSeq ?? 0, options.signal)) {
      if (batch.run) this.info = batch.run;
      yield* batch.events;
    }
  }

  private async *batches(afterSeq: number, signal: AbortSignal | undefined) {
    let cursor = afterSeq;
    let reconnects = 0;
    for (;;) {
      try {
        const stream = this.raw.runs.watchRun(
          { runId: this.id, afterSeq: cursor },
          signal ? { signal } : {},
        );
        for await (const batch of stream) {
          reconnects = 0;
          const last = batch.events[batch.events.length - 1];
          if (last) cursor = last.seq;
          yield batch;
        }
        return;
      } catch (err) {
        if (!(err instanceof ConnectionError) || ++reconnects > STREAM_RECONNECTS) throw err;
        await pause(250 * 2 ** (reconnects - 1));
      }
    }
  }

  /** Step instances in graph order, optionally filtered; reads every page. */
  async steps(
    filter: { statuses?: StepStatus[]; pathPrefix?: string } = {},
  ): Promise<StepInstance[]> {
    const out: StepInstance[] = [];
    let pageToken = "";
    do {
      const page = await this.raw.runs.listSteps({
        runId: this.id,
        statuses: filter.statuses ?? [],
        pathPrefix: filter.pathPrefix ?? "",
        pageSize: 1000,
        pageToken,
      });
      out.push(...page.steps);
      pageToken = page.nextPageToken;
    } while (pageToken);
    return out;
  }

  /** One step instance with its attempts. */
  async step(path: string): Promise<{ step: StepInstance | undefined; attempts: Attempt[] }> {
    const { step, attempts } = await this.raw.runs.getStep({ runId: this.id, path });
    return { step, attempts };
  }

  /** The run's outputs (`<step>.<name>` of its final steps), fetched fresh. */
  async outputs(): Promise<Record<string, JsonValue>> {
    await this.refresh();
    return { ...this.info.outputs };
  }

  /** Text of an attempt's stdout (default) or stderr; with `follow`, until the attempt ends. */
  async *logs(
    path: string,
    options: {
      follow?: boolean;
      stream?: "stdout" | "stderr";
      attempt?: number;
      offset?: number;
      signal?: AbortSignal;
    } = {},
  ): AsyncGenerator<string> {
    const decoder = new TextDecoder();
    let offset = options.offset ?? 0;
    let reconnects = 0;
    for (;;) {
      try {
        const stream = this.raw.runs.tailLogs(
          {
            runId: this.id,
            path,
            attempt: options.attempt ?? 0,
            stream:
              options.stream === "stderr"
                ? LogStream.LOG_STREAM_STDERR
                : LogStream.LOG_STREAM_STDOUT,
            offset,
            follow: options.follow ?? false,
          },
          options.signal ? { signal: options.signal } : {},
        );
        for await (const chunk of stream) {
          reconnects = 0;
          offset = chunk.nextOffset;
          const text = decoder.decode(chunk.data, { stream: true });
          if (text) yield text;
        }
        const rest = decoder.decode();
        if (rest) yield rest;
        return;
      } catch (err) {
        if (!(err instanceof ConnectionError) || ++reconnects > STREAM_RECONNECTS) throw err;
        await pause(250 * 2 ** (reconnects - 1));
      }
    }
  }

  /** Stops the run; a no-op when it already ended. */
  async stop(reason = ""): Promise<RunMessage> {
    const { run } = await this.raw.runs.stopRun({ runId: this.id, reason });
    if (run) this.info = run;
    return this.info;
  }

  /** Restarts the finished run in place, from its failed steps by default. */
  async restart(
    options: {
      from?: RestartFromInput;
      params?: Record<string, JsonValue>;
      requestId?: string;
    } = {},
  ): Promise<RunMessage> {
    const from = options.from ?? "failed";
    const { run } = await this.raw.runs.restartRun({
      runId: this.id,
      from:
        from === "failed"
          ? RestartFrom.RESTART_FROM_FAILED
          : from === "beginning"
            ? RestartFrom.RESTART_FROM_BEGINNING
            : RestartFrom.RESTART_FROM_STEP,
      stepId: typeof from === "object" ? from.step : "",
      params: { ...options.params },
      requestId: options.requestId ?? crypto.randomUUID(),
    });
    if (run) this.info = run;
    return this.info;
  }
}

function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
