import { mkdtempSync, rmSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import {
  ConfigError,
  parseDb,
  parseListenAddress,
  readServerInfo,
  removeServerInfo,
  resolveDataDir,
  resolveServerConfig,
  writeServerInfo,
} from "./config.js";

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describe("server config", () => {
  it("has documented defaults", () => {
    const config = resolveServerConfig({}, {});
    expect(config.dataDir).toBe(join(homedir(), ".kaon"));
    expect(config.grpcListen).toEqual({ host: "127.0.0.1", port: 7070 });
    expect(config.httpListen).toEqual({ host: "127.0.0.1", port: 7080 });
    expect(config.db).toEqual({ kind: "sqlite", file: join(homedir(), ".kaon", "kaon.db") });
    expect(config.tls).toBeUndefined();
    expect(config.maxHttpBodyBytes).toBe(4 * 1024 * 1024);
  });

  it("takes flags over environment over defaults", () => {
    const env = {
      KAON_HOME: "/env/home",
      KAON_GRPC_LISTEN: "0.0.0.0:9000",
      KAON_DB: "postgres://u@h/db",
    };
    const fromEnv = resolveServerConfig({}, env);
    expect(fromEnv.dataDir).toBe("/env/home");
    expect(fromEnv.grpcListen).toEqual({ host: "0.0.0.0", port: 9000 });
    expect(fromEnv.db).toEqual({ kind: "postgres", url: "postgres://u@h/db" });
    const fromFlags = resolveServerConfig(
      { dataDir: "rel/dir", grpcListen: "[::1]:0", db: "x.db" },
      env,
    );
    expect(fromFlags.dataDir).toBe(resolve("rel/dir"));
    expect(fromFlags.grpcListen).toEqual({ host: "::1", port: 0 });
    expect(fromFlags.db).toEqual({ kind: "sqlite", file: resolve("x.db") });
    expect(resolveDataDir("~/k", {})).toBe(join(homedir(), "k"));
    expect(resolveDataDir("~", {})).toBe(homedir());
  });

  it("names the setting, the value and the fix for bad values", () => {
    expect(() => parseListenAddress("localhost", "--http-listen")).toThrow(
      "--http-listen: 'localhost' is not a listen address; use host:port",
    );
    expect(() => parseListenAddress("h:70000", "--grpc-listen")).toThrow(ConfigError);
    expect(() => parseDb("mysql://h/db", "/d")).toThrow(
      /--db: 'mysql:\/\/h\/db' is not a supported database; use postgres:\/\//,
    );
    expect(parseDb("sqlite::memory:", "/d")).toEqual({ kind: "sqlite", file: ":memory:" });
    expect(() => resolveServerConfig({ tlsCert: "c.pem" }, {})).toThrow(
      /both a certificate and a key/,
    );
  });

  it("writes, reads and removes server.json", () => {
    const dir = mkdtempSync(join(tmpdir(), "kaon-config-"));
    dirs.push(dir);
    expect(readServerInfo(dir)).toBeUndefined();
    writeServerInfo(dir, { grpc: "127.0.0.1:1", http: "127.0.0.1:2", pid: 42 });
    expect(readServerInfo(dir)).toEqual({ grpc: "127.0.0.1:1", http: "127.0.0.1:2", pid: 42 });
    removeServerInfo(dir, 43); // another server's file stays
    expect(readServerInfo(dir)?.pid).toBe(42);
    removeServerInfo(dir, 42);
    expect(readServerInfo(dir)).toBeUndefined();
  });
});
