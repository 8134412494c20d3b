import { mkdtempSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parseOutputText, readOutputFile } from "./outputs.js";

describe("parseOutputText", () => {
  it("decodes JSON values and keeps other text as strings", () => {
    const { outputs, problems } = parseOutputText(
      'n=41\nx=3.5\nok=true\nlist=[1,"a"]\nword=hello world\nq="quoted"\nempty=\n',
    );
    expect(outputs).toEqual({
      n: 41,
      x: 3.5,
      ok: true,
      list: [1, "a"],
      word: "hello world",
      q: "quoted",
      empty: "",
    });
    expect(problems).toEqual([]);
  });

  it("reports bad lines by number instead of failing", () => {
    const { outputs, problems } = parseOutputText("good=1\nno equals here\n9bad=2\n");
    expect(outputs).toEqual({ good: 1 });
    expect(problems[0]).toContain("line 2 ignored");
    expect(problems[1]).toContain('"9bad" is not a valid output name');
  });
});

describe("readOutputFile", () => {
  it("refuses a huge file by its size, without reading it (C5)", () => {
    const dir = mkdtempSync(join(tmpdir(), "kaon-out-"));
    try {
      const path = join(dir, "output");
      writeFileSync(path, "n=1\n");
      expect(readOutputFile(path)).toEqual({ outputs: { n: 1 }, problems: [] });
      // Sparse: 3 GiB on paper, no disk used. Reading it whole would fail (> 2 GiB buffer).
      truncateSync(path, 3 * 1024 ** 3);
      const parsed = readOutputFile(path);
      expect(parsed.outputs).toEqual({});
      expect(parsed.problems).toEqual([
        "KAON_OUTPUT is 3221225472 bytes, larger than 4 MiB; outputs ignored",
      ]);
      expect(readOutputFile(join(dir, "missing"))).toEqual({ outputs: {}, problems: [] });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
