import { chmodSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Status } from "nice-grpc";
import { afterEach, describe, expect, it } from "vitest";
import { createLogger } from "../log.js";
import { Authenticator, loadOrCreateAuthFiles, StepTokens } from "./auth.js";

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "kaon-auth-"));
  dirs.push(dir);
  return dir;
}

describe("auth files", () => {
  it("are created once with mode 0600 and reused afterwards", () => {
    const dir = tempDir();
    const first = loadOrCreateAuthFiles(dir);
    expect(statSync(first.adminTokenPath).mode & 0o777).toBe(0o600);
    expect(statSync(first.secretKeyPath).mode & 0o777).toBe(0o600);
    expect(first.secret.length).toBe(32);
    expect(Buffer.from(first.adminToken, "base64url").length).toBe(32);
    const second = loadOrCreateAuthFiles(dir);
    expect(second.adminToken).toBe(first.adminToken);
    expect(second.secret.equals(first.secret)).toBe(true);
  });

  it("warns about a token file others can read", () => {
    const dir = tempDir();
    writeFileSync(join(dir, "admin.token"), `${"x".repeat(43)}\n`);
    chmodSync(join(dir, "admin.token"), 0o644);
    const lines: string[] = [];
    loadOrCreateAuthFiles(dir, createLogger({ write: (l) => lines.push(l) }));
    expect(lines.join("")).toContain("readable by other users");
  });
});

describe("Authenticator", () => {
  const stepTokens = new StepTokens(Buffer.alloc(32, 3));
  const auth = new Authenticator({
    adminToken: "admin-secret-token",
    adminTokenPath: "/d/admin.token",
    stepTokens,
  });

  it("accepts the admin token for every method", () => {
    expect(auth.authenticate("Bearer admin-secret-token", "/kaon.v1.RunService/StartRun")).toEqual({
      kind: "admin",
    });
    expect(auth.authenticate("bearer   admin-secret-token ", "/kaon.v1.JobService/Report")).toEqual(
      { kind: "admin" },
    );
  });

  it("refuses missing and wrong credentials with UNAUTHENTICATED naming the token file", () => {
    for (const header of [undefined, "", "Basic abc", "Bearer wrong"]) {
      expect(() => auth.authenticate(header, "/kaon.v1.RunService/GetRun")).toThrow(
        expect.objectContaining({
          code: Status.UNAUTHENTICATED,
          details: expect.stringContaining("/d/admin.token"),
        }),
      );
    }
  });

  it("limits step tokens to JobService", () => {
    const token = stepTokens.issue({ runId: "r", path: "a.b", attempt: 2 });
    expect(auth.authenticate(`Bearer ${token}`, "/kaon.v1.JobService/Report")).toEqual({
      kind: "step",
      runId: "r",
      path: "a.b",
      attempt: 2,
    });
    expect(() => auth.authenticate(`Bearer ${token}`, "/kaon.v1.RunService/StopRun")).toThrow(
      expect.objectContaining({ code: Status.PERMISSION_DENIED }),
    );
    expect(stepTokens.verify(`${token}x`)).toBeNull();
    expect(stepTokens.verify(token.replace("kst_", "kst_x"))).toBeNull();
  });
});

describe("step token cache", () => {
  it("remembers good signatures only, and checks liveness on every call", () => {
    let live = true;
    const tokens = new StepTokens(Buffer.alloc(32, 7), { isAttemptLive: () => live });
    const token = tokens.issue({ runId: "run-1", path: "train", attempt: 2 });
    expect(tokens.verify(token)).toEqual({ runId: "run-1", path: "train", attempt: 2 });
    // Served from the cache now; the attempt ending still revokes it at once.
    live = false;
    expect(tokens.verify(token)).toBeNull();
    live = true;
    // A forged token (same payload, wrong signature) is rejected even though its payload is cached.
    const [payload] = token.split(".");
    expect(tokens.verify(`${payload}.${"A".repeat(43)}`)).toBeNull();
    // The cached identity cannot be changed through a returned object.
    const first = tokens.decode(token) as { attempt: number };
    first.attempt = 99;
    expect(tokens.decode(token)?.attempt).toBe(2);
    // Another server's token never verifies.
    const other = new StepTokens(Buffer.alloc(32, 8)).issue({ runId: "r", path: "p", attempt: 1 });
    expect(tokens.verify(other)).toBeNull();
  });
});
