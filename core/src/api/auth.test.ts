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
