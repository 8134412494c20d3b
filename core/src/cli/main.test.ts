// The `kaon` CLI: the real `kaon server` process (spawned through tsx from the sources), server
// discovery and token lookup, and the messages and exit codes people and scripts see.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { ClusterServiceDefinition } from "@kaon/proto";
import { afterEach, describe, expect, it } from "vitest";
import { writeServerInfo } from "../config.js";
import {
  CliContext,
  EXIT,
  formatTable,
  isLocalAddress,
  resolveTarget,
  resolveToken,
} from "./client.js";
import { main } from "./main.js";

const repoRoot = resolve(fileURLToPath(import.meta.url), "../../../..");
const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0)) cleanup();
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "kaon-cli-"));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Runs the CLI from its sources; workspace packages resolve to sources too (no build needed). */
function spawnKaon(args: string[]): ChildProcess {
  const dir = tempDir();
  const tsconfig = join(dir, "tsconfig.json");
  writeFileSync(
    tsconfig,
    JSON.stringify({
      extends: join(repoRoot, "tsconfig.base.json"),
      compilerOptions: { paths: { "@kaon/proto": [join(repoRoot, "proto/ts/index.ts")] } },
    }),
  );
  const child = spawn(
    process.execPath,
    ["--import", "tsx", join(repoRoot, "core/src/cli/main.ts"), ...args],
    {
      cwd: repoRoot,
      env: { ...process.env, TSX_TSCONFIG_PATH: tsconfig, KAON_LOG_LEVEL: "info" },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  cleanups.push(() => child.kill("SIGKILL"));
  return child;
}

/** Resolves with the first JSON log line matching `msg`, or rejects when the process exits. */
function waitForLog(
  child: ChildProcess,
  msg: string,
  seen: string[],
): Promise<Record<string, unknown>> {
  return new Promise((resolvePromise, reject) => {
    const lines = createInterface({ input: child.stderr! });
    lines.on("line", (line) => {
      seen.push(line);
      try {
        const record = JSON.parse(line) as Record<string, unknown>;
        if (record.msg === msg) resolvePromise(record);
      } catch {
        // not a log line
      }
    });
    child.once("exit", (code) =>
      reject(new Error(`kaon exited (${code}) before "${msg}":\n${seen.join("\n")}`)),
    );
  });
}

describe("kaon server", () => {
  it("starts, writes server.json and the token, serves, and stops cleanly on SIGTERM", async () => {
    const dataDir = tempDir();
    const child = spawnKaon([
      "server",
      "--data-dir",
      dataDir,
      "--grpc-listen",
      "127.0.0.1:0",
      "--http-listen",
      "127.0.0.1:0",
    ]);
    const seen: string[] = [];
    const ready = await waitForLog(child, "kaon server listening", seen);
    const info = JSON.parse(readFileSync(join(dataDir, "server.json"), "utf8"));
    expect(info).toMatchObject({ grpc: ready.grpc, http: ready.http, pid: child.pid });
    expect(info.grpc).toMatch(/^127\.0\.0\.1:\d+$/);
    const token = readFileSync(join(dataDir, "admin.token"), "utf8").trim();

    const health = await fetch(`http://${info.http}/healthz`);
    expect(health.status).toBe(200);
    const unauthenticated = await fetch(`http://${info.http}/v1/ClusterService/ListAgents`, {
      method: "POST",
    });
    expect(unauthenticated.status).toBe(401);
    expect((await errorBody(unauthenticated)).message).toContain(join(dataDir, "admin.token"));
    const authenticated = await fetch(`http://${info.http}/v1/NoService/Nothing`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}` },
    });
    expect(authenticated.status).toBe(404);

    // The CLI client finds the server and its token through the data directory alone.
    expect(resolveTarget({ dataDir }, {})).toMatchObject({ address: info.grpc });
    expect(resolveToken({ dataDir }, {})?.token).toBe(token);

    const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
    child.kill("SIGTERM");
    expect(await exited).toBe(0);
    expect(seen.some((l) => l.includes('"msg":"stopped"'))).toBe(true);
    expect(() => readFileSync(join(dataDir, "server.json"))).toThrow(/ENOENT/);
  });

  it("rejects a bad listen address with the flag, the value and the fix (exit 2)", async () => {
    const err: string[] = [];
    const code = await main(
      ["node", "kaon", "server", "--data-dir", tempDir(), "--grpc-listen", "localhost"],
      {
        err: (t) => err.push(t),
      },
    );
    expect(code).toBe(EXIT.usage);
    expect(err.join("")).toContain(
      "--grpc-listen: 'localhost' is not a listen address; use host:port",
    );
  });
});

describe("CLI plumbing", () => {
  it("exits 2 on an unknown command", async () => {
    const err: string[] = [];
    const code = await main(["node", "kaon", "nonsense"], {
      err: (t) => err.push(t),
      out: () => {},
    });
    expect(code).toBe(EXIT.usage);
    expect(err.join("")).toContain("unknown command 'nonsense'");
  });

  it("tells which address it tried and how to start a server when none answers", async () => {
    const port = await freePort();
    const dataDir = tempDir();
    writeServerInfo(dataDir, { grpc: `127.0.0.1:${port}`, http: "127.0.0.1:1", pid: 1 });
    const ctx = new CliContext(
      () => ({ dataDir }),
      () => {},
      () => {},
      {},
    );
    try {
      const error = await ctx
        .client(ClusterServiceDefinition)
        .listAgents({})
        .catch((e) => e);
      const { message, exitCode } = ctx.describeError(error);
      expect(exitCode).toBe(EXIT.unreachable);
      expect(message).toContain(`cannot reach a kaon server at 127.0.0.1:${port}`);
      expect(message).toContain(join(dataDir, "server.json"));
      expect(message).toContain("kaon server");
    } finally {
      ctx.close();
    }
  });

  it("prefers --address/--token, then KAON_ADDRESS/KAON_TOKEN, then the data directory", () => {
    const dataDir = tempDir();
    writeServerInfo(dataDir, { grpc: "127.0.0.1:1111", http: "127.0.0.1:2222", pid: 1 });
    writeFileSync(join(dataDir, "admin.token"), "file-token\n");
    const env = { KAON_ADDRESS: "10.0.0.1:7070", KAON_TOKEN: "env-token" };
    expect(resolveTarget({ dataDir, address: "h:1" }, env).address).toBe("h:1");
    expect(resolveTarget({ dataDir }, env)).toEqual({
      address: "10.0.0.1:7070",
      source: "KAON_ADDRESS",
    });
    expect(resolveTarget({ dataDir }, {}).address).toBe("127.0.0.1:1111");
    expect(resolveTarget({ dataDir: tempDir() }, {}).address).toBe("127.0.0.1:7070");
    expect(resolveToken({ dataDir, token: "t" }, env)?.token).toBe("t");
    expect(resolveToken({ dataDir }, env)).toEqual({ token: "env-token", source: "KAON_TOKEN" });
    expect(resolveToken({ dataDir }, {})).toEqual({
      token: "file-token",
      source: join(dataDir, "admin.token"),
    });
  });

  it("sends the data directory's admin token to local servers only", () => {
    const dataDir = tempDir();
    writeFileSync(join(dataDir, "admin.token"), "file-token\n");
    for (const local of [
      "127.0.0.1:7070",
      "localhost:1",
      "[::1]:7070",
      "0.0.0.0:7070",
      "unix:/x",
    ]) {
      expect(resolveToken({ dataDir, address: local }, {})?.token, local).toBe("file-token");
    }
    for (const remote of ["10.0.0.1:7070", "kaon.example.com:443", "[2001:db8::1]:7070"]) {
      expect(resolveToken({ dataDir, address: remote }, {}), remote).toBeUndefined();
      expect(resolveToken({ dataDir }, { KAON_ADDRESS: remote }), remote).toBeUndefined();
      // An explicit token still goes wherever the user sends it.
      expect(resolveToken({ dataDir, address: remote }, { KAON_TOKEN: "t" })?.token).toBe("t");
    }
    expect(isLocalAddress("127.0.0.1")).toBe(true);
    expect(isLocalAddress("128.0.0.1:7070")).toBe(false);
    expect(isLocalAddress("localhost.evil.com:7070")).toBe(false);
  });

  it("prints tables for people", () => {
    const table = formatTable(
      [
        { id: "train", status: "RUNNING", at: new Date("2024-01-01T00:00:00.123Z") },
        { id: "validate-model", status: "", at: undefined },
      ],
      [
        { header: "step", value: (r) => r.id },
        { header: "status", value: (r) => r.status },
        { header: "at", value: (r) => r.at },
      ],
    );
    expect(table).toBe(
      [
        "STEP            STATUS   AT",
        "train           RUNNING  2024-01-01T00:00:00Z",
        "validate-model",
      ].join("\n"),
    );
  });
});

function freePort(): Promise<number> {
  return new Promise((resolvePort) => {
    const server = createServer().listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => resolvePort(typeof address === "object" && address ? address.port : 0));
    });
  });
}

/** The JSON error body of a failed gateway call. */
async function errorBody(response: Response): Promise<{ code: string; message: string }> {
  return (await response.json()) as { code: string; message: string };
}
