// biome-ignore-all lint/suspicious/noTemplateCurlyInString: these strings are kaon templates, whose syntax is ${...}
import { describe, expect, it } from "vitest";
import { parseTemplate, renderTemplate } from "./template.js";

const scope = {
  params: { region: "us", dateint: 20261121, ratio: 0.5, tags: ["a", "b"] },
  foreach: { value: "eu", index: 0 },
  RUN_TS: Date.UTC(2026, 10, 21, 12),
};

describe("templates", () => {
  it("renders expressions between ${ and }", () => {
    expect(renderTemplate("models/${params.region}/${tsToDateInt(RUN_TS)}", scope)).toEqual({
      ok: true,
      value: "models/us/20261121",
    });
    expect(renderTemplate("${foreach.value}", scope)).toEqual({ ok: true, value: "eu" });
    expect(renderTemplate("plain", scope)).toEqual({ ok: true, value: "plain" });
    expect(renderTemplate("", scope)).toEqual({ ok: true, value: "" });
  });

  it("inserts non-strings as JSON", () => {
    expect(renderTemplate("r=${params.ratio} t=${params.tags} b=${1 < 2}", scope)).toEqual({
      ok: true,
      value: 'r=0.5 t=["a","b"] b=true',
    });
  });

  it("handles braces and quotes inside expressions, and $${ escapes", () => {
    expect(renderTemplate("${ {'a': '}'}['a'] }x", scope)).toEqual({ ok: true, value: "}x" });
    expect(renderTemplate("cost: $${not_expr} ${params.region}", scope)).toEqual({
      ok: true,
      value: "cost: ${not_expr} us",
    });
  });

  it("lists references for validation", () => {
    const t = parseTemplate("s3://b/${params.region}/${steps.train.outputs.path}/${params.region}");
    expect(t.ok && t.references).toEqual(["params.region", "steps.train.outputs.path"]);
  });

  it("reports errors with positions in the template", () => {
    const unterminated = parseTemplate("a/${params.region");
    expect(unterminated).toEqual({
      ok: false,
      error: { message: "unterminated '${' in template (no matching '}')", position: 2 },
    });
    const bad = parseTemplate("a/${parms.region}");
    expect(!bad.ok && bad.error.position).toBe(4);
    expect(!bad.ok && bad.error.message).toContain("did you mean 'params'");
    const syntax = parseTemplate("abc/${params.region +}");
    expect(!syntax.ok && syntax.error.position).toBe(21);
    const runtime = renderTemplate("x/${params.nope}", scope);
    expect(runtime.ok).toBe(false);
    if (!runtime.ok) {
      expect(runtime.error.message).toContain("no such key 'nope'");
      expect(runtime.error.position).toBe(11);
    }
  });
});
