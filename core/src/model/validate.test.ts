// Every validation rule, each with the exact field path and a fragment of the message.
// Definitions are written as YAML (the file format users write) and decoded with files.ts.
import { type FieldViolation, WorkflowDefinition } from "@kaon/proto";
import { describe, expect, it } from "vitest";
import { StepTypeRegistry } from "../steps/registry.js";
import { parseDefinitionText } from "./files.js";
import { DEFINITION_LIMITS, validateDefinition } from "./validate.js";

function dedent(text: string): string {
  const lines = text.replace(/^\n/, "").split("\n");
  const indent = Math.min(
    ...lines.filter((l) => l.trim()).map((l) => l.length - l.trimStart().length),
  );
  return lines.map((l) => l.slice(indent)).join("\n");
}

function load(yaml: string): WorkflowDefinition {
  const file = parseDefinitionText(dedent(yaml), "test.yaml");
  if (!file.definition)
    throw new Error(`test YAML does not decode: ${JSON.stringify(file.violations)}`);
  return file.definition;
}

function check(yaml: string): FieldViolation[] {
  return validateDefinition(load(yaml));
}

/** Asserts one violation at `field` whose description contains `fragment` (and hint `hint`). */
function expectViolation(
  violations: FieldViolation[],
  field: string,
  fragment: string,
  hint?: string,
): void {
  const at = violations.filter((v) => v.field === field);
  const match = at.find(
    (v) => v.description.includes(fragment) && (!hint || v.hint.includes(hint)),
  );
  if (!match) {
    throw new Error(
      `no violation at '${field}' containing '${fragment}'${hint ? ` with hint '${hint}'` : ""}; got:\n${violations
        .map((v) => `  ${v.field}: ${v.description} [${v.hint}]`)
        .join("\n")}`,
    );
  }
}

const GOOD = `
  id: recs.daily
  params:
    - {name: region, type: PARAM_TYPE_STRING, value: US}
    - {name: dateint, type: PARAM_TYPE_INT, expr: "tsToDateInt(RUN_TS)"}
  steps:
    - id: prepare
      type: noop
      next: [{to: train}]
    - id: train
      type: noop
      next: [{to: validate}]
    - id: validate
      type: noop
`;

describe("validateDefinition", () => {
  it("accepts a good definition", () => {
    expect(check(GOOD)).toEqual([]);
  });

  describe("ids and names", () => {
    it("requires a workflow id and checks its characters", () => {
      expectViolation(check("steps: [{id: a, type: noop}]"), "id", "workflow id is missing");
      expectViolation(
        check("id: Daily Recs\nsteps: [{id: a, type: noop}]"),
        "id",
        "workflow id 'Daily Recs' is not valid",
        "e.g. 'daily_recs'",
      );
    });

    it("checks step ids and param names", () => {
      const v = check(`
        id: wf
        params: [{name: "2bad", value: 1}, {name: ok, value: 1}, {name: ok, value: 2}]
        steps:
          - {id: "has space", type: noop}
          - {type: noop}
      `);
      expectViolation(v, "params[0].name", "param name '2bad' is not valid");
      expectViolation(v, "params[2].name", "duplicate param 'ok'");
      expectViolation(v, "steps[0].id", "step id 'has space' is not valid", "e.g. 'has_space'");
      expectViolation(v, "steps[1].id", "a step needs an id");
    });

    it("rejects duplicate step ids within a graph, but a body is its own scope", () => {
      const v = check(`
        id: wf
        steps:
          - {id: a, type: noop, next: [{to: fan}]}
          - id: fan
            type: foreach
            foreach:
              axes: [{values: [1, 2]}]
              body:
                - {id: a, type: noop, next: [{to: b}]}
                - {id: b, type: noop}
                - {id: b, type: noop}
          - {id: a, type: noop}
      `);
      expectViolation(v, "steps[2].id", "duplicate step id 'a' (first used by steps[0])");
      expectViolation(v, "steps[1].foreach.body[2].id", "duplicate step id 'b'");
      expect(v.filter((x) => x.field === "steps[1].foreach.body[0].id")).toEqual([]);
    });
  });

  describe("graph", () => {
    it("names an unknown successor and suggests the closest id", () => {
      const v = check(
        `
        id: wf
        steps:
          - {id: prepare, type: noop, next: [{to: train}]}
          - {id: train, type: noop, next: [{to: validate}]}
          - {id: validate, type: noop}
          - {id: publish, type: noop}
        `.replace("{to: validate}", "{to: valdate}"),
      );
      expectViolation(
        v,
        "steps[1].next[0].to",
        "unknown successor 'valdate'",
        "did you mean 'validate'?",
      );
    });

    it("reports a cycle with its path and points at loop containers", () => {
      const v = check(`
        id: wf
        steps:
          - {id: start, type: noop, next: [{to: a}]}
          - {id: a, type: noop, next: [{to: b}]}
          - {id: b, type: noop, next: [{to: c}]}
          - {id: c, type: noop, next: [{to: a}]}
      `);
      expectViolation(v, "steps[3].next[0].to", "cycle: a → b → c → a", "type: loop");
      expect(v).toHaveLength(1);
    });

    it("reports a self edge as a cycle and a graph with no start step", () => {
      const v = check(`
        id: wf
        steps:
          - {id: a, type: noop, next: [{to: a}]}
      `);
      expectViolation(v, "steps[0].next[0].to", "cycle: a → a");
      expectViolation(v, "steps", "no start step");
    });

    it("reports a step that only a cycle leads to as unreachable", () => {
      const v = check(`
        id: wf
        steps:
          - {id: start, type: noop}
          - {id: a, type: noop, next: [{to: b}]}
          - {id: b, type: noop, next: [{to: a}, {to: c}]}
          - {id: c, type: noop}
      `);
      expectViolation(v, "steps[2].next[0].to", "cycle: a → b → a");
      expectViolation(v, "steps[3]", "step 'c' is unreachable", "connect it");
    });

    it("checks cycles inside container bodies", () => {
      const v = check(`
        id: wf
        steps:
          - id: again
            type: loop
            loop:
              max_iterations: 3
              body:
                - {id: x, type: noop, next: [{to: y}]}
                - {id: y, type: noop, next: [{to: x}]}
      `);
      expectViolation(v, "steps[0].loop.body[1].next[0].to", "cycle: x → y → x");
    });

    it("allows at most one otherwise edge, only on XOR splits, without a condition", () => {
      const v = check(`
        id: wf
        steps:
          - id: gate
            type: noop
            split: SPLIT_MODE_XOR
            next:
              - {to: a, condition: "params.x > 1"}
              - {to: b, otherwise: true}
              - {to: c, otherwise: true, condition: "true"}
          - id: and
            type: noop
            next: [{to: a}, {to: d, otherwise: true}]
          - {id: a, type: noop}
          - {id: b, type: noop}
          - {id: c, type: noop}
          - {id: d, type: noop}
        params: [{name: x, type: PARAM_TYPE_INT, value: 1}]
      `);
      expectViolation(
        v,
        "steps[0].next[2].otherwise",
        "second otherwise edge (the first is next[1])",
      );
      expectViolation(v, "steps[0].next[2].condition", "also has a condition");
      expectViolation(
        v,
        "steps[1].next[1].otherwise",
        "needs split XOR, but the split is SPLIT_MODE_UNSPECIFIED",
      );
    });

    it("rejects two edges to the same step", () => {
      const v = check(`
        id: wf
        steps:
          - {id: a, type: noop, next: [{to: b}, {to: b, condition: "true"}]}
          - {id: b, type: noop}
      `);
      expectViolation(v, "steps[0].next[1].to", "two edges to 'b'");
    });

    it("requires at least one step", () => {
      expectViolation(check("id: wf"), "steps", "at least one step");
    });
  });

  describe("expressions", () => {
    it("reports a CEL expression that does not parse, with its position", () => {
      const v = check(`
        id: wf
        params: [{name: n, type: PARAM_TYPE_INT, value: 1}]
        steps:
          - {id: a, type: noop, next: [{to: b, condition: "params.n >"}]}
          - {id: b, type: noop}
      `);
      expectViolation(v, "steps[0].next[0].condition", "`params.n >` does not parse at position");
    });

    it("reports unknown params with a suggestion, and params used before they are defined", () => {
      const v = check(`
        id: wf
        params:
          - {name: later_ref, expr: "params.region + 'x'"}
          - {name: region, value: US}
        steps:
          - id: a
            type: noop
            params: [{name: p, expr: "params.regoin"}]
      `);
      expectViolation(v, "params[0].expr", "unknown param 'region'");
      expectViolation(
        v,
        "steps[0].params[0].expr",
        "unknown param 'regoin'",
        "did you mean 'region'?",
      );
    });

    it("reports unknown steps, steps that do not run before, and bad step fields", () => {
      const v = check(`
        id: wf
        steps:
          - {id: wrangle, type: noop, next: [{to: train}]}
          - id: train
            type: noop
            params:
              - {name: a, expr: "steps.wrangel.outputs.n"}
              - {name: b, expr: "steps.report.outputs.n"}
              - {name: c, expr: "steps.wrangle.output.n"}
              - {name: d, expr: "steps.wrangle.outputs.n"}
          - {id: report, type: noop}
      `);
      expectViolation(
        v,
        "steps[1].params[0].expr",
        "unknown step 'wrangel'",
        "did you mean 'wrangle'?",
      );
      expectViolation(v, "steps[1].params[1].expr", "step 'report', which does not run before it");
      expectViolation(
        v,
        "steps[1].params[2].expr",
        "uses steps.wrangle.output",
        "'outputs' and 'status'",
      );
      expect(v.filter((x) => x.field === "steps[1].params[3].expr")).toEqual([]);
    });

    it("lets an edge condition see its own step, and a body see the container's upstream", () => {
      const v = check(`
        id: wf
        steps:
          - {id: regions, type: noop, next: [{to: fan}]}
          - id: fan
            type: foreach
            foreach:
              axes: [{name: region, expr: "steps.regions.outputs.list"}]
              body:
                - id: train
                  type: noop
                  params: [{name: r, expr: "foreach.values.region + string(steps.regions.outputs.n)"}]
                  next: [{to: check, condition: "steps.train.outputs.auc > 0.5"}]
                - {id: check, type: noop}
      `);
      expect(v).toEqual([]);
    });

    it("keeps foreach and loop variables inside their bodies", () => {
      const v = check(`
        id: wf
        steps:
          - id: a
            type: noop
            params: [{name: x, expr: "foreach.value"}, {name: y, expr: "loop.iteration"}]
            next: [{to: fan}]
          - id: fan
            type: foreach
            foreach:
              axes: [{name: region, values: [US, CA]}]
              body:
                - id: t
                  type: noop
                  params: [{name: z, expr: "foreach.values.regoin"}, {name: w, expr: "foreach.idx"}]
      `);
      expectViolation(
        v,
        "steps[0].params[0].expr",
        "uses 'foreach', which is not available here",
        "foreach body",
      );
      expectViolation(v, "steps[0].params[1].expr", "uses 'loop', which is not available here");
      expectViolation(
        v,
        "steps[1].foreach.body[0].params[0].expr",
        "unknown foreach axis 'regoin'",
        "did you mean 'region'?",
      );
      expectViolation(v, "steps[1].foreach.body[0].params[1].expr", "uses foreach.idx");
    });

    it("checks loop until/while against the body's steps", () => {
      const v = check(`
        id: wf
        steps:
          - id: tune
            type: loop
            loop:
              max_iterations: 5
              until: "steps.fit.outputs.stable && loop.iteration > 1"
              while: "steps.fitt.outputs.go"
              body: [{id: fit, type: noop}]
      `);
      expectViolation(v, "steps[0].loop.while", "unknown step 'fitt'", "did you mean 'fit'?");
      expect(v.filter((x) => x.field === "steps[0].loop.until")).toEqual([]);
    });

    it("keeps step outputs out of workflow params", () => {
      const v = check(`
        id: wf
        params: [{name: p, expr: "steps.a.outputs.x"}]
        steps: [{id: a, type: noop}]
      `);
      expectViolation(v, "params[0].expr", "uses 'steps', which is not available here");
    });

    it("checks artifact names and partition/uri templates", () => {
      const v = check(`
        id: wf
        params: [{name: region, value: US}]
        steps:
          - id: a
            type: noop
            inputs: [{name: "bad name!", partitions: {region: "\${params.region}"}}]
            outputs:
              - name: models.regional
                partitions: {region: "\${params.regon}", "bad-key": x, day: "\${tsToDateInt(RUN_TS"}
                uri: "s3://b/\${params.region}/\${steps.a.outputs.path}"
      `);
      expectViolation(v, "steps[0].inputs[0].name", "artifact name 'bad name!' is not valid");
      expectViolation(
        v,
        "steps[0].outputs[0].partitions.region",
        "unknown param 'regon'",
        "did you mean 'region'?",
      );
      expectViolation(
        v,
        "steps[0].outputs[0].partitions.bad-key",
        "partition key 'bad-key' is not valid",
      );
      expectViolation(v, "steps[0].outputs[0].partitions.day", "does not parse at position");
      expect(v.filter((x) => x.field === "steps[0].outputs[0].uri")).toEqual([]);
    });
  });

  describe("params", () => {
    it("checks literals against declared types", () => {
      const v = check(`
        id: wf
        params:
          - {name: i, type: PARAM_TYPE_INT, value: 2.5}
          - {name: j, type: PARAM_TYPE_INT, value: "10"}
          - {name: d, type: PARAM_TYPE_DOUBLE, value: "x"}
          - {name: b, type: PARAM_TYPE_BOOL, value: "true"}
          - {name: s, type: PARAM_TYPE_STRING, value: 3}
          - {name: l, type: PARAM_TYPE_LIST, value: {a: 1}}
          - {name: m, type: PARAM_TYPE_MAP, value: [1]}
          - {name: ok_int, type: PARAM_TYPE_INT, value: 3}
          - {name: ok_any, value: {deep: [1, "x", null]}}
        steps: [{id: a, type: noop}]
      `);
      expectViolation(
        v,
        "params[0].value",
        "declared INT but its value is the number 2.5",
        "whole number",
      );
      expectViolation(
        v,
        "params[1].value",
        'declared INT but its value is the string "10"',
        "without quotes: 10",
      );
      expectViolation(v, "params[2].value", "declared DOUBLE");
      expectViolation(v, "params[3].value", "declared BOOL", "write true without quotes");
      expectViolation(v, "params[4].value", "declared STRING but its value is the integer 3");
      expectViolation(v, "params[5].value", "declared LIST but its value is a map");
      expectViolation(v, "params[6].value", "declared MAP but its value is a list");
      expect(
        v.filter((x) => x.field.startsWith("params[7]") || x.field.startsWith("params[8]")),
      ).toEqual([]);
    });

    it("rejects value together with expr, required with a default, and empty step params", () => {
      const v = check(`
        id: wf
        params:
          - {name: both, value: 1, expr: "1"}
          - {name: req, required: true, value: 1}
          - {name: needed, required: true}
        steps:
          - id: a
            type: noop
            params: [{name: empty}]
      `);
      expectViolation(v, "params[0]", "has both a value and an expr");
      expectViolation(v, "params[1].required", "is required but also has a value");
      expectViolation(v, "steps[0].params[0]", "has neither a value nor an expr");
      expect(v.filter((x) => x.field.startsWith("params[2]"))).toEqual([]);
    });

    it("limits the size of a param value", () => {
      const def = load(GOOD);
      def.params[0]!.value = "x".repeat(DEFINITION_LIMITS.maxParamValueBytes + 1);
      expectViolation(validateDefinition(def), "params[0].value", "the limit is 65536");
    });
  });

  describe("step types and containers", () => {
    it("names an unknown step type with a suggestion and the known types", () => {
      const v = check("id: wf\nsteps: [{id: a, type: comand}]");
      expectViolation(v, "steps[0].type", "unknown step type 'comand'", "did you mean 'command'?");
      expectViolation(v, "steps[0].type", "unknown step type 'comand'", "known types: ");
    });

    it("delegates config checks to the step type", () => {
      const v = check(`
        id: wf
        steps:
          - {id: a, type: sleep, config: {secs: 3}}
          - {id: b, type: command, config: {argv: []}}
      `);
      expectViolation(v, "steps[0].config.secs", "unknown sleep config key 'secs'");
      expect(v.some((x) => x.field.startsWith("steps[1].config.argv"))).toBe(true);
    });

    it("accepts plugin types from the given registry", () => {
      const registry = new StepTypeRegistry([
        {
          kind: "inline",
          name: "custom",
          description: "test type",
          validate: (config, path) =>
            config.ok ? [] : [{ field: `${path}.ok`, description: "ok must be set", hint: "" }],
          run: async () => ({ succeeded: true }),
        },
      ]);
      const def = load("id: wf\nsteps: [{id: a, type: custom}, {id: b, type: noop}]");
      const v = validateDefinition(def, { stepTypes: registry });
      expectViolation(v, "steps[0].config.ok", "ok must be set");
      expectViolation(v, "steps[1].type", "unknown step type 'noop'", "custom");
    });

    it("checks foreach specs", () => {
      const v = check(`
        id: wf
        steps:
          - {id: a, type: foreach}
          - id: b
            type: foreach
            foreach:
              axes: [{values: [1], expr: "[1]"}, {name: value}]
              body: []
          - {id: c, type: noop, foreach: {axes: [{values: [1]}], body: [{id: x, type: noop}]}}
      `);
      expectViolation(v, "steps[0].foreach", "has type foreach but no `foreach` block");
      expectViolation(v, "steps[1].foreach.axes[0]", "has both values and an expr");
      expectViolation(v, "steps[1].foreach.axes[1].name", "two axes named 'value'");
      expectViolation(v, "steps[1].foreach.axes[1]", "has neither values nor an expr");
      expectViolation(v, "steps[1].foreach.body", "empty body");
      expectViolation(v, "steps[2].foreach", "has a `foreach` block but its type is 'noop'");
    });

    it("checks loop bounds", () => {
      const v = check(`
        id: wf
        steps:
          - {id: a, type: loop, loop: {body: [{id: x, type: noop}]}, next: [{to: b}]}
          - {id: b, type: loop, loop: {max_iterations: 1001, body: [{id: x, type: noop}]}}
          - {id: c, type: loop}
      `);
      expectViolation(v, "steps[0].loop.max_iterations", "needs max_iterations", "1-1000");
      expectViolation(v, "steps[1].loop.max_iterations", "max_iterations 1001 is out of range");
      expectViolation(v, "steps[2].loop", "no `loop` block");
    });

    it("checks subworkflow specs", () => {
      const v = check(`
        id: wf
        steps:
          - {id: a, type: subworkflow, subworkflow: {workflow_id: wf}, next: [{to: b}]}
          - {id: b, type: subworkflow, subworkflow: {workflow_id: "Other WF", version: -2}, next: [{to: c}]}
          - {id: c, type: subworkflow, subworkflow: {workflow_id: other, params: [{name: p}]}}
      `);
      expectViolation(v, "steps[0].subworkflow.workflow_id", "starts its own workflow");
      expectViolation(
        v,
        "steps[1].subworkflow.workflow_id",
        "'Other WF' is not a valid workflow id",
      );
      expectViolation(v, "steps[1].subworkflow.version", "version -2 is not valid");
      expectViolation(v, "steps[2].subworkflow.params[0]", "neither a value nor an expr");
    });

    it("rejects config on containers", () => {
      const v = check(`
        id: wf
        steps:
          - {id: a, type: loop, config: {x: 1}, loop: {max_iterations: 2, body: [{id: x, type: noop}]}}
      `);
      expectViolation(v, "steps[0].config", "a loop container has no config");
    });
  });

  describe("resources, retries, timeouts, constraints, env", () => {
    it("rejects negative and absurd resources and fractional GPUs", () => {
      const v = check(`
        id: wf
        steps:
          - {id: a, type: noop, resources: {cpus: -1, mem_mb: 99999999999, gpus: 0.5, disk_mb: -5}}
          - {id: b, type: noop, resources: {cpus: 2000}}
      `);
      expectViolation(v, "steps[0].resources.cpus", "cpus -1 is negative");
      expectViolation(v, "steps[0].resources.mem_mb", "is more than 16777216 MiB (16 TiB)");
      expectViolation(v, "steps[0].resources.gpus", "gpus 0.5 is not a whole number");
      expectViolation(v, "steps[0].resources.disk_mb", "disk_mb -5 is negative");
      expectViolation(v, "steps[1].resources.cpus", "cpus 2000 is more than 1024");
    });

    it("requires at least 0.01 cpus and 1 MiB when set, 0 meaning the default (review Q10)", () => {
      const v = check(`
        id: wf
        steps:
          - {id: a, type: noop, resources: {cpus: 1e-10, mem_mb: 1e-10, disk_mb: 0.5}}
          - {id: b, type: noop, resources: {cpus: 0.01, mem_mb: 1, disk_mb: 1}}
          - {id: c, type: noop, resources: {cpus: 0, mem_mb: 0}}
      `);
      expectViolation(
        v,
        "steps[0].resources.cpus",
        "step 'a': cpus 1e-10 is less than the minimum of 0.01 cores",
      );
      expectViolation(
        v,
        "steps[0].resources.mem_mb",
        "step 'a': mem_mb 1e-10 is less than the minimum of 1 MiB",
      );
      expectViolation(v, "steps[0].resources.disk_mb", "disk_mb 0.5 is less than the minimum");
      expect(v.filter((x) => !x.field.startsWith("steps[0]"))).toEqual([]);
    });

    it("checks retry bounds", () => {
      const v = check(`
        id: wf
        steps:
          - id: a
            type: noop
            retry:
              max_attempts: 101
              initial_backoff: 10s
              max_backoff: 5s
              backoff_multiplier: 0.5
              retry_on: [RETRY_ON_TIMEOUT]
              exit_codes: [0, 3]
          - {id: b, type: noop, retry: {}}
      `);
      expectViolation(
        v,
        "steps[0].retry.max_attempts",
        "max_attempts 101 is out of range",
        "1-100",
      );
      expectViolation(
        v,
        "steps[0].retry.max_backoff",
        "max_backoff 5s is shorter than initial_backoff 10s",
      );
      expectViolation(
        v,
        "steps[0].retry.backoff_multiplier",
        "backoff_multiplier 0.5 is out of range",
      );
      expectViolation(v, "steps[0].retry.exit_codes[0]", "exit code 0 cannot mean failure");
      expectViolation(
        v,
        "steps[0].retry.exit_codes",
        "retry_on does not include RETRY_ON_EXIT_CODE",
      );
      expectViolation(v, "steps[1].retry.max_attempts", "max_attempts 0 is out of range");
    });

    it("checks timeouts", () => {
      const v = check(`
        id: wf
        timeout: 0s
        steps: [{id: a, type: noop, timeout: 99999999s}]
      `);
      expectViolation(v, "timeout", "a zero timeout would fail at once");
      expectViolation(v, "steps[0].timeout", "longer than the limit");
    });

    it("checks heartbeat timeouts: a duration, only on steps that run as processes", () => {
      const v = check(`
        id: wf
        steps:
          - {id: a, type: command, config: {argv: [x]}, heartbeat_timeout: 0s}
          - {id: b, type: noop, heartbeat_timeout: 60s}
          - {id: c, type: foreach, heartbeat_timeout: 60s, foreach: {axes: [{values: [1]}], body: [{id: d, type: noop}]}}
          - {id: e, type: command, config: {argv: [x]}, heartbeat_timeout: 300s}
      `);
      expectViolation(v, "steps[0].heartbeat_timeout", "a zero timeout would fail at once");
      expectViolation(v, "steps[1].heartbeat_timeout", "runs inside the server", "use timeout");
      expectViolation(v, "steps[2].heartbeat_timeout", "is a container", "steps inside it");
      expect(v.filter((x) => x.field.startsWith("steps[3]"))).toEqual([]);
    });

    it("checks constraints", () => {
      const v = check(`
        id: wf
        steps:
          - id: a
            type: noop
            constraints:
              - {attribute: pool, operator: CONSTRAINT_OPERATOR_EQUALS}
              - {attribute: host, operator: CONSTRAINT_OPERATOR_LIKE, value: "a("}
              - {attribute: rack, operator: CONSTRAINT_OPERATOR_UNIQUE, value: x}
              - {attribute: zone}
      `);
      expectViolation(
        v,
        "steps[0].constraints[0].value",
        "CONSTRAINT_OPERATOR_EQUALS on 'pool' needs a value",
      );
      expectViolation(v, "steps[0].constraints[1].value", "pattern 'a(' does not compile");
      expectViolation(v, "steps[0].constraints[2].value", "takes no value");
      expectViolation(v, "steps[0].constraints[3].operator", "no valid operator");
    });

    it("checks env names", () => {
      const v = check(`
        id: wf
        steps: [{id: a, type: noop, env: {"1X": a, KAON_TOKEN: b, GOOD: c}}]
      `);
      expectViolation(v, "steps[0].env.1X", "not a valid environment variable name");
      expectViolation(v, "steps[0].env.KAON_TOKEN", "reserved prefix KAON_");
    });
  });

  describe("triggers and policies", () => {
    it("checks cron expressions and timezones", () => {
      const v = check(`
        id: wf
        params: [{name: day, type: PARAM_TYPE_INT, required: true}]
        steps: [{id: a, type: noop}]
        triggers:
          - {id: bad-cron, cron: {expression: "0 3 * *"}}
          - {id: bad-tz, cron: {expression: "0 3 * * *", timezone: "America/Los_Angles"}}
          - {id: never, cron: {expression: "0 0 31 2 *"}}
          - {id: good, cron: {expression: "0 3 * * *", timezone: Europe/Paris}, params: [{name: day, expr: "tsToDateInt(RUN_TS)"}]}
      `);
      expectViolation(
        v,
        "triggers[0].cron.expression",
        "cron expression '0 3 * *' is not valid",
        "five fields",
      );
      expectViolation(
        v,
        "triggers[1].cron.timezone",
        "unknown timezone 'America/Los_Angles'",
        "did you mean 'America/Los_Angeles'?",
      );
      expectViolation(v, "triggers[2].cron.expression", "never fires");
      expect(v.filter((x) => x.field.startsWith("triggers[3]"))).toEqual([]);
    });

    it("checks trigger ids, kinds and params", () => {
      const v = check(`
        id: wf
        params: [{name: region, type: PARAM_TYPE_STRING, value: US}]
        steps: [{id: a, type: noop}]
        triggers:
          - {id: t, signal: {name: go}, params: [{name: regoin, value: CA}, {name: region, value: 3}]}
          - {id: t, artifact: {name: models.regional}}
          - {id: nothing}
          - {id: sig, signal: {name: go}, params: [{name: region, expr: "signal.params.region"}]}
          - {id: art, artifact: {name: x}, params: [{name: region, expr: "signal.params.region"}]}
      `);
      expectViolation(
        v,
        "triggers[0].params[0].name",
        "sets 'regoin', which is not a workflow param",
        "did you mean 'region'?",
      );
      expectViolation(
        v,
        "triggers[0].params[1].value",
        "declared STRING but its value is the integer 3",
      );
      expectViolation(v, "triggers[1].id", "duplicate trigger id 't'");
      expectViolation(v, "triggers[2]", "has no kind", "cron");
      expect(v.filter((x) => x.field.startsWith("triggers[3]"))).toEqual([]);
      expectViolation(
        v,
        "triggers[4].params[0].expr",
        "uses 'signal', which is not available here",
      );
    });

    it("checks run strategy, notifications and step type concurrency", () => {
      const v = check(`
        id: wf
        steps: [{id: a, type: noop}]
        run_strategy: {mode: RUN_STRATEGY_MODE_SEQUENTIAL, max_concurrent_runs: 3}
        notifications: [{on: [FAILED, FIALED], webhook_url: "ftp://x"}]
        step_type_concurrency: {comand: 2, noop: 0}
      `);
      expectViolation(v, "run_strategy.max_concurrent_runs", "applies only to the PARALLEL mode");
      expectViolation(
        v,
        "notifications[0].on[1]",
        "unknown run status 'FIALED'",
        "did you mean 'FAILED'?",
      );
      expectViolation(v, "notifications[0].webhook_url", "not an http(s) URL");
      expectViolation(
        v,
        "step_type_concurrency.comand",
        "unknown step type 'comand'",
        "did you mean 'command'?",
      );
      expectViolation(v, "step_type_concurrency.noop", "would never run");
    });
  });

  describe("size limits", () => {
    it("rejects definitions over the step count limit", () => {
      const steps = Array.from({ length: DEFINITION_LIMITS.maxSteps + 1 }, (_, i) => ({
        id: `s${i}`,
        type: "noop",
      }));
      const def = WorkflowDefinition.fromPartial({ id: "big", steps });
      const v = validateDefinition(def);
      expectViolation(v, "steps", "10001 steps; the limit is 10000");
    });

    it("rejects definitions over the encoded size limit", () => {
      const def = WorkflowDefinition.fromPartial({
        id: "huge",
        steps: [{ id: "a", type: "noop", description: "d".repeat(16_000) }],
      });
      def.steps.push(...Array.from({ length: 70 }, (_, i) => ({ ...def.steps[0]!, id: `s${i}` })));
      const v = validateDefinition(def);
      expectViolation(v, "definition", "the limit is 1048576 (1 MiB)");
    });

    it("caps the number of violations it lists", () => {
      const steps = Array.from({ length: 500 }, (_, i) => ({ id: `s${i}`, type: "nope" }));
      const v = validateDefinition(WorkflowDefinition.fromPartial({ id: "wf", steps }));
      expect(v).toHaveLength(DEFINITION_LIMITS.maxViolations + 1);
      expectViolation(v, "definition", "300 more violations not listed");
    });

    it("handles a 10,000-step chain quickly (iterative graph algorithms)", () => {
      const n = DEFINITION_LIMITS.maxSteps;
      const steps = Array.from({ length: n }, (_, i) => ({
        id: `s${i}`,
        type: "noop",
        next: i + 1 < n ? [{ to: `s${i + 1}` }] : [],
      }));
      steps[n - 1]!.next = [{ to: "s0" }];
      const v = validateDefinition(WorkflowDefinition.fromPartial({ id: "chain", steps }));
      expect(v).toHaveLength(2);
      expectViolation(v, "steps[9999].next[0].to", "cycle: s0 → s1 → s2");
      expect(v.find((x) => x.description.startsWith("cycle"))?.description).toMatch(
        / → s9999 → s0$/,
      );
      expectViolation(v, "steps", "no start step");
    });
  });
});
