// Vitest global setup: gives every test run a real PostgreSQL server, so that the storage
// tests that run on SQLite run unchanged on PostgreSQL too. If KAON_TEST_PG_URL is set, that
// server is used as is (after a reachability check). Otherwise a private, throwaway cluster
// is created with Debian's server binaries (initdb + postgres from /usr/lib/postgresql/*/bin)
// in a temporary directory, on a free loopback port, with durability turned off because the
// data is disposable; it is stopped and deleted in teardown. Tests read the URL from
// process.env.KAON_TEST_PG_URL (see test/support/pg.ts), which this module sets before the
// test workers are forked, and also from `inject("kaonTestPgUrl")`.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import {
  chownSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import type { TestProject } from "vitest/node";

/** The environment variable that carries the test server's URL to test files. */
export const PG_URL_ENV = "KAON_TEST_PG_URL";
/** The database created in a private cluster, and named in KAON_TEST_PG_URL. */
export const TEST_DATABASE = "kaon_test";

declare module "vitest" {
  export interface ProvidedContext {
    kaonTestPgUrl: string;
  }
}

const CLUSTER_DIR_PREFIX = "kaon-test-pg-";
const START_DEADLINE_MS = 30_000;
const STOP_DEADLINE_MS = 10_000;

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const preset = process.env[PG_URL_ENV];
  if (preset) {
    await assertReachable(preset, `${PG_URL_ENV}=${redact(preset)}`);
    project.provide("kaonTestPgUrl", preset);
    return async () => {};
  }
  removeStaleClusters();
  const cluster = await startPrivateCluster();
  process.env[PG_URL_ENV] = cluster.url;
  project.provide("kaonTestPgUrl", cluster.url);
  return () => cluster.stop();
}

interface Cluster {
  url: string;
  stop(): Promise<void>;
}

interface OsUser {
  uid: number;
  gid: number;
}

async function startPrivateCluster(): Promise<Cluster> {
  const bin = findServerBinaries();
  const runAs = serverUser();
  const base = mkdtempSync(path.join(os.tmpdir(), CLUSTER_DIR_PREFIX));
  // The owner file lets a later run recognise this cluster as abandoned if we die uncleanly.
  writeFileSync(path.join(base, "owner.pid"), `${process.pid}\n`);
  if (runAs) chownSync(base, runAs.uid, runAs.gid);
  const dataDir = path.join(base, "data");

  const init = spawnSync(
    path.join(bin, "initdb"),
    ["-D", dataDir, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"],
    { cwd: base, encoding: "utf8", env: { ...process.env, LC_ALL: "C" }, ...(runAs ?? {}) },
  );
  if (init.status !== 0) {
    rmSync(base, { recursive: true, force: true });
    throw new Error(
      `initdb failed (exit ${init.status ?? init.signal}) for the test PostgreSQL cluster in ${dataDir}:\n` +
        `${init.stderr || init.error?.message}\nfix: run 'bash scripts/setup.sh', or set ${PG_URL_ENV} to a server you have`,
    );
  }

  let lastError = "";
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    try {
      const server = await startServer(bin, dataDir, base, port, runAs);
      const url = `postgres://postgres@127.0.0.1:${port}/${TEST_DATABASE}`;
      try {
        await createDatabase(`postgres://postgres@127.0.0.1:${port}/postgres`, TEST_DATABASE);
      } catch (err) {
        await stopServer(server);
        throw err;
      }
      return {
        url,
        async stop() {
          await stopServer(server);
          rmSync(base, { recursive: true, force: true });
        },
      };
    } catch (err) {
      lastError = (err as Error).message;
      // Another process may have taken the port between our probe and postgres' bind.
      if (!/could not bind|address already in use/i.test(lastError)) break;
    }
  }
  rmSync(base, { recursive: true, force: true });
  throw new Error(`could not start the test PostgreSQL server: ${lastError}`);
}

function startServer(
  bin: string,
  dataDir: string,
  socketDir: string,
  port: number,
  runAs: OsUser | undefined,
): Promise<ChildProcess> {
  const args = [
    "-D",
    dataDir,
    "-p",
    String(port),
    "-k",
    socketDir,
    "-c",
    "listen_addresses=127.0.0.1",
    // Disposable data: trade durability for speed.
    "-c",
    "fsync=off",
    "-c",
    "synchronous_commit=off",
    "-c",
    "full_page_writes=off",
    "-c",
    "max_connections=300",
  ];
  const child = spawn(path.join(bin, "postgres"), args, {
    cwd: socketDir,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, LC_ALL: "C" },
    ...(runAs ?? {}),
  });
  // If this process exits without running teardown, do not leave the server behind.
  const killOnExit = () => child.kill("SIGQUIT");
  process.once("exit", killOnExit);
  child.once("exit", () => process.off("exit", killOnExit));

  return new Promise((resolve, reject) => {
    const recent: string[] = [];
    let settled = false;
    const finish = (err?: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err) {
        child.kill("SIGKILL");
        reject(err);
      } else {
        resolve(child);
      }
    };
    const timer = setTimeout(
      () =>
        finish(
          new Error(
            `postgres did not accept connections within ${START_DEADLINE_MS} ms; last log lines:\n${recent.join("\n")}`,
          ),
        ),
      START_DEADLINE_MS,
    );
    // The server's log is drained for the whole run (a full pipe would block postgres); the
    // last lines are kept for error messages, and readiness is the server's own log line.
    const onLog = (chunk: Buffer) => {
      for (const line of chunk.toString("utf8").split("\n")) {
        if (!line) continue;
        recent.push(line);
        if (recent.length > 30) recent.shift();
        if (line.includes("ready to accept connections")) finish();
      }
    };
    child.stdout?.on("data", onLog);
    child.stderr?.on("data", onLog);
    child.once("error", (err) => finish(new Error(`could not run postgres: ${err.message}`)));
    child.once("exit", (code, signal) =>
      finish(
        new Error(`postgres exited (${code ?? signal}) while starting:\n${recent.join("\n")}`),
      ),
    );
  });
}

function stopServer(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill("SIGKILL"), STOP_DEADLINE_MS);
    child.once("exit", () => {
      clearTimeout(timer);
      resolve();
    });
    // SIGINT is PostgreSQL's "fast" shutdown: it disconnects clients instead of waiting.
    child.kill("SIGINT");
  });
}

async function createDatabase(adminUrl: string, name: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    await client.query(`CREATE DATABASE "${name}"`);
  } finally {
    await client.end();
  }
}

async function assertReachable(url: string, what: string): Promise<void> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
  try {
    await client.connect();
    await client.query("select 1");
  } catch (err) {
    throw new Error(
      `the PostgreSQL server named by ${what} is not reachable: ${(err as Error).message}\n` +
        `fix: start it, or unset ${PG_URL_ENV} to let the tests start a private one`,
    );
  } finally {
    await client.end().catch(() => {});
  }
}

/** The newest PostgreSQL server bin directory (KAON_TEST_PG_BIN overrides). */
function findServerBinaries(): string {
  const override = process.env.KAON_TEST_PG_BIN;
  const candidates = override ? [override] : [];
  const root = "/usr/lib/postgresql";
  if (existsSync(root)) {
    const majors = readdirSync(root)
      .filter((v) => /^\d+$/.test(v))
      .sort((a, b) => Number(b) - Number(a));
    for (const v of majors) candidates.push(path.join(root, v, "bin"));
  }
  const found = candidates.find(
    (dir) => existsSync(path.join(dir, "initdb")) && existsSync(path.join(dir, "postgres")),
  );
  if (!found) {
    throw new Error(
      `PostgreSQL server binaries (initdb, postgres) not found in ${candidates.join(", ") || `${root}/*/bin`}.\n` +
        `fix: run 'bash scripts/setup.sh' (installs Debian's postgresql), set KAON_TEST_PG_BIN to their directory, ` +
        `or set ${PG_URL_ENV} to a running server`,
    );
  }
  return found;
}

/** PostgreSQL refuses to run as root: as root, run it as the `postgres` system user. */
function serverUser(): OsUser | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const line = readFileSync("/etc/passwd", "utf8")
    .split("\n")
    .find((l) => l.startsWith("postgres:"));
  const [, , uid, gid] = line?.split(":") ?? [];
  if (uid === undefined || gid === undefined) {
    throw new Error(
      "running as root, and there is no 'postgres' user to run the test PostgreSQL server as.\n" +
        "fix: run 'bash scripts/setup.sh' (Debian's postgresql package creates the user), or run the tests as a normal user",
    );
  }
  return { uid: Number(uid), gid: Number(gid) };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** Stops and deletes clusters left behind by test runs that died without teardown. */
function removeStaleClusters(): void {
  const tmp = os.tmpdir();
  for (const name of readdirSync(tmp)) {
    if (!name.startsWith(CLUSTER_DIR_PREFIX)) continue;
    const base = path.join(tmp, name);
    const owner = Number(readIfExists(path.join(base, "owner.pid")));
    if (owner > 0 && isAlive(owner)) continue;
    const postmaster = Number(
      readIfExists(path.join(base, "data", "postmaster.pid")).split("\n")[0],
    );
    if (
      postmaster > 0 &&
      isAlive(postmaster) &&
      readIfExists(`/proc/${postmaster}/cmdline`).includes(base)
    ) {
      try {
        process.kill(postmaster, "SIGQUIT");
      } catch {
        // Already gone.
      }
    }
    rmSync(base, { recursive: true, force: true });
  }
}

function readIfExists(file: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch {
    return "";
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

function redact(url: string): string {
  return url.replace(/\/\/([^:@/]+):[^@/]*@/, "//$1:***@");
}
