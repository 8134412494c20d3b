import { ParamType, type Trigger } from "@kaon/proto";
import { describe, expect, test } from "vitest";
import { evaluateTriggerParams, TriggerParamError } from "./trigger-params.js";

function trigger(
  params: Array<{ name: string; expr?: string; value?: unknown; type?: ParamType }>,
) {
  return {
    id: "t1",
    kind: { $case: "signal", value: { name: "s" } },
    disabled: false,
    params: params.map((p) => ({
      name: p.name,
      type: p.type ?? ParamType.PARAM_TYPE_UNSPECIFIED,
      value: p.value,
      expr: p.expr ?? "",
      required: false,
      description: "",
    })),
  } as Trigger;
}

describe("trigger params", () => {
  const firing = {
    trigger: { id: "t1", kind: "signal", scheduled_ts: 1_700_000_000_000 },
    runTs: 1_700_000_000_000,
    signal: { name: "s", params: { n: 3, who: "me" } },
  };

  test("literals and expressions over trigger.*, signal.* and RUN_TS", () => {
    expect(
      evaluateTriggerParams(
        trigger([
          { name: "a", value: "lit" },
          { name: "b", expr: "signal.params.n + 1", type: ParamType.PARAM_TYPE_INT },
          { name: "c", expr: "trigger.id + '/' + signal.params.who" },
          { name: "d", expr: "tsToDateInt(RUN_TS)" },
        ]),
        firing,
      ),
    ).toEqual({ a: "lit", b: 4, c: "t1/me", d: 20231114 });
  });

  test("an error names the trigger and the param", () => {
    const bad = trigger([{ name: "b", expr: "signal.params.missing + 1" }]);
    expect(() => evaluateTriggerParams(bad, firing)).toThrow(TriggerParamError);
    expect(() => evaluateTriggerParams(bad, firing)).toThrow(/^trigger 't1' param 'b': /);
    const mistyped = trigger([
      { name: "s", expr: "signal.params.who", type: ParamType.PARAM_TYPE_INT },
    ]);
    expect(() => evaluateTriggerParams(mistyped, firing)).toThrow(
      /trigger 't1' param 's': param 's' expects INT/,
    );
  });
});
