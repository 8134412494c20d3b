import { WorkflowDefinition } from "@kaon/proto";
import { describe, expect, it } from "vitest";
import { canonicalize, contentHash, definitionFromCanonicalJson } from "./canonical.js";
import { parseDefinitionText } from "./files.js";

function load(text: string, name = "t.yaml"): WorkflowDefinition {
  const file = parseDefinitionText(text, name);
  if (!file.definition) throw new Error(JSON.stringify(file.violations));
  return file.definition;
}

const BASE = `
id: wf
tags: {team: ml, area: recs}
params: [{name: a, value: 1}, {name: b, expr: "params.a + 1"}]
steps:
  - {id: x, type: noop, next: [{to: y}]}
  - {id: y, type: noop}
`;

describe("canonical form", () => {
  it("is sorted-key proto3 JSON with JSON names and no defaults", () => {
    const { json, hash } = canonicalize(load(BASE));
    expect(json).toBe(
      '{"id":"wf","namespace":"default","params":[{"name":"a","value":1},{"expr":"params.a + 1","name":"b"}],' +
        '"steps":[{"id":"x","next":[{"to":"y"}],"type":"noop"},{"id":"y","type":"noop"}],"tags":{"area":"recs","team":"ml"}}',
    );
    expect(hash).toBe(contentHash(json));
    expect(hash).toMatch(/^[0-9a-f]{64}$/);
  });

  it("hashes semantically identical spellings the same", () => {
    const spelled = load(
      JSON.stringify({
        id: "wf",
        namespace: "default",
        tags: { area: "recs", team: "ml" },
        failureMode: "FAILURE_MODE_FINISH_RUNNING",
        runStrategy: { mode: "RUN_STRATEGY_MODE_PARALLEL" },
        params: [
          { name: "a", value: 1 },
          { name: "b", expr: "params.a + 1" },
        ],
        steps: [
          {
            id: "x",
            type: "noop",
            config: {},
            split: "SPLIT_MODE_AND",
            join: "JOIN_MODE_ALL",
            skipIfOutputsExist: "SKIP_POLICY_ON_RESTART",
            resources: { cpus: 0 },
            next: [{ to: "y" }],
          },
          { id: "y", type: "noop" },
        ],
      }),
      "t.json",
    );
    expect(canonicalize(spelled).hash).toBe(canonicalize(load(BASE)).hash);
  });

  it("normalizes set-like lists and default axis names", () => {
    const a = load(`
id: wf
steps:
  - id: f
    type: foreach
    foreach: {axes: [{values: [1, 2]}], body: [{id: b, type: noop, retry: {max_attempts: 2, retry_on: [RETRY_ON_LOST, RETRY_ON_TIMEOUT], exit_codes: [3, 1, 3]}}]}
`);
    const b = load(`
id: wf
steps:
  - id: f
    type: foreach
    foreach: {axes: [{name: value, values: [1, 2]}], body: [{id: b, type: noop, retry: {max_attempts: 2, retry_on: [RETRY_ON_TIMEOUT, RETRY_ON_LOST], exit_codes: [1, 3]}}]}
`);
    expect(canonicalize(a).hash).toBe(canonicalize(b).hash);
  });

  it("changes with content and with order (order carries meaning)", () => {
    const base = canonicalize(load(BASE)).hash;
    expect(canonicalize(load(BASE.replace("value: 1", "value: 2"))).hash).not.toBe(base);
    const swapped = load(
      BASE.replace(
        `params: [{name: a, value: 1}, {name: b, expr: "params.a + 1"}]`,
        `params: [{name: b, expr: "params.a + 1"}, {name: a, value: 1}]`,
      ),
    );
    expect(canonicalize(swapped).hash).not.toBe(base);
  });

  it("round-trips through the stored text", () => {
    const first = canonicalize(load(BASE));
    const back = definitionFromCanonicalJson(first.json);
    expect(back).toEqual(first.definition);
    expect(canonicalize(back).json).toBe(first.json);
  });

  it("does not modify its input", () => {
    const def = load(BASE.replace("id: wf", "id: wf\nnamespace: ''"));
    const before = WorkflowDefinition.toJSON(def);
    canonicalize(def);
    expect(WorkflowDefinition.toJSON(def)).toEqual(before);
  });
});
