// The http step through the real server against a local node:http service (loopback is
// always allowed): templated URL, headers and JSON body reach the service, the status, body
// and parsed JSON become outputs; an unexpected status fails the step with the status and the
// body's start in the reason; a host outside the allow-list fails the step at run time (when
// the URL is templated) and is refused at deploy (when it is literal), both naming the fix.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { RunStatus, StepStatus } from "@kaon/proto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { explain, type StepsKaon, startStepsKaon } from "./support.js";

interface Seen {
  method: string;
  url: string;
  auth: string | undefined;
  contentType: string | undefined;
  body: string;
}

let k: StepsKaon;
let service: Server;
let base = "";
const seen: Seen[] = [];

beforeAll(async () => {
  service = createServer((req, res) => {
    let body = "";
    req.on("data", (c) => {
      body += String(c);
    });
    req.on("end", () => {
      seen.push({
        method: req.method ?? "",
        url: req.url ?? "",
        auth: req.headers.authorization,
        contentType: req.headers["content-type"],
        body,
      });
      if (req.url?.startsWith("/models/")) {
        res.writeHead(201, { "content-type": "application/json" });
        res.end(
          JSON.stringify({
            deployed: req.url.slice("/models/".length),
            received: JSON.parse(body || "null"),
          }),
        );
      } else if (req.url === "/busy") {
        res.writeHead(503, { "content-type": "text/plain" });
        res.end("model server is warming up");
      } else {
        res.writeHead(200, { "content-type": "text/plain" });
        res.end("pong");
      }
    });
  });
  await new Promise<void>((resolve) => service.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(service.address() as AddressInfo).port}`;
  // Only loopback may be called: the allow-list names a host that is not this machine.
  k = await startStepsKaon({ httpAllowedHosts: ["api.example.com"] }, "kaon-steps-http-");
});
afterAll(async () => {
  await k?.stop();
  await new Promise((resolve) => service?.close(resolve));
});

describe("http step", () => {
  it("calls a service: templated URL, header and JSON body; status, body and json outputs", async () => {
    await k.deploy({
      id: "http-publish",
      params: [
        { name: "base", type: "PARAM_TYPE_STRING", value: base },
        { name: "model", type: "PARAM_TYPE_STRING", value: "gbm" },
        { name: "auc", type: "PARAM_TYPE_DOUBLE", value: 0.8 },
      ],
      steps: [
        {
          id: "ping",
          type: "http",
          config: { url: "${params.base}/ping" },
          next: [{ to: "publish" }],
        },
        {
          id: "publish",
          type: "http",
          config: {
            url: "${params.base}/models/${params.model}",
            method: "POST",
            headers: { authorization: "Bearer ${params.model}-token" },
            body: { model: "${params.model}", auc: 0.8, tags: ["a"] },
            expect_status: [200, 201],
          },
        },
      ],
    });
    const before = seen.length;
    const { run } = await k.run("http-publish", { model: "xgb" });
    expect(run.status, await explain(k, run)).toBe(RunStatus.RUN_STATUS_SUCCEEDED);
    const ping = (await k.step(run.id, "ping")).step;
    expect(ping?.outputs).toMatchObject({ status: 200, body: "pong", body_truncated: false });
    const publish = (await k.step(run.id, "publish")).step;
    expect(publish?.outputs).toMatchObject({
      status: 201,
      body_truncated: false,
      json: { deployed: "xgb", received: { model: "xgb", auc: 0.8, tags: ["a"] } },
    });
    expect(seen.slice(before)).toEqual([
      { method: "GET", url: "/ping", auth: undefined, contentType: undefined, body: "" },
      {
        method: "POST",
        url: "/models/xgb",
        auth: "Bearer xgb-token",
        contentType: "application/json",
        body: expect.any(String),
      },
    ]);
    // Canonical JSON (keys sorted by deploy), the templates rendered.
    expect(JSON.parse(seen.at(-1)?.body ?? "")).toEqual({ model: "xgb", auc: 0.8, tags: ["a"] });
  });

  it("an unexpected status fails the step with the status and the body in the reason", async () => {
    await k.deploy({
      id: "http-busy",
      steps: [{ id: "call", type: "http", config: { url: `${base}/busy` } }],
    });
    const { run } = await k.run("http-busy");
    expect(run.status).toBe(RunStatus.RUN_STATUS_FAILED);
    const call = (await k.step(run.id, "call")).step;
    expect(call?.status).toBe(StepStatus.STEP_STATUS_FAILED);
    expect(call?.reason).toContain("returned 503");
    expect(call?.reason).toContain("model server is warming up");
    // The outputs are kept for a look at what the service said.
    expect(call?.outputs).toMatchObject({ status: 503, body: "model server is warming up" });
  });

  it("a host outside the allow-list fails the step at run time with a clear message", async () => {
    await k.deploy({
      id: "http-ssrf",
      params: [{ name: "host", type: "PARAM_TYPE_STRING", value: "127.0.0.1" }],
      steps: [{ id: "call", type: "http", config: { url: "http://${params.host}:9/metadata" } }],
    });
    const before = seen.length;
    const { run } = await k.run("http-ssrf", { host: "169.254.169.254" });
    expect(run.status).toBe(RunStatus.RUN_STATUS_FAILED);
    const call = (await k.step(run.id, "call")).step;
    expect(call?.status).toBe(StepStatus.STEP_STATUS_FAILED);
    expect(call?.reason).toContain(
      "host '169.254.169.254:9' is not in the server's http allow-list",
    );
    expect(seen.length).toBe(before);
  });

  it("a literal host outside the allow-list is refused at deploy", async () => {
    const details = await k.deployError({
      id: "http-bad",
      steps: [{ id: "call", type: "http", config: { url: "https://evil.example.org/x" } }],
    });
    expect(details).toContain("steps[0].config.url");
    expect(details).toContain("host 'evil.example.org' is not in the server's http allow-list");
    const get = await k.deployError({
      id: "http-bad2",
      steps: [{ id: "call", type: "http", config: { url: `${base}/x`, body: "no" } }],
    });
    expect(get).toContain("steps[0].config.body");
  });
});
