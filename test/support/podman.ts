// Podman for tests of the container step: whether it can run containers on this machine (with
// the reason when not, for a printed skip), and the test image, built once from
// test/fixtures/images/busybox/Containerfile without any registry and cached by a tag that
// hashes its inputs. scripts/setup-podman.sh installs and configures podman.
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const IMAGE_DIR = fileURLToPath(new URL("../fixtures/images/busybox/", import.meta.url));
const BUSYBOX = "/bin/busybox";

function run(
  program: string,
  args: string[],
  timeoutMs = 120_000,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      program,
      args,
      { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
        resolve({
          code,
          stdout: String(stdout),
          stderr: String(stderr || (err && !stderr ? err.message : "")),
        });
      },
    );
  });
}

let availability: Promise<{ ok: true } | { ok: false; reason: string }> | undefined;

/** Whether podman can build and run the test image here; the reason (with its error) when not. */
export function podmanAvailability(): Promise<{ ok: true } | { ok: false; reason: string }> {
  availability ??= (async () => {
    const version = await run("podman", ["--version"], 20_000);
    if (version.code !== 0) {
      return {
        ok: false,
        reason: "podman is not installed; run scripts/setup-podman.sh (as root)",
      };
    }
    if (!existsSync(BUSYBOX)) {
      return {
        ok: false,
        reason: `${BUSYBOX} is missing (Debian package busybox-static); run scripts/setup-podman.sh`,
      };
    }
    try {
      const image = await ensureTestImage();
      const probe = await run(
        "podman",
        ["run", "--rm", "--init", "--network", "host", image, "/bin/sh", "-c", "echo ok"],
        60_000,
      );
      if (probe.code !== 0 || probe.stdout.trim() !== "ok") {
        return {
          ok: false,
          reason: `podman cannot run a container: ${probe.stderr.trim() || probe.stdout.trim()} (scripts/setup-podman.sh configures runc and default_ulimits)`,
        };
      }
    } catch (e) {
      return { ok: false, reason: (e as Error).message };
    }
    return { ok: true };
  })();
  return availability;
}

let image: Promise<string> | undefined;

/** Builds (once, cached by a tag that hashes the Containerfile and busybox) the test image. */
export function ensureTestImage(): Promise<string> {
  image ??= (async () => {
    const containerfile = readFileSync(join(IMAGE_DIR, "Containerfile"));
    const hash = createHash("sha256")
      .update(containerfile)
      .update(readFileSync(BUSYBOX))
      .digest("hex")
      .slice(0, 16);
    const tag = `localhost/kaon-test-busybox:${hash}`;
    if ((await run("podman", ["image", "exists", tag], 20_000)).code === 0) return tag;
    const context = mkdtempSync(join(tmpdir(), "kaon-image-"));
    try {
      copyFileSync(join(IMAGE_DIR, "Containerfile"), join(context, "Containerfile"));
      copyFileSync(BUSYBOX, join(context, "busybox"));
      const built = await run("podman", ["build", "--pull=never", "-q", "-t", tag, context]);
      if (built.code !== 0)
        throw new Error(`podman build of the test image failed: ${built.stderr.trim()}`);
    } finally {
      rmSync(context, { recursive: true, force: true });
    }
    return tag;
  })();
  return image;
}

/** Names of the containers (running or not) whose name is `name`. */
export async function containersNamed(name: string): Promise<string[]> {
  const r = await run(
    "podman",
    ["ps", "-a", "--filter", `name=^${name}$`, "--format", "{{.Names}}"],
    20_000,
  );
  return r.stdout.split("\n").filter((l) => l.trim() !== "");
}
