// A failed process is only as debuggable as its end message. Spark and container runtimes bury
// the cause in a long stderr (JVM logs, runtime chatter), so the spark and container types read
// the tail of the attempt's stderr file (and stdout, where some runtimes send errors) and pick the lines that say what went wrong, for the
// step's end message. The file is the one the engine gives the backend: `<workDir>/stderr`.
import { closeSync, openSync, readSync, statSync } from "node:fs";
import { join } from "node:path";

/** Names of the attempt's output files inside its working directory (engine convention). */
export const STDERR_FILE = "stderr";
export const STDOUT_FILE = "stdout";

const TAIL_BYTES = 64 * 1024;

/** The last `maxBytes` of a file as text; "" when it cannot be read. */
export function readTail(path: string, maxBytes = TAIL_BYTES): string {
  let fd: number | undefined;
  try {
    const size = statSync(path).size;
    const length = Math.min(size, maxBytes);
    const buf = Buffer.alloc(length);
    fd = openSync(path, "r");
    readSync(fd, buf, 0, length, size - length);
    return buf.toString("utf8");
  } catch {
    return "";
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** The tail of the attempt's stderr (or stdout). */
export function attemptOutputTail(
  workDir: string,
  file: typeof STDERR_FILE | typeof STDOUT_FILE = STDERR_FILE,
  maxBytes = TAIL_BYTES,
): string {
  return readTail(join(workDir, file), maxBytes);
}

/** The last `n` non-blank lines of `text`, each cut to `width` characters. */
export function lastLines(text: string, n: number, width = 300): string[] {
  return text
    .split(/\r?\n/)
    .filter((l) => l.trim() !== "")
    .slice(-n)
    .map((l) => (l.length > width ? `${l.slice(0, width)}…` : l));
}
