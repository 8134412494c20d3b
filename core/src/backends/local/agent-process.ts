// Finds the local agent of a data directory, or starts it. This holds the only spawn core
// ever does: once per agent lifetime, detached (own session) so that the agent and its jobs
// outlive core. A second starter racing us loses the agent's lock and names the winner.

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
  try {
    return await connect();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== "ENOENT" && code !== "ECONNREFUSED") throw err;
  }

  await startAgent(opts);
  // The agent listens before it says ready; when another starter won the race, its agent
  // may still be loading records, so give it until the deadline.
  const deadline = Date.now() + opts.timeoutMs;
  for (let delay = 5; ; delay = Math.min(delay * 2, 200)) {
    try {
      return await connect();
    } catch (err) {
      if (Date.now() + delay > deadline) {
        throw new Error(`cannot connect to the local agent at ${socketPath}: ${String(err)}`);
      }
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}

async function startAgent(opts: AgentStartOptions): Promise<void> {
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
    child = spawn(opts.binary, ["--dir", opts.agentDir], {
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
  if (!/^(ready|running) \d+$/.test(line)) {
    throw new Error(`unexpected first line from the local agent: ${JSON.stringify(line)}`);
  }
}

function lastLine(file: string): string {
  try {
    const lines = fs.readFileSync(file, "utf8").trimEnd().split("\n");
    return lines[lines.length - 1] ?? "";
  } catch {
    return "(no log)";
  }
}
