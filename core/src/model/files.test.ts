import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { canonicalize } from "./canonical.js";
import { loadDefinitionFile, parseDefinitionText, splitPath } from "./files.js";
import { validateDefinition } from "./validate.js";

const ROOT = join(import.meta.dirname, "../../..");
const tmp = mkdtempSync(join(tmpdir(), "kaon-files-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function only<T>(items: T[]): T {
  expect(items).toHaveLength(1);
  return items[0]!;
}

describe("definition files", () => {
  it("accepts snake_case and camelCase field names alike", () => {
    const snake = parseDefinitionText(
      "id: wf\nsteps: [{id: a, type: loop, loop: {max_iterations: 2, body: [{id: b, type: noop}]}, skip_if_outputs_exist: SKIP_POLICY_NEVER}]",
    );
    const camel = parseDefinitionText(
      '{"id": "wf", "steps": [{"id": "a", "type": "loop", "loop": {"maxIterations": 2, "body": [{"id": "b", "type": "noop"}]}, "skipIfOutputsExist": "SKIP_POLICY_NEVER"}]}',
      "wf.json",
    );
    expect(snake.violations).toEqual([]);
    expect(camel.violations).toEqual([]);
    expect(snake.definition).toEqual(camel.definition);
    expect(snake.definition?.steps[0]?.loop?.maxIterations).toBe(2);
  });

  it("reports YAML syntax errors with line and column", () => {
    const v = only(
      parseDefinitionText("id: wf\nsteps:\n  - id: a\n   type: noop\n", "p.yaml").violations,
    );
    expect(v.field).toMatch(/^p\.yaml:4:\d+$/);
    expect(v.description).toContain("YAML syntax error");
  });

  it("reports JSON syntax errors with line and column", () => {
    const v = parseDefinitionText('{"id": "wf",\n "steps": [}\n', "p.json").violations[0]!;
    expect(v.field).toMatch(/^p\.json:2:\d+$/);
    expect(v.description).toContain("JSON syntax error");
  });

  it("names an unknown key by path and line, with a suggestion", () => {
    const text =
      "id: wf\nsteps:\n  - id: a\n    type: noop\n  - id: b\n    type: noop\n    nxt: [{to: a}]\n";
    const v = only(parseDefinitionText(text, "p.yaml").violations);
    expect(v.field).toBe("steps[1].nxt");
    expect(v.description).toContain("unknown field 'nxt' in kaon.v1.Step");
    expect(v.description).toContain("(p.yaml:7:5)");
    expect(v.hint).toBe("did you mean 'next'?");
  });

  it("finds type errors deep in the tree", () => {
    const v = only(
      parseDefinitionText("id: wf\nsteps:\n  - id: a\n    type: noop\n    next: [{to: 3}]\n")
        .violations,
    );
    expect(v.field).toBe("steps[0].next[0].to");
    expect(v.description).toContain("expected string, got 3");
  });

  it("explains short enum names and bad durations", () => {
    const e = only(
      parseDefinitionText("id: wf\nsteps: [{id: a, type: noop, split: XOR}]").violations,
    );
    expect(e.field).toBe("steps[0].split");
    expect(e.hint).toBe("did you mean 'SPLIT_MODE_XOR'?");
    const d = only(
      parseDefinitionText("id: wf\nsteps: [{id: a, type: noop, timeout: 5 minutes}]").violations,
    );
    expect(d.field).toBe("steps[0].timeout");
    expect(d.description).toContain('"5 minutes" is not a duration');
    expect(d.hint).toContain('"300s"');
  });

  it("locates errors in foreach bodies and trigger kinds", () => {
    const body = only(
      parseDefinitionText(
        "id: wf\nsteps:\n  - id: f\n    type: foreach\n    foreach:\n      axes: [{values: [1]}]\n      body:\n        - {id: x, type: noop, retyr: {}}\n",
      ).violations,
    );
    expect(body.field).toBe("steps[0].foreach.body[0].retyr");
    expect(body.hint).toBe("did you mean 'retry'?");
    const cron = only(
      parseDefinitionText(
        "id: wf\nsteps: [{id: a, type: noop}]\ntriggers: [{id: t, cron: {expresion: x}}]",
      ).violations,
    );
    expect(cron.field).toBe("triggers[0].cron.expresion");
    expect(cron.hint).toBe("did you mean 'expression'?");
  });

  it("maps validation paths to file positions", () => {
    const text = "id: wf\nsteps:\n  - id: a\n    type: noop\n    next:\n      - to: valdate\n";
    const file = parseDefinitionText(text, "p.yaml");
    const v = only(validateDefinition(file.definition!));
    expect(v.field).toBe("steps[0].next[0].to");
    expect(file.locate(v.field)).toBe("p.yaml:6:9");
    expect(file.locate("steps[0].retry.max_attempts")).toBe("p.yaml:3:5");
    expect(splitPath("steps[2].foreach.body[0].next[1].to")).toEqual([
      "steps",
      2,
      "foreach",
      "body",
      0,
      "next",
      1,
      "to",
    ]);
  });

  it("loads files by extension and reports unreadable ones", async () => {
    const yamlPath = join(tmp, "wf.yml");
    writeFileSync(yamlPath, "id: wf\nsteps: [{id: a, type: noop}]\n");
    expect((await loadDefinitionFile(yamlPath)).definition?.id).toBe("wf");
    const txt = join(tmp, "wf.txt");
    writeFileSync(txt, "id: wf");
    expect(only((await loadDefinitionFile(txt)).violations).hint).toContain(".yaml, .yml or .json");
    expect(
      only((await loadDefinitionFile(join(tmp, "missing.yaml"))).violations).description,
    ).toContain("ENOENT");
    const empty = join(tmp, "empty.yaml");
    writeFileSync(empty, "# nothing\n");
    expect(only((await loadDefinitionFile(empty)).violations).description).toContain("is empty");
  });
});

describe("documented and example definitions", () => {
  it("the full example in docs/definitions.md loads, validates and covers every construct", () => {
    const doc = readFileSync(join(ROOT, "docs/definitions.md"), "utf8");
    const match = /<!-- full-example -->\s*```yaml\n([\s\S]*?)```/.exec(doc);
    expect(match).not.toBeNull();
    const file = parseDefinitionText(match![1]!, "docs/definitions.md");
    expect(file.violations).toEqual([]);
    const def = file.definition!;
    expect(validateDefinition(def)).toEqual([]);

    const steps = def.steps;
    const types = new Set(steps.map((s) => s.type));
    for (const t of ["foreach", "loop", "subworkflow", "command", "python", "http", "noop"]) {
      expect(types).toContain(t);
    }
    expect(def.params.some((p) => p.expr)).toBe(true);
    expect(def.params.some((p) => p.required)).toBe(true);
    expect(steps.some((s) => s.next.some((t) => t.otherwise))).toBe(true);
    expect(steps.some((s) => s.next.some((t) => t.condition))).toBe(true);
    expect(steps.some((s) => s.join === 2)).toBe(true);
    expect(
      steps.some((s) => s.retry && s.timeout && s.resources && s.inputs.length && s.outputs.length),
    ).toBe(true);
    expect(steps.some((s) => s.constraints.length > 0)).toBe(true);
    expect(new Set(def.triggers.map((t) => t.kind?.$case))).toEqual(
      new Set(["cron", "artifact", "signal"]),
    );
    expect(def.runStrategy?.mode).toBeTruthy();
    expect(def.notifications).toHaveLength(1);
  });

  const dir = join(ROOT, "examples/definitions");
  const examples = readdirSync(dir).filter((f) => /\.(ya?ml|json)$/.test(f));
  it.each(examples)("examples/definitions/%s is valid", async (name) => {
    const file = await loadDefinitionFile(join(dir, name));
    expect(file.violations).toEqual([]);
    expect(validateDefinition(file.definition!)).toEqual([]);
    expect(canonicalize(file.definition!).hash).toMatch(/^[0-9a-f]{64}$/);
  });
});
