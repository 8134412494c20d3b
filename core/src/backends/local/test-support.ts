// Test support for the local backend (not part of the build's public surface): a recorder
// of backend callbacks that tests wait on with deadlines, and task spec builders.

import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import {
  type BackendCallbacks,
  isTerminalTaskState,
  type Offer,
  type ResourceAmounts,
  type TaskSpec,
  type TaskStatus,
} from "../backend.js";

export class Recorder implements BackendCallbacks {
  readonly offers: Offer[] = [];
  readonly allOffers: Offer[] = [];
  readonly rescinded: string[] = [];
  readonly statuses: TaskStatus[] = [];
  private readonly waiters = new Set<() => void>();

  onOffers(offers: Offer[]): void {
    this.offers.push(...offers);
    this.allOffers.push(...offers);
    this.notify();
  }

  onRescind(offerId: string): void {
    this.rescinded.push(offerId);
    const i = this.offers.findIndex((o) => o.id === offerId);
    if (i >= 0) this.offers.splice(i, 1);
    this.notify();
  }

  onStatus(status: TaskStatus): void {
    this.statuses.push(status);
    this.notify();
  }

  /** Resolves with the first truthy value of `probe`, re-checked after every callback. */
  until<T>(probe: () => T | undefined | false, what: string, timeoutMs = 20_000): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const check = () => {
        const v = probe();
        if (v !== undefined && v !== false) {
          this.waiters.delete(check);
          clearTimeout(timer);
          resolve(v);
        }
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      this.waiters.add(check);
      check();
    });
  }

  /** Takes the outstanding offer (waiting for one). */
  async takeOffer(): Promise<Offer> {
    await this.until(() => this.offers.length > 0, "an offer");
    return this.offers.shift() as Offer;
  }

  statusesOf(taskId: string): TaskStatus[] {
    return this.statuses.filter((s) => s.taskId === taskId);
  }

  final(taskId: string, timeoutMs?: number): Promise<TaskStatus> {
    return this.until(
      () => this.statuses.find((s) => s.taskId === taskId && isTerminalTaskState(s.state)),
      `a terminal status of ${taskId}`,
      timeoutMs,
    );
  }

  state(taskId: string, state: TaskStatus["state"]): Promise<TaskStatus> {
    return this.until(
      () => this.statuses.find((s) => s.taskId === taskId && s.state === state),
      `${taskId} ${state}`,
    );
  }

  private notify(): void {
    for (const w of [...this.waiters]) w();
  }
}

/** Waits for a condition outside the backend (files, processes) with a deadline. */
export async function waitFor(
  probe: () => boolean,
  what: string,
  timeoutMs = 20_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!probe()) {
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export function tempDataDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), "kaon-local-"));
}

export const SMALL: ResourceAmounts = { cpus: 0.1, memMb: 16, gpus: 0, diskMb: 0 };

export function spec(
  dataDir: string,
  taskId: string,
  command: TaskSpec["command"],
  overrides: Partial<TaskSpec> = {},
): TaskSpec {
  const logs = path.join(dataDir, "logs");
  return {
    taskId,
    name: taskId,
    agentId: "local",
    resources: SMALL,
    command,
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin" },
    cwd: path.join(dataDir, "work"),
    stdoutPath: path.join(logs, `${taskId}.out`),
    stderrPath: path.join(logs, `${taskId}.err`),
    ...overrides,
  };
}

export const argv = (...a: string[]): TaskSpec["command"] => ({ kind: "argv", argv: a });
export const shell = (script: string): TaskSpec["command"] => ({ kind: "shell", script });

/** A job that runs until the file `release` appears in its working directory. */
export const untilReleased = shell("while [ ! -e release ]; do sleep 0.02; done");

/** Whether a process exists and is not a zombie. */
export function processAlive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

/**
 * A task's last state in the agent's journal: "running", "exited", ..., "deleted" after
 * its ack, undefined if never recorded.
 */
export function journalState(dataDir: string, taskId: string): string | undefined {
  let state: string | undefined;
  let text = "";
  try {
    text = fs.readFileSync(path.join(dataDir, "agent", "tasks.journal"), "utf8");
  } catch {
    return undefined;
  }
  for (const line of text.split("\n")) {
    if (!line) continue;
    const entry = JSON.parse(line) as { put?: { taskId: string; state: string }; del?: string };
    if (entry.put?.taskId === taskId) state = entry.put.state;
    else if (entry.del === taskId) state = "deleted";
  }
  return state;
}

/** Kills the agent of a data directory, if one runs. */
export function killAgent(dataDir: string): void {
  try {
    const pid = Number(fs.readFileSync(path.join(dataDir, "agent", "agent.pid"), "utf8").trim());
    if (pid > 0 && processAlive(pid)) process.kill(pid, "SIGKILL");
  } catch {
    // no agent
  }
}
