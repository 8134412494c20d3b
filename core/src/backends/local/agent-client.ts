// The client side of the local agent protocol, and its only description.
//
// The agent (core/agent, Go) launches and owns the jobs of the local backend so that core
// never forks (a fork blocks Node's event loop for a time that grows with the heap). Core
// talks to it over a Unix socket `<dir>/agent.sock` with newline-delimited JSON objects,
// one per line, both ways. Requests are pipelined: nothing waits for a reply except `list`,
// `ping` and `bench`, which carry an `id` echoed in their reply. Protocol version 2 (the
// agent says its version in `hello`; core refuses an agent that speaks another one).
//
// Requests (core → agent):
//   {"type":"env","envId":0,"env":{"K":"V"}}
//       Defines environment base `envId` (0-63) on this connection, replacing an earlier one
//       with that id. Bases belong to the connection: a new one starts with none.
//   {"type":"launch","taskId":"r1.train.1","argv":["python","x.py"] | "shell":"echo hi",
//    "envId":0?,"env":{"K":"V"},"cwd":"/abs","stdout":"/abs/out","stderr":"/abs/err","meta":{...}}
//       Starts a job: own process group, stdin /dev/null, stdout/stderr appended to the
//       files (created with their directories; "" or absent: discarded; the same path for
//       both: one file), cwd created if missing. The job's environment is exactly base
//       `envId` (if given) with `env` over it, plus the agent's PATH when neither has one;
//       argv[0] is resolved on that PATH. (The backend sends what all tasks of a run share
//       once as a base, see env-bases.ts.) shell runs `/bin/sh -c script`. taskId: 1-200 of
//       [A-Za-z0-9._-]. `meta` is opaque, stored and returned by list. Launching a taskId
//       the agent already knows runs nothing and re-reports the task's state (started or its
//       terminal event).
//   {"type":"kill","taskId":"…","signal":"SIGTERM","graceMs":10000}
//       Signals the task's process group (default SIGTERM), then SIGKILL after graceMs
//       (default 10000). When a killed task's leader ends, the rest of its group gets
//       SIGKILL. The task ends with `exited` carrying `killed:true`.
//   {"type":"ack","taskId":"…"}      core recorded the terminal status durably: forget it.
//   {"type":"list","id":1}           every task the agent holds (running or not yet acked).
//   {"type":"ping","id":2}           liveness; the reply carries the agent's pid.
//   {"type":"bench","id":3,"n":2000,"concurrency":8,"argv":["true"]}
//       Spawns n processes straight from the agent (started and reaped like launches, but
//       no files, records or events) and replies with the elapsed time: the spawn floor for
//       benchmarks.
//
// Events and replies (agent → core):
//   {"type":"hello","pid":123,"version":2}                      first line on every connection
//   {"type":"started","taskId":"…","pid":456,"ts":1700000000000}
//   {"type":"exited","taskId":"…","exitCode":3 | "signal":"SIGTERM","killed":true?,
//    "lost":true?,"message":"…"?,"ts":…}
//       lost: the agent restarted while the task ran, so its exit status is unknown.
//   {"type":"error","taskId":"…","message":"command not found: foo","ts":…}
//       the task could not be started; terminal.
//   {"type":"unknown","taskId":"…"}    a kill for a task the agent does not hold.
//   {"type":"list","id":1,"tasks":[{taskId,state:"launching"|"running"|"exited"|"error",
//    pid?,startedAt?,endedAt?,exitCode?,signal?,lost?,killed?,message?,meta?,…}]}
//   {"type":"pong","id":2,"pid":123,"version":2}
//   {"type":"bench","id":3,"n":2000,"elapsedMs":1234.5,"failures":0}
//   {"type":"invalid","message":"…"}    a request the agent could not understand (or a bad env).
//   {"type":"superseded","message":"…"} another client connected; this connection closes.
//
// Batching: requests that arrive together are handled together — the records of a burst of
// launches are written in one journal write and their `started` events leave in one socket
// write; exits reaped together likewise. Core writes the requests of one tick in one write.
//
// Durability: the agent appends each task's record to `<dir>/tasks.journal` (JSON lines,
// group-written, compacted by rewrite + rename) when the job starts and again with its
// terminal status, in both cases BEFORE it reports `started`/`exited`/`error`; `ack` appends
// a deletion. So a core that was away learns every end it missed from `list`, and an agent
// that was killed re-adopts the jobs still alive (same pid and /proc start time; polled,
// since they are no longer its children) and reports the others `lost`. One client is
// active at a time (the latest to connect); events are not queued for absent clients — the
// task table is the truth and `list` reads it.
//
// Lifetime: an agent that owns nothing — no client connected, no task running, no terminal
// status unacknowledged — for its `--idle-exit` grace (default 30 s, 0: never) removes its
// socket, pid, lock and empty journal files and exits. A client that connects while it does
// is still served (the agent takes it from the listen backlog and stays); one that finds the
// socket gone or refused starts a new agent.

import net from "node:net";
import { EnvBases } from "./env-bases.js";

/** The protocol this core speaks; the agent says its own in `hello`. */
export const AGENT_PROTOCOL_VERSION = 2;

export interface AgentTaskRecord {
  taskId: string;
  state: "launching" | "running" | "exited" | "error";
  pid?: number;
  startedAt?: number;
  endedAt?: number;
  exitCode?: number;
  signal?: string;
  lost?: boolean;
  killed?: boolean;
  message?: string;
  meta?: unknown;
}

export type AgentEvent =
  | { type: "hello"; pid: number; version: number }
  | { type: "started"; taskId: string; pid: number; ts: number }
  | {
      type: "exited";
      taskId: string;
      exitCode?: number;
      signal?: string;
      killed?: boolean;
      lost?: boolean;
      message?: string;
      ts: number;
    }
  | { type: "error"; taskId: string; message: string; ts?: number }
  | { type: "unknown"; taskId: string; ts?: number }
  | { type: "invalid"; taskId?: string; message: string; id?: number }
  | { type: "superseded"; message: string };

export interface LaunchRequest {
  taskId: string;
  argv?: string[];
  shell?: string;
  env: Record<string, string>;
  cwd: string;
  stdout: string;
  stderr: string;
  meta?: unknown;
}

interface Reply {
  type: string;
  id?: number;
  [key: string]: unknown;
}

/** One connection to the agent. Writes are batched per tick; replies are matched by id. */
export class AgentConnection {
  private buffered = "";
  private nextId = 1;
  private readonly pending = new Map<
    number,
    { resolve: (r: Reply) => void; reject: (e: Error) => void }
  >();
  private corked = false;
  private closed = false;
  private readonly envBases = new EnvBases();
  /** Requests written so far; lets callers tell which launches a `list` reply covers. */
  sent = 0;
  /** The agent's first line: its pid and protocol version. Rejects if the connection closes first. */
  readonly hello: Promise<{ pid: number; version: number }>;
  private gotHello: ((hello: { pid: number; version: number }) => void) | undefined;

  private constructor(
    private readonly socket: net.Socket,
    private readonly onEvent: (event: AgentEvent) => void,
    private readonly onClose: (error?: Error) => void,
  ) {
    let noHello: (err: Error) => void = () => {};
    this.hello = new Promise((resolve, reject) => {
      this.gotHello = resolve;
      noHello = reject;
    });
    this.hello.catch(() => {}); // a caller that never asks is not an unhandled rejection
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => this.receive(chunk));
    socket.on("error", () => {}); // 'close' follows and reports
    socket.on("close", () => {
      this.closed = true;
      const err = new Error("connection to the local agent closed");
      noHello(err);
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
      this.onClose();
    });
  }

  static connect(
    socketPath: string,
    onEvent: (event: AgentEvent) => void,
    onClose: (error?: Error) => void,
  ): Promise<AgentConnection> {
    return new Promise((resolve, reject) => {
      const socket = net.createConnection(socketPath);
      const fail = (err: Error) => reject(err);
      socket.once("error", fail);
      socket.once("connect", () => {
        socket.off("error", fail);
        resolve(new AgentConnection(socket, onEvent, onClose));
      });
    });
  }

  get isOpen(): boolean {
    return !this.closed;
  }

  /** Queues one request; requests of the same tick leave in one write. */
  send(request: object): void {
    if (this.closed) return;
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(() => {
        this.corked = false;
        this.socket.uncork();
      });
    }
    this.sent++;
    this.socket.write(`${JSON.stringify(request)}\n`);
  }

  /** Queues a launch, its environment encoded against this connection's bases. */
  launch(request: LaunchRequest): void {
    const { env, ...rest } = request;
    const encoded = this.envBases.encode(env);
    if (encoded.define) this.send({ type: "env", ...encoded.define });
    this.send({ type: "launch", ...rest, envId: encoded.envId, env: encoded.env });
  }

  /** Sends a request that has a reply (list, ping, bench) and waits for it. */
  request<T extends Reply>(request: { type: string; [key: string]: unknown }): Promise<T> {
    if (this.closed) return Promise.reject(new Error("connection to the local agent closed"));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (r: Reply) => void, reject });
      this.send({ ...request, id });
    });
  }

  /**
   * Closes gracefully: what was sent (e.g. the acks just before a stop) reaches the agent
   * before it sees the end. Resolves once the socket is closed (destroyed after 1 s at most).
   */
  close(): Promise<void> {
    if (this.closed || this.socket.destroyed) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.socket.destroy(), 1000);
      timer.unref();
      this.socket.once("close", () => {
        clearTimeout(timer);
        resolve();
      });
      this.socket.end();
    });
  }

  private receive(chunk: string): void {
    this.buffered += chunk;
    let start = 0;
    for (;;) {
      const nl = this.buffered.indexOf("\n", start);
      if (nl < 0) break;
      const line = this.buffered.slice(start, nl);
      start = nl + 1;
      if (line.length > 0) this.dispatch(line);
    }
    this.buffered = start === 0 ? this.buffered : this.buffered.slice(start);
  }

  private dispatch(line: string): void {
    let message: Reply;
    try {
      message = JSON.parse(line) as Reply;
    } catch {
      return; // the agent writes whole JSON lines; a torn one means the socket is dying
    }
    if (message.type === "hello" && this.gotHello) {
      this.gotHello({ pid: Number(message.pid), version: Number(message.version) });
      this.gotHello = undefined;
    }
    if (typeof message.id === "number") {
      const waiter = this.pending.get(message.id);
      if (waiter) {
        this.pending.delete(message.id);
        if (message.type === "invalid") waiter.reject(new Error(String(message.message)));
        else waiter.resolve(message);
        return;
      }
    }
    this.onEvent(message as unknown as AgentEvent);
  }
}
