// Outputs written by a job to the file named by $KAON_OUTPUT: one `name=value` per line, the
// value JSON-decoded when it is valid JSON and kept as a string otherwise. This is how jobs
// in any language (bash, R, Scala) emit outputs without an SDK. A bad line never fails the
// step by itself: it becomes a warning naming the line.
import { readFileSync, statSync } from "node:fs";
import type { JsonValue } from "../steps/step-type.js";

export const OUTPUT_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** Largest encoded output value (run.proto: Output.value max 64 KiB). */
export const MAX_OUTPUT_BYTES = 64 * 1024;
/** Largest KAON_OUTPUT file read. */
export const MAX_OUTPUT_FILE_BYTES = 4 * 1024 * 1024;

export interface ParsedOutputs {
  outputs: Record<string, JsonValue>;
  problems: string[];
}

export function parseOutputText(text: string): ParsedOutputs {
  const outputs: Record<string, JsonValue> = {};
  const problems: string[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i] ?? "";
    const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
    if (line.trim() === "" || line.startsWith("#")) continue;
    const eq = line.indexOf("=");
    const shown = line.length > 120 ? `${line.slice(0, 120)}…` : line;
    if (eq <= 0) {
      problems.push(`KAON_OUTPUT line ${i + 1} ignored: expected name=value, got "${shown}"`);
      continue;
    }
    const name = line.slice(0, eq).trim();
    if (!OUTPUT_NAME.test(name)) {
      problems.push(
        `KAON_OUTPUT line ${i + 1} ignored: "${name}" is not a valid output name (letters, digits, _)`,
      );
      continue;
    }
    const valueText = line.slice(eq + 1);
    if (Buffer.byteLength(valueText) > MAX_OUTPUT_BYTES) {
      problems.push(`KAON_OUTPUT line ${i + 1} ignored: output "${name}" is larger than 64 KiB`);
      continue;
    }
    outputs[name] = decodeValue(valueText);
  }
  return { outputs, problems };
}

function decodeValue(text: string): JsonValue {
  const t = text.trim();
  if (t === "") return "";
  const c = t.charCodeAt(0);
  // Only attempt JSON for things that can start JSON; plain words stay strings.
  if (
    c === 123 ||
    c === 91 ||
    c === 34 ||
    c === 45 ||
    (c >= 48 && c <= 57) ||
    t === "true" ||
    t === "false" ||
    t === "null"
  ) {
    try {
      return JSON.parse(t) as JsonValue;
    } catch {
      return text;
    }
  }
  return text;
}

/** Reads and parses an output file; a missing file means no outputs. */
export function readOutputFile(path: string): ParsedOutputs {
  // Most jobs write no outputs: a failed read throws an error object with a stack (~10 µs),
  // a stat without throwIfNoEntry does not, and this runs once per finished task. The size is
  // checked before reading: a job's multi-GB file must not be read whole on the event loop.
  let size: number;
  try {
    const stat = statSync(path, { throwIfNoEntry: false });
    if (!stat) return { outputs: {}, problems: [] };
    size = stat.size;
  } catch (err) {
    return { outputs: {}, problems: [`cannot read KAON_OUTPUT: ${(err as Error).message}`] };
  }
  if (size > MAX_OUTPUT_FILE_BYTES) {
    return {
      outputs: {},
      problems: [`KAON_OUTPUT is ${size} bytes, larger than 4 MiB; outputs ignored`],
    };
  }
  let buf: Buffer;
  try {
    buf = readFileSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return { outputs: {}, problems: [] };
    return { outputs: {}, problems: [`cannot read KAON_OUTPUT: ${(err as Error).message}`] };
  }
  if (buf.length > MAX_OUTPUT_FILE_BYTES) {
    return { outputs: {}, problems: [`KAON_OUTPUT is larger than 4 MiB; outputs ignored`] };
  }
  return parseOutputText(buf.toString("utf8"));
}
