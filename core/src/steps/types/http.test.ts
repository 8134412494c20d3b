// biome-ignore-all lint/suspicious/noTemplateCurlyInString: step configs hold kaon templates, whose syntax is ${...}
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defaultStepTypeSettings } from "../registry.js";
import type { JsonObject } from "../step-type.js";
import { makeStepContext, recordingReporter } from "../testing.js";
import { httpStepType, isHostAllowed, MAX_HTTP_BODY_OUTPUT_BYTES } from "./http.js";

const settings = defaultStepTypeSettings();
const v = (config: unknown, s = settings) =>
  httpStepType
    .validate(config as JsonObject, "steps[3].config", s)
    .map((x) => `${x.field}: ${x.description}${x.hint ? ` (${x.hint})` : ""}`);

describe("http: validation", () => {
  it("accepts a full config", () => {
    expect(
      v({
        url: "http://127.0.0.1:8080/deploy/${params.model}",
        method: "POST",
        headers: { Authorization: "Bearer ${params.token}", "X-Run": "${run.id}" },
        body: { model: "${params.model}", n: 1 },
        expect_status: [200, 202],
        timeout_seconds: 5,
      }),
    ).toEqual([]);
    expect(v({ url: "http://localhost/x" })).toEqual([]);
    expect(v({ url: "https://${params.host}/x" })).toEqual([]); // host decided at run time
  });

  it("rejects hosts outside the allow-list when the URL names them", () => {
    expect(v({ url: "https://api.example.com/v1" })).toEqual([
      "steps[3].config.url: host 'api.example.com' is not in the server's http allow-list (add \"api.example.com\" to the server's httpAllowedHosts)",
    ]);
    const allowing = { ...settings, httpAllowedHosts: ["*.example.com"] };
    expect(v({ url: "https://api.example.com/v1" }, allowing)).toEqual([]);
    expect(v({ url: "http://169.254.169.254/latest/meta-data" }, allowing)[0]).toContain(
      "host '169.254.169.254' is not in the server's http allow-list",
    );
  });

  it("checks each field", () => {
    expect(v({})).toEqual(["steps[3].config.url: http config needs 'url'"]);
    expect(v({ url: "example.com/x" })[0]).toContain("is not an absolute http(s) URL");
    expect(v({ url: "ftp://localhost/x" })[0]).toContain("scheme 'ftp:' is not allowed");
    expect(v({ url: "http://localhost", method: "FETCH" })).toEqual([
      'steps[3].config.method: unknown HTTP method "FETCH" (use one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS)',
    ]);
    expect(v({ url: "http://localhost", body: "x" })).toEqual([
      'steps[3].config.body: a GET request cannot have a body (set "method": "POST")',
    ]);
    expect(v({ url: "http://localhost", headers: { "Bad Header": "x", Ok: 1 } })).toEqual([
      "steps[3].config.headers.Bad Header: 'Bad Header' is not a valid name: an HTTP header name (token characters)",
      "steps[3].config.headers.Ok: must be a string, got a number 1",
    ]);
    expect(v({ url: "http://localhost", expect_status: [200, 999, "201"] })).toEqual([
      "steps[3].config.expect_status[1]: 999 is not an HTTP status code (100-599)",
      'steps[3].config.expect_status[2]: "201" is not an HTTP status code (100-599)',
    ]);
    expect(v({ url: "http://localhost", expect_status: 200 })[0]).toContain(
      "must be a non-empty list",
    );
    expect(v({ url: "http://localhost", timeout_seconds: 0 })[0]).toContain(
      "'timeout_seconds' is 0",
    );
    expect(v({ url: "http://localhost", method: "POST", body: "${parms.x}" })[0]).toContain(
      "steps[3].config.body: bad template",
    );
  });

  it("matches allow-list entries by host, port and wildcard", () => {
    const u = (s: string) => new URL(s);
    expect(isHostAllowed(u("http://127.0.0.5:9/"), [])).toBe(true);
    expect(isHostAllowed(u("http://[::1]:9/"), [])).toBe(true);
    expect(isHostAllowed(u("http://localhost:9/"), [])).toBe(true);
    // Not every resolver maps *.localhost to loopback; DNS may answer for it.
    expect(isHostAllowed(u("http://metadata.localhost/"), [])).toBe(false);
    expect(isHostAllowed(u("http://a.example.com/"), ["example.com"])).toBe(false);
    expect(isHostAllowed(u("http://example.com/"), ["example.com"])).toBe(true);
    expect(isHostAllowed(u("https://example.com/"), ["example.com:8443"])).toBe(false);
    expect(isHostAllowed(u("https://example.com:8443/"), ["example.com:8443"])).toBe(true);
    expect(isHostAllowed(u("https://evil-example.com/"), ["*.example.com"])).toBe(false);
    expect(isHostAllowed(u("https://anything.test/"), ["*"])).toBe(true);
  });
});

describe("http: run against a local server", () => {
  let server: Server;
  let base: string;
  const seen: Array<{
    method: string;
    url: string;
    headers: IncomingMessage["headers"];
    body: string;
  }> = [];
  const hanging: ServerResponse[] = [];
  let other: Server;
  let otherBase: string;
  const otherSeen: IncomingMessage["headers"][] = [];

  beforeAll(async () => {
    server = createServer((req, res) => {
      let body = "";
      req.on("data", (d: Buffer) => {
        body += d.toString();
      });
      req.on("end", () => {
        seen.push({ method: req.method ?? "", url: req.url ?? "", headers: req.headers, body });
        const path = req.url ?? "";
        if (path.startsWith("/json")) {
          res.writeHead(200, { "content-type": "application/json" });
          res.end(JSON.stringify({ ok: true, echo: body ? JSON.parse(body) : null }));
        } else if (path === "/fail") {
          res.writeHead(503, { "content-type": "text/plain" });
          res.end("busy, try later");
        } else if (path === "/big") {
          res.writeHead(200, { "content-type": "application/json" });
          res.end(`"${"x".repeat(MAX_HTTP_BODY_OUTPUT_BYTES * 2)}"`);
        } else if (path === "/redirect-local") {
          res.writeHead(302, { location: "/json?from=redirect" });
          res.end();
        } else if (path === "/redirect-away") {
          res.writeHead(302, { location: "http://metadata.internal/secret" });
          res.end();
        } else if (path === "/redirect-other-origin") {
          res.writeHead(307, { location: `${otherBase}/seen` });
          res.end();
        } else if (path === "/redirect-same-origin") {
          res.writeHead(307, { location: "/json?same=1" });
          res.end();
        } else if (path === "/redirect-file") {
          res.writeHead(302, { location: "file:///etc/passwd" });
          res.end();
        } else if (path === "/hang") {
          hanging.push(res);
        } else {
          res.writeHead(404);
          res.end("not here");
        }
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    // Another origin (same host, other port) that records what reaches it.
    other = createServer((req, res) => {
      otherSeen.push(req.headers);
      res.writeHead(200, { "content-type": "application/json" });
      res.end("{}");
    });
    await new Promise<void>((r) => other.listen(0, "127.0.0.1", r));
    otherBase = `http://127.0.0.1:${(other.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    other.closeAllConnections();
    await new Promise((r) => other.close(r));
    for (const r of hanging) r.destroy();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  const run = (
    config: JsonObject,
    params: Record<string, string | number> = {},
    signal = new AbortController().signal,
  ) => httpStepType.run(makeStepContext({ config, params }), recordingReporter().reporter, signal);

  it("GETs JSON and returns status, body and json", async () => {
    const r = await run({ url: `${base}/json` });
    expect(r).toEqual({
      succeeded: true,
      outputs: {
        status: 200,
        body: '{"ok":true,"echo":null}',
        body_truncated: false,
        json: { ok: true, echo: null },
      },
    });
  });

  it("POSTs a templated JSON body with templated headers", async () => {
    const r = await run(
      {
        url: `${base}/json/\${params.model}`,
        method: "post",
        headers: { "X-Run": "${run.id}/${params.model}" },
        body: { model: "${params.model}", epochs: 3 },
      },
      { model: "gbm" },
    );
    expect(r.succeeded).toBe(true);
    expect(r.outputs?.json).toEqual({ ok: true, echo: { model: "gbm", epochs: 3 } });
    const req = seen.at(-1)!;
    expect(req.method).toBe("POST");
    expect(req.url).toBe("/json/gbm");
    expect(req.headers["x-run"]).toBe("run-1/gbm");
    expect(req.headers["content-type"]).toBe("application/json");
  });

  it("fails on an unexpected status, keeping the outputs", async () => {
    const r = await run({ url: `${base}/fail` });
    expect(r.succeeded).toBe(false);
    expect(r.message).toBe(`http GET ${base}/fail returned 503, expected 2xx: busy, try later`);
    expect(r.outputs).toMatchObject({ status: 503, body: "busy, try later" });
    expect((await run({ url: `${base}/fail`, expect_status: [503] })).succeeded).toBe(true);
    expect((await run({ url: `${base}/nope`, expect_status: [200, 204] })).message).toContain(
      "returned 404, expected 200, 204",
    );
  });

  it("bounds the body output", async () => {
    const r = await run({ url: `${base}/big` });
    expect(r.succeeded).toBe(true);
    expect(String(r.outputs?.body).length).toBe(MAX_HTTP_BODY_OUTPUT_BYTES);
    expect(r.outputs?.body_truncated).toBe(true);
    expect(r.outputs?.json).toBeUndefined();
  });

  it("follows redirects but checks every host", async () => {
    const r = await run({ url: `${base}/redirect-local` });
    expect(r.outputs?.status).toBe(200);
    expect(seen.at(-1)?.url).toBe("/json?from=redirect");
    await expect(run({ url: `${base}/redirect-away` })).rejects.toThrow(
      "redirect to host 'metadata.internal' is not in the server's http allow-list",
    );
  });

  it("does not send credentials to another origin on a redirect", async () => {
    const headers = { Authorization: "Bearer secret", Cookie: "s=1", "X-Trace": "t1" };
    const r = await run({ url: `${base}/redirect-other-origin`, headers });
    expect(r.outputs?.status).toBe(200);
    expect(otherSeen).toHaveLength(1);
    expect(otherSeen[0]?.authorization).toBeUndefined();
    expect(otherSeen[0]?.cookie).toBeUndefined();
    expect(otherSeen[0]?.["x-trace"]).toBe("t1");
    // Within the origin they stay.
    await run({ url: `${base}/redirect-same-origin`, headers });
    expect(seen.at(-1)?.url).toBe("/json?same=1");
    expect(seen.at(-1)?.headers.authorization).toBe("Bearer secret");
  });

  it("follows only http(s) redirects", async () => {
    const ctx = makeStepContext({
      config: { url: `${base}/redirect-file` },
      settings: { ...settings, httpAllowedHosts: ["*"] },
    });
    await expect(
      httpStepType.run(ctx, recordingReporter().reporter, new AbortController().signal),
    ).rejects.toThrow("redirected to file:///etc/passwd: scheme 'file:' is not allowed");
  });

  it("checks the rendered host at run time", async () => {
    await expect(
      run({ url: "http://${params.host}/x" }, { host: "169.254.169.254" }),
    ).rejects.toThrow("host '169.254.169.254' is not in the server's http allow-list");
  });

  it("times out, and stops when aborted", async () => {
    await expect(run({ url: `${base}/hang`, timeout_seconds: 0.2 })).rejects.toThrow(
      `http GET ${base}/hang timed out after 0.2s`,
    );
    const ac = new AbortController();
    const pending = run({ url: `${base}/hang` }, {}, ac.signal);
    ac.abort("stopped by user");
    await expect(pending).rejects.toThrow("interrupted: stopped by user");
  });

  it("reports connection failures", async () => {
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, "127.0.0.1", r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((r) => closed.close(r));
    await expect(run({ url: `http://127.0.0.1:${port}/` })).rejects.toThrow(
      /failed: fetch failed \(.*ECONNREFUSED/,
    );
  });
});
