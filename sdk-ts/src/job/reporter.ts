// Batches in-job reports into JobService.Report calls. Reports queue in memory and go out as
// one batch when the queue is large, after a short interval, on `flush()`, or when the process
// is about to exit (beforeExit). One batch is in flight at a time so the server applies them in
// order; each batch carries a sequence number that is reused on every retry, so a batch the
// server already applied (whose acknowledgement was lost) is acknowledged and ignored, never
// applied twice (core keeps a per-attempt high-water mark). Numbering starts at GetContext's
// `appliedSequence + 1`, asked when the first batch goes out, so reporters of one attempt that
// run one after another (`kaon job output` twice, an SDK in a child process) continue the count
// instead of being ignored; the Python SDK does the same. While core is briefly away
// (UNAVAILABLE, deadline) a call is retried with backoff for up to `retryForMs`. An item core
// refuses (over a per-step limit, a bad value) is dropped — flush() rejects with why — and the
// rest of its batch is sent again.
import type { JobServiceDefinition, ReportItem } from "@kaon/proto";
import type { Client } from "nice-grpc";
import {
  ConnectionError,
  DeadlineExceededError,
  InvalidArgumentError,
  KaonError,
} from "../errors.js";

/** Tuning of a Reporter; the defaults suit a job that reports a few times a second or less. */
export interface ReporterOptions {
  /** Items per batch; a full queue is sent at once. Default 500. */
  maxBatchItems?: number;
  /** Longest time an item waits before its batch is sent, in ms. Default 200. */
  flushIntervalMs?: number;
  /** How long a batch is retried while core is unreachable, in ms. Default 120 000. */
  retryForMs?: number;
  /** First retry backoff in ms (doubling up to 2 s). Default 50. */
  initialBackoffMs?: number;
  /**
   * Sequence number of the first batch, then one more per batch. Default: the attempt's
   * `appliedSequence + 1` from JobService.GetContext, asked before the first batch.
   */
  sequenceStart?: number;
  /** Called after each failed delivery attempt that will be retried. */
  onRetry?: (error: unknown, sequence: number, attempt: number) => void;
}

/** Sends queued report items to JobService.Report. */
export class Reporter {
  private queue: ReportItem[] = [];
  private nextSequence: number | undefined;
  private chain: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;
  private failure: unknown;
  private readonly maxBatchItems: number;
  private readonly flushIntervalMs: number;
  private readonly retryForMs: number;
  private readonly initialBackoffMs: number;
  private readonly onRetry: ReporterOptions["onRetry"];
  /** Highest sequence the server acknowledged. */
  appliedSequence = 0;

  constructor(
    private readonly jobs: Client<typeof JobServiceDefinition>,
    options: ReporterOptions = {},
  ) {
    this.maxBatchItems = Math.max(1, options.maxBatchItems ?? 500);
    this.flushIntervalMs = options.flushIntervalMs ?? 200;
    this.retryForMs = options.retryForMs ?? 120_000;
    this.initialBackoffMs = options.initialBackoffMs ?? 50;
    this.nextSequence = options.sequenceStart;
    this.onRetry = options.onRetry;
  }

  /** Items queued and not yet acknowledged by a sent batch. */
  get pending(): number {
    return this.queue.length;
  }

  /** Queues an item; it goes out with the next batch. */
  add(item: ReportItem): void {
    this.queue.push(item);
    if (this.queue.length >= this.maxBatchItems) {
      this.sendQueued();
    } else if (this.timer === undefined) {
      this.timer = setTimeout(() => this.sendQueued(), this.flushIntervalMs);
      // A pending interval must not keep a finished job alive; beforeExit flushes instead.
      this.timer.unref();
    }
  }

  /**
   * Sends everything queued so far and resolves once the server acknowledged it. Rejects with
   * the first failure since the last flush (e.g. a report the server refused).
   */
  async flush(): Promise<void> {
    this.sendQueued();
    await this.chain;
    const failure = this.failure;
    this.failure = undefined;
    if (failure !== undefined) throw failure;
  }

  /** True when nothing is queued or in flight. */
  get idle(): boolean {
    return this.queue.length === 0 && this.timer === undefined && !this.busy;
  }
  private busy = false;

  private sendQueued(): void {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    while (this.queue.length > 0) {
      const items = this.queue.splice(0, this.maxBatchItems);
      this.chain = this.chain.then(() => this.send(items));
    }
  }

  /** The next batch number; the first time, where core's count for this attempt stands. */
  private async takeSequence(items: ReportItem[]): Promise<number> {
    if (this.nextSequence === undefined) {
      const context = await this.retrying(
        () => this.jobs.getContext({}),
        0,
        `${items.length} report(s) were not delivered (the job context could not be read)`,
      );
      this.nextSequence ??= Number(context.appliedSequence) + 1;
    }
    return this.nextSequence;
  }

  private async send(batch: ReportItem[]): Promise<void> {
    this.busy = true;
    let items = batch;
    try {
      while (items.length > 0) {
        const sequence = await this.takeSequence(items);
        let response: { appliedSequence: number };
        try {
          response = await this.retrying(
            () => this.jobs.report({ sequence, items }),
            sequence,
            `${items.length} report(s) of batch ${sequence} were not delivered`,
          );
        } catch (err) {
          // Core applies none of a batch it refuses and names the item (`items[i]`): drop it
          // (flush() reports the refusal) and send the rest under the same sequence number.
          const bad = offendingItem(err, items.length);
          if (bad === undefined) throw err;
          this.failure ??= err;
          items = [...items.slice(0, bad), ...items.slice(bad + 1)];
          continue;
        }
        const applied = Number(response.appliedSequence);
        this.appliedSequence = Math.max(this.appliedSequence, applied);
        // Another reporter of this attempt may have moved the mark past this batch.
        this.nextSequence = Math.max(sequence, applied) + 1;
        return;
      }
    } catch (err) {
      this.failure ??= err;
    } finally {
      this.busy = false;
    }
  }

  /** Calls `call`, retrying while core is unreachable (UNAVAILABLE, deadline) for retryForMs. */
  private async retrying<T>(call: () => Promise<T>, sequence: number, lost: string): Promise<T> {
    const started = Date.now();
    let backoff = this.initialBackoffMs;
    for (let attempt = 1; ; attempt++) {
      try {
        return await call();
      } catch (err) {
        const transient = err instanceof ConnectionError || err instanceof DeadlineExceededError;
        if (!transient) throw err;
        if (Date.now() - started >= this.retryForMs) {
          throw new KaonError(
            `kaon core was unreachable for ${Math.round(this.retryForMs / 1000)} s; ${lost}`,
            { code: "UNAVAILABLE", cause: err },
          );
        }
        this.onRetry?.(err, sequence, attempt);
        await new Promise((resolve) => setTimeout(resolve, backoff));
        backoff = Math.min(backoff * 2, 2_000);
      }
    }
  }
}

/** The index core named in `items[i]` of a refused batch, if it is one of this batch's. */
function offendingItem(err: unknown, count: number): number | undefined {
  if (!(err instanceof InvalidArgumentError)) return undefined;
  for (const v of err.violations) {
    const m = /^items\[(\d+)\]/.exec(v.field);
    if (m && Number(m[1]) < count) return Number(m[1]);
  }
  return undefined;
}
