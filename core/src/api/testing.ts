// Test support for anything served by core: starts a real server on 127.0.0.1:0 with a fresh
// temporary data directory, and hands out authenticated gRPC clients and an HTTP helper.
// Used by the api tests and by service tests elsewhere (`startTestKaon({services: [...]})`).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  type Client,
  createChannel,
  createClient,
  Metadata,
  type TsProtoServiceDefinition,
} from "nice-grpc";
import { resolveServerConfig, type ServerConfig } from "../config.js";
import { createLogger, type Logger } from "../log.js";
import { createKaon, type Kaon } from "../server-main.js";
import type { ServiceRegistration } from "./registration.js";

export interface TestKaon {
  kaon: Kaon;
  dataDir: string;
  adminToken: string;
  /** Every log line the server wrote, parsed. */
  logs: Record<string, unknown>[];
  /** A gRPC client; `token: null` sends no credentials. Default: the admin token. */
  client<D extends TsProtoServiceDefinition>(definition: D, token?: string | null): Client<D>;
  /** fetch() against the HTTP gateway; adds the admin token unless `token` says otherwise. */
  http(path: string, init?: RequestInit & { token?: string | null }): Promise<Response>;
  /** Shuts the server down and deletes the data directory. */
  stop(): Promise<void>;
}

export interface StartTestKaonOptions {
  services?: readonly ServiceRegistration[];
  config?: Partial<ServerConfig>;
  log?: Logger;
}

export async function startTestKaon(options: StartTestKaonOptions = {}): Promise<TestKaon> {
  const dataDir = mkdtempSync(join(tmpdir(), "kaon-test-"));
  const config = {
    ...resolveServerConfig(
      { dataDir, grpcListen: "127.0.0.1:0", httpListen: "127.0.0.1:0", shutdownGraceMs: 5_000 },
      {},
    ),
    ...options.config,
  };
  const logs: Record<string, unknown>[] = [];
  const log =
    options.log ??
    createLogger({
      level: "debug",
      write: (line) => logs.push(JSON.parse(line) as Record<string, unknown>),
    });
  const kaon = await createKaon({ config, log, services: options.services ?? [] });
  const adminToken = kaon.authFiles.adminToken;
  const channel = createChannel(kaon.grpcAddress);
  return {
    kaon,
    dataDir,
    adminToken,
    logs,
    client(definition, token = adminToken) {
      const metadata = Metadata();
      if (token !== null) metadata.set("authorization", `Bearer ${token}`);
      return createClient(definition, channel, { "*": { metadata } });
    },
    http(path, init = {}) {
      const { token = adminToken, ...rest } = init;
      const headers = new Headers(rest.headers);
      if (token !== null) headers.set("authorization", `Bearer ${token}`);
      return fetch(`http://${kaon.httpAddress}${path}`, { ...rest, headers });
    },
    async stop() {
      channel.close();
      await kaon.shutdown("test finished");
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
