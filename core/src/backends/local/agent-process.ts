// Finds the local agent of a data directory, or starts it. This holds the only spawn core
// ever does: once per agent lifetime, detached (own session) so that the agent and its jobs
// outlive core. A second starter racing us loses the agent's lock and names the winner.
// An agent also exits by itself once it owns nothing for a while (--idle-exit): a connect
// that meets one on its way out (socket gone, or refused) starts the next one.

import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { AgentConnection, type AgentEvent } from "./agent-client.js";

/** sockaddr_un.sun_path holds 108 bytes including the terminating NUL. */
const MAX_SOCKET_PATH = 107;

const BUILD_HINT = "build it with core/scripts/build-agent.sh (needs Go >= 1.19)";

/** Where the agent binary is: KAON_AGENT_BIN, else core/dist/bin/kaon-agent. */
export function defaultAgentBinary(): string {
  const fromEnv = process.env.KAON_AGENT_BIN;
  if (fromEnv) return fromEnv;
  // This module runs from core/src/backends/local (tests, tsx) or core/dist/backends/local.
  const candidates = [
    fileURLToPath(new URL("../../../dist/bin/kaon-agent", import.meta.url)),
    fileURLToPath(new URL("../../bin/kaon-agent", import.meta.url)),
  ];
  return candidates.find((p) => fs.existsSync(p)) ?? (candidates[0] as string);
}

export function agentSocketPath(agentDir: string): string {
  return path.join(agentDir, "agent.sock");
}

export interface AgentStartOptions {
  agentDir: string;
  binary: string;
  timeoutMs: number;
  /** Passed as --idle-exit to an agent we start; undefined: the agent's default (30 s). */
  idleExitMs?: number | undefined;
  onEvent: (event: AgentEvent) => void;
  onClose: () => void;
}

/** Connects to the directory's agent, starting one first if none listens. */
export async function connectOrStartAgent(opts: AgentStartOptions): Promise<AgentConnection> {
  const socketPath = agentSocketPath(opts.agentDir);
  if (Buffer.byteLength(socketPath) > MAX_SOCKET_PATH) {
    throw new Error(
      `local agent socket path ${socketPath} is ${Buffer.byteLength(socketPath)} bytes, more ` +
        `than the ${MAX_SOCKET_PATH} a Unix socket allows: use a shorter data directory`,
    );
  }
  const connect = () => AgentConnection.connect(socketPath, opts.onEvent, opts.onClose);
  const deadline = Date.now() + opts.timeoutMs;
  /** The agent the last start named: ours ("ready") or the lock holder ("running"). */
  let named: { pid: number; ours: boolean } | undefined;
  for (let delay = 5; ; delay = Math.min(delay * 2, 200)) {
    let lastError: unknown;
    try {
      return await connect();
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== "ENOENT" && code !== "ECONNREFUSED") throw err;
      lastError = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`cannot connect to the local agent at ${socketPath}: ${String(lastError)}`);
    }
    // Nothing listens. Start an agent, unless the one a start named still lives: it is
    // loading its records (it listens before saying ready) or exiting idle (its pid file is
    // gone, so it was named as pid 0, or it ends in a moment and the next start takes over).
    if (named === undefined || !processExists(named.pid)) {
      named = await startAgent(opts);
      if (named.ours) continue; // listening already
    }
    await new Promise((r) => setTimeout(r, delay));
  }
}

function processExists(pid: number): boolean {
  if (!(pid > 0)) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

async function startAgent(opts: AgentStartOptions): Promise<{ pid: number; ours: boolean }> {
  try {
    fs.accessSync(opts.binary, fs.constants.X_OK);
  } catch {
    throw new Error(
      `the local agent binary ${opts.binary} is missing or not executable: ${BUILD_HINT}`,
    );
  }
  fs.mkdirSync(opts.agentDir, { recursive: true, mode: 0o700 });
  const logPath = path.join(opts.agentDir, "agent.log");
  const logFd = fs.openSync(logPath, "a", 0o600);
  let child: ReturnType<typeof spawn>;
  try {
    const args = ["--dir", opts.agentDir];
    if (opts.idleExitMs !== undefined) args.push("--idle-exit", `${opts.idleExitMs}ms`);
    child = spawn(opts.binary, args, {
      detached: true,
      stdio: ["ignore", "pipe", logFd],
    });
  } finally {
    fs.closeSync(logFd);
  }

  const line = await new Promise<string>((resolve, reject) => {
    let out = "";
    const done = (fn: () => void) => {
      clearTimeout(timer);
      child.stdout?.removeAllListeners("data");
      child.removeAllListeners("exit");
      fn();
    };
    const timer = setTimeout(() => {
      // Let go of the slow agent (its pipe and handle would keep core's event loop alive);
      // it is detached and exits or serves on its own.
      child.stdout?.destroy();
      child.unref();
      done(() =>
        reject(
          new Error(`the local agent did not start within ${opts.timeoutMs} ms; see ${logPath}`),
        ),
      );
    }, opts.timeoutMs);
    child.once("error", (err) => done(() => reject(err)));
    child.stdout?.setEncoding("utf8");
    child.stdout?.on("data", (chunk: string) => {
      out += chunk;
      const nl = out.indexOf("\n");
      if (nl >= 0) done(() => resolve(out.slice(0, nl)));
    });
    child.once("exit", (code, signal) =>
      done(() =>
        reject(
          new Error(
            `the local agent exited during start (${signal ?? `code ${code}`}): ${lastLine(logPath)}`,
          ),
        ),
      ),
    );
  });
  child.stdout?.destroy();
  child.unref();
  const m = /^(ready|running) (\d+)$/.exec(line);
  if (!m) {
    throw new Error(`unexpected first line from the local agent: ${JSON.stringify(line)}`);
  }
  return { pid: Number(m[2]), ours: m[1] === "ready" };
}

function lastLine(file: string): string {
  try {
    const lines = fs.readFileSync(file, "utf8").trimEnd().split("\n");
    return lines[lines.length - 1] ?? "";
  } catch {
    return "(no log)";
  }
}
