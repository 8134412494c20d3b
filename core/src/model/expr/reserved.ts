// Rewrites the identifier `loop` (reserved in CEL) to LOOP_ALIAS outside string literals and
// field selections, keeping every character position unchanged.
import { LOOP_ALIAS } from "./environment.js";

const IDENT_START = /[A-Za-z_]/;
const IDENT_PART = /[A-Za-z0-9_]/;

export function rewriteReservedRoots(source: string): string {
  if (!source.includes("loop")) return source;
  let out = "";
  let i = 0;
  let lastSignificant = "";
  while (i < source.length) {
    const c = source[i]!;
    if (c === '"' || c === "'") {
      const raw =
        /[rR]/.test(source[i - 1] ?? "") || /[rR][bB]|[bB][rR]/.test(source.slice(i - 2, i));
      const triple = source.startsWith(c.repeat(3), i);
      const quote = triple ? c.repeat(3) : c;
      let j = i + quote.length;
      while (j < source.length && !source.startsWith(quote, j)) {
        if (!raw && source[j] === "\\") j++;
        j++;
      }
      j = Math.min(source.length, j + quote.length);
      out += source.slice(i, j);
      lastSignificant = c;
      i = j;
      continue;
    }
    if (IDENT_START.test(c) && !IDENT_PART.test(source[i - 1] ?? "")) {
      let j = i + 1;
      while (j < source.length && IDENT_PART.test(source[j]!)) j++;
      const word = source.slice(i, j);
      out += word === "loop" && lastSignificant !== "." ? LOOP_ALIAS : word;
      lastSignificant = "a";
      i = j;
      continue;
    }
    out += c;
    if (!/\s/.test(c)) lastSignificant = c;
    i++;
  }
  return out;
}
