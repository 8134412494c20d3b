import { describe, expect, it } from "vitest";
import { parseOutputText } from "./outputs.js";

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
