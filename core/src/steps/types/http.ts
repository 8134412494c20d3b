// `http`: calls a service from core (trigger a deployment, notify, fetch a small document).
// An allow-list of hosts in server settings (httpAllowedHosts) guards against server-side
// request forgery; loopback is always allowed. The host is checked at deploy time when the
// URL spells it literally, and again at run time after templates are rendered and on every
// redirect; only http(s) redirects are followed, and credential headers (authorization,
// cookie) are dropped when a redirect leaves the origin. The list matches names, not the
// addresses they resolve to: an allowed name is trusted to resolve where its owner points
// it, so list only names you control (and never "*" on a host that can reach a cloud
// metadata service). The response body is bounded (64 KiB) before it becomes an output.
import { isIP } from "node:net";
import { ConfigCheck, show } from "../config-check.js";
import type { EndResult, InlineStepType, JsonValue, StepTypeSettings } from "../step-type.js";
import {
  configScope,
  renderConfigMap,
  renderConfigString,
  StepConfigError,
} from "../templating.js";

export const MAX_HTTP_BODY_OUTPUT_BYTES = 64 * 1024;
export const DEFAULT_HTTP_TIMEOUT_SECONDS = 30;
export const MAX_HTTP_TIMEOUT_SECONDS = 3600;
const MAX_REDIRECTS = 5;
const METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/**
 * True for names and addresses that stay on this machine. Only the name `localhost` itself:
 * the resolver does not map `*.localhost` to loopback everywhere (glibc asks DNS for it), so
 * `x.localhost` could resolve anywhere.
 */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[|\]$/g, "");
  if (h === "localhost") return true;
  if (isIP(h) === 4) return h.startsWith("127.");
  if (isIP(h) === 6) return h === "::1" || h === "0:0:0:0:0:0:0:1";
  return false;
}

/**
 * Whether `url` may be called under `allowed`: loopback always; otherwise an entry must match
 * the host (`example.com`), host and port (`example.com:8443`), a subdomain wildcard
 * (`*.example.com`), or be `*` (anything).
 */
export function isHostAllowed(url: URL, allowed: readonly string[]): boolean {
  const host = url.hostname.toLowerCase().replace(/^\[|\]$/g, "");
  if (isLoopbackHost(host)) return true;
  const port = url.port || (url.protocol === "https:" ? "443" : "80");
  for (const raw of allowed) {
    const entry = raw.trim().toLowerCase();
    if (entry === "*") return true;
    const [entryHost, entryPort] = splitHostPort(entry);
    if (entryPort !== undefined && entryPort !== port) continue;
    if (entryHost.startsWith("*.")) {
      if (host.endsWith(entryHost.slice(1))) return true;
    } else if (entryHost === host) return true;
  }
  return false;
}

function splitHostPort(entry: string): [string, string | undefined] {
  const bracket = /^\[([^\]]+)\](?::(\d+))?$/.exec(entry);
  if (bracket) return [bracket[1]!, bracket[2]];
  const parts = entry.split(":");
  if (parts.length === 2 && /^\d+$/.test(parts[1]!)) return [parts[0]!, parts[1]];
  return [entry, undefined];
}

function allowHint(url: URL): string {
  const entry = url.port ? `"${url.hostname}" or "${url.host}"` : `"${url.hostname}"`;
  return `add ${entry} to the server's httpAllowedHosts`;
}

/** The part of a URL template before the path, if it contains no placeholder. */
function literalOrigin(url: string): string | undefined {
  const m = /^([a-zA-Z][a-zA-Z0-9+.-]*:\/\/[^/?#]*)/.exec(url);
  if (!m || m[1]!.includes("${")) return undefined;
  return m[1];
}

function statusExpected(status: number, expected: readonly number[] | undefined): boolean {
  return expected && expected.length > 0
    ? expected.includes(status)
    : status >= 200 && status < 300;
}

/** Renders `${...}` in every string of a JSON body. */
function renderBody(
  body: JsonValue,
  scope: ReturnType<typeof configScope>,
  field: string,
): JsonValue {
  if (typeof body === "string") return renderConfigString(body, scope, field);
  if (Array.isArray(body)) return body.map((b, i) => renderBody(b, scope, `${field}[${i}]`));
  if (body && typeof body === "object") {
    const out: Record<string, JsonValue> = {};
    for (const [k, v] of Object.entries(body)) out[k] = renderBody(v, scope, `${field}.${k}`);
    return out;
  }
  return body;
}

async function readBounded(
  response: Response,
  limit: number,
): Promise<{ text: string; truncated: boolean }> {
  if (!response.body) return { text: "", truncated: false };
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  let truncated = false;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (size + value.byteLength > limit) {
      chunks.push(value.subarray(0, limit - size));
      size = limit;
      truncated = true;
      await reader.cancel().catch(() => {});
      break;
    }
    chunks.push(value);
    size += value.byteLength;
  }
  return { text: Buffer.concat(chunks).toString("utf8"), truncated };
}

export const httpStepType: InlineStepType = {
  kind: "inline",
  name: "http",
  description: "Calls an HTTP service; status and (bounded) body become outputs.",
  validate(config, path, settings: StepTypeSettings) {
    const check = new ConfigCheck(config, path, "http").allowKeys([
      "url",
      "method",
      "headers",
      "body",
      "expect_status",
      "timeout_seconds",
    ]);
    const url = check.string("url", { required: true, template: true });
    if (url !== undefined) {
      const origin = literalOrigin(url);
      if (origin === undefined && !url.includes("${")) {
        check.add(
          check.field("url"),
          `${show(url)} is not an absolute http(s) URL`,
          'e.g. "https://api.example.com/v1/deploy"',
        );
      } else if (origin !== undefined) {
        let parsed: URL | undefined;
        try {
          parsed = new URL(origin);
        } catch {
          check.add(check.field("url"), `${show(url)} is not a valid URL`);
        }
        if (parsed && parsed.protocol !== "http:" && parsed.protocol !== "https:") {
          check.add(
            check.field("url"),
            `scheme '${parsed.protocol}' is not allowed; use http or https`,
          );
        } else if (parsed && !isHostAllowed(parsed, settings.httpAllowedHosts)) {
          check.add(
            check.field("url"),
            `host '${parsed.host}' is not in the server's http allow-list`,
            allowHint(parsed),
          );
        }
      }
    }
    const method = check.string("method");
    if (method !== undefined && !METHODS.includes(method.toUpperCase())) {
      check.add(
        check.field("method"),
        `unknown HTTP method ${show(method)}`,
        `use one of ${METHODS.join(", ")}`,
      );
    }
    const headers = check.stringMap("headers", {
      keyPattern: HEADER_NAME,
      keyRule: "an HTTP header name (token characters)",
      template: true,
    });
    void headers;
    if (check.has("body") && ["GET", "HEAD"].includes((method ?? "GET").toUpperCase())) {
      check.add(
        check.field("body"),
        `a ${(method ?? "GET").toUpperCase()} request cannot have a body`,
        'set "method": "POST"',
      );
    }
    const body = check.value("body");
    if (typeof body === "string") check.template(body, check.field("body"));
    const expect = check.value("expect_status");
    if (expect !== undefined) {
      if (!Array.isArray(expect) || expect.length === 0) {
        check.add(
          check.field("expect_status"),
          `'expect_status' must be a non-empty list of status codes, got ${show(expect)}`,
        );
      } else {
        expect.forEach((s, i) => {
          if (typeof s !== "number" || !Number.isInteger(s) || s < 100 || s > 599) {
            check.add(
              `${check.field("expect_status")}[${i}]`,
              `${show(s)} is not an HTTP status code (100-599)`,
            );
          }
        });
      }
    }
    check.number("timeout_seconds", { min: 0.001, max: MAX_HTTP_TIMEOUT_SECONDS });
    return check.violations;
  },
  async run(ctx, _report, signal): Promise<EndResult> {
    const config = ctx.config;
    const scope = configScope(ctx);
    const method = (typeof config.method === "string" ? config.method : "GET").toUpperCase();
    const headers = renderConfigMap(
      config.headers as Record<string, string> | undefined,
      scope,
      "headers",
    );
    let body: string | undefined;
    if (config.body !== undefined && config.body !== null) {
      const rendered = renderBody(config.body, scope, "body");
      const hasContentType = Object.keys(headers).some((h) => h.toLowerCase() === "content-type");
      if (typeof rendered === "string") {
        body = rendered;
        if (!hasContentType) headers["content-type"] = "text/plain; charset=utf-8";
      } else {
        body = JSON.stringify(rendered);
        if (!hasContentType) headers["content-type"] = "application/json";
      }
    }
    const timeoutMs = Math.round(
      ((config.timeout_seconds as number | undefined) ?? DEFAULT_HTTP_TIMEOUT_SECONDS) * 1000,
    );
    const abort = AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]);

    let url = parseUrl(renderConfigString(config.url as string, scope, "url"));
    let response: Response | undefined;
    let currentMethod = method;
    let currentBody = body;
    for (let hop = 0; ; hop++) {
      if (!isHostAllowed(url, ctx.settings.httpAllowedHosts)) {
        throw new StepConfigError(
          `${hop === 0 ? "" : "redirect to "}host '${url.host}' is not in the server's http allow-list; ${allowHint(url)}`,
        );
      }
      try {
        const init: RequestInit = {
          method: currentMethod,
          headers,
          redirect: "manual",
          signal: abort,
        };
        if (currentBody !== undefined) init.body = currentBody;
        response = await fetch(url, init);
      } catch (e) {
        if (signal.aborted)
          throw new Error(
            `http ${method} ${url.href} interrupted: ${String(signal.reason ?? "aborted")}`,
          );
        if (abort.aborted)
          throw new Error(`http ${method} ${url.href} timed out after ${timeoutMs / 1000}s`);
        const cause = (e as { cause?: { message?: string } }).cause?.message;
        throw new Error(
          `http ${method} ${url.href} failed: ${(e as Error).message}${cause ? ` (${cause})` : ""}`,
        );
      }
      const location = response.headers.get("location");
      if (response.status >= 300 && response.status < 400 && location && hop < MAX_REDIRECTS) {
        await response.body?.cancel().catch(() => {});
        const next = redirectTarget(location, url);
        // As fetch does: credentials never follow a redirect to another origin.
        if (next.origin !== url.origin) dropHeaders(headers, CREDENTIAL_HEADERS);
        url = next;
        if (
          response.status === 303 ||
          ((response.status === 301 || response.status === 302) && currentMethod === "POST")
        ) {
          currentMethod = "GET";
          currentBody = undefined;
          dropHeaders(headers, BODY_HEADERS);
        }
        continue;
      }
      break;
    }
    const { text, truncated } = await readBounded(response, MAX_HTTP_BODY_OUTPUT_BYTES).catch(
      (e: Error) => {
        throw new Error(`http ${method} ${url.href}: reading the response failed: ${e.message}`);
      },
    );
    const outputs: Record<string, JsonValue> = {
      status: response.status,
      body: text,
      body_truncated: truncated,
    };
    const contentType = response.headers.get("content-type") ?? "";
    if (!truncated && /\bjson\b/i.test(contentType) && text.trim() !== "") {
      try {
        outputs.json = JSON.parse(text) as JsonValue;
      } catch {
        // Not JSON after all: the body output still has it.
      }
    }
    const expected = config.expect_status as number[] | undefined;
    if (!statusExpected(response.status, expected)) {
      const excerpt = text.length > 200 ? `${text.slice(0, 200)}…` : text;
      return {
        succeeded: false,
        message: `http ${method} ${url.href} returned ${response.status}, expected ${expected?.join(", ") ?? "2xx"}${excerpt ? `: ${excerpt}` : ""}`,
        outputs,
      };
    }
    return { succeeded: true, outputs };
  },
};

/** Headers that carry credentials: dropped when a redirect leaves the origin. */
const CREDENTIAL_HEADERS = ["authorization", "proxy-authorization", "cookie"];
/** Headers that describe a body: dropped when a redirect turns the request into a GET. */
const BODY_HEADERS = ["content-type", "content-length", "content-encoding", "content-language"];

function dropHeaders(headers: Record<string, string>, names: readonly string[]): void {
  for (const key of Object.keys(headers)) {
    if (names.includes(key.toLowerCase())) delete headers[key];
  }
}

/** The URL a redirect's `location` points to; only http(s) may be followed. */
function redirectTarget(location: string, from: URL): URL {
  let next: URL;
  try {
    next = new URL(location, from);
  } catch {
    throw new Error(`http ${from.href} redirected to ${JSON.stringify(location)}, not a valid URL`);
  }
  if (next.protocol !== "http:" && next.protocol !== "https:") {
    throw new StepConfigError(
      `http ${from.href} redirected to ${next.href}: scheme '${next.protocol}' is not allowed; only http and https redirects are followed`,
    );
  }
  return next;
}

function parseUrl(text: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new StepConfigError(`url ${JSON.stringify(text)} is not a valid absolute URL`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new StepConfigError(
      `url ${JSON.stringify(text)}: scheme '${url.protocol}' is not allowed; use http or https`,
    );
  }
  return url;
}
