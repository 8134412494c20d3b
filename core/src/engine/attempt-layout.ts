// Where an attempt's files live: `<data-dir>/runs/<run>/<attempt name>/`, one flat directory
// per attempt directly under the run's directory (docs/decisions/0004-attempt-layout.md).
// It is the attempt's working directory (unless the step sets its own cwd) and holds its
// `stdout`, `stderr`, the `output` file behind $KAON_OUTPUT and whatever files its step type
// writes. The location is a pure function of (run, step path, attempt), so the engine, TailLogs
// and recovery find it without storing it. Flat, because on the root disks kaon runs on a new
// directory costs 0.2–0.5 ms of CPU (ext4 spreads directories over block groups) and the old
// nested layout (`runs/<run>/fe[17]/t/1`) created up to three of them per task.
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { join } from "node:path";

/** Names of the attempt's files inside its directory. */
export const ATTEMPT_STDOUT = "stdout";
export const ATTEMPT_STDERR = "stderr";
export const ATTEMPT_OUTPUT = "output";

/** The most a flat name may take; file names may have 255 bytes, paths stay readable. */
const MAX_NAME = 200;

/**
 * The attempt's directory name: the step path flattened like task ids (`/` → `.`, `[17]` →
 * `.i17`, `@3` → `.l3`) plus `.<attempt>`, e.g. `fe.i17.t.1`. Step ids match
 * `[A-Za-z][A-Za-z0-9_-]*` and never hold a `.`, and an index or loop iteration always sits
 * between a container's id and its child's, so distinct paths give distinct names; the run's
 * own entries (`params/`) never end in `.<digits>`. A name longer than 200 characters becomes
 * `h<sha256 of the path, 32 hex>.<attempt>`.
 */
export function attemptDirName(path: string, attempt: number): string {
  const flat = path
    .replace(/\//g, ".")
    .replace(/\[(\d+)\]/g, ".i$1")
    .replace(/@(\d+)/g, ".l$1");
  const name = `${flat}.${attempt}`;
  if (name.length <= MAX_NAME) return name;
  return `h${createHash("sha256").update(path).digest("hex").slice(0, 32)}.${attempt}`;
}

/** `<dataDir>/runs/<runId>`: created once per run, the parent of its attempt directories. */
export function runDir(dataDir: string, runId: string): string {
  return join(dataDir, "runs", runId);
}

/** `<dataDir>/runs/<runId>/<attemptDirName>`. */
export function attemptDir(dataDir: string, runId: string, path: string, attempt: number): string {
  return join(dataDir, "runs", runId, attemptDirName(path, attempt));
}

/**
 * The file of one of an attempt's log streams, for readers (TailLogs). Attempts written
 * before the flat layout (`runs/<run>/<path>/<attempt>/`) are still found there.
 */
export function attemptLogFile(
  dataDir: string,
  runId: string,
  path: string,
  attempt: number,
  stream: typeof ATTEMPT_STDOUT | typeof ATTEMPT_STDERR,
): string {
  const file = join(attemptDir(dataDir, runId, path, attempt), stream);
  if (existsSync(file)) return file;
  const legacy = join(dataDir, "runs", runId, path, String(attempt), stream);
  return existsSync(legacy) ? legacy : file;
}
