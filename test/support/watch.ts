// Waiting on a run through WatchRun, shared by the test harnesses that start a whole kaon
// (test/steps, test/cluster): stream the run's events until a condition holds, with a deadline
// and an error that shows the last events — never a sleep.
import { type Run, type RunEvent, type RunServiceDefinition, RunStatus } from "@kaon/proto";
import type { Client } from "nice-grpc";

type Runs = Client<typeof RunServiceDefinition>;

/** The run's own end (any status but QUEUED and RUNNING). */
export function isRunEnd(e: RunEvent): boolean {
  return (
    e.path === "" &&
    e.kind?.$case === "runStatus" &&
    e.kind.value !== RunStatus.RUN_STATUS_QUEUED &&
    e.kind.value !== RunStatus.RUN_STATUS_RUNNING
  );
}

function describeEvents(events: readonly RunEvent[]): string {
  return events
    .slice(-12)
    .map((e) => `${e.path || "run"}:${e.kind?.$case}=${JSON.stringify(e.kind?.value)}`)
    .join(", ");
}

/** Streams the run's events until `done(events)` holds; throws past `timeoutMs`. */
export async function watchUntil(
  runs: Runs,
  runId: string,
  done: (events: RunEvent[]) => boolean,
  timeoutMs = 30_000,
): Promise<RunEvent[]> {
  const events: RunEvent[] = [];
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), timeoutMs);
  try {
    for await (const msg of runs.watchRun({ runId, afterSeq: 0 }, { signal: ac.signal })) {
      events.push(...msg.events);
      if (done(events)) break;
    }
  } catch (err) {
    if (!done(events)) {
      throw new Error(
        `run ${runId}: condition not reached within ${timeoutMs} ms (${events.length} events: ${describeEvents(events)}): ${String(err)}`,
      );
    }
  } finally {
    clearTimeout(timer);
    ac.abort();
  }
  if (!done(events)) {
    throw new Error(
      `run ${runId}: the watch ended before the condition held (${describeEvents(events)})`,
    );
  }
  return events;
}

/** Waits for the run to end; returns it and all its events. */
export async function finishRun(
  runs: Runs,
  runId: string,
  timeoutMs = 30_000,
): Promise<{ run: Run; events: RunEvent[] }> {
  const events = await watchUntil(runs, runId, (evs) => evs.some(isRunEnd), timeoutMs);
  const run = (await runs.getRun({ runId })).run as Run;
  return { run, events };
}
