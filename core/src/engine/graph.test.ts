import { type Step, Step as StepMsg } from "@kaon/proto";
import { describe, expect, it } from "vitest";
import { compileSteps, downstreamOf } from "./graph.js";

const step = (id: string, next: string[] = [], extra: Partial<Step> = {}): Step =>
  StepMsg.fromPartial({ id, type: "noop", next: next.map((to) => ({ to })), ...extra });

describe("compileSteps", () => {
  it("computes in-degrees, roots, sinks and downstream sets", () => {
    const g = compileSteps(
      [step("a", ["b", "c"]), step("b", ["d"]), step("c", ["d"]), step("d")],
      "steps",
    );
    expect(g.roots).toEqual([0]);
    expect(g.sinks).toEqual([3]);
    expect(g.nodes[3]?.inDegree).toBe(2);
    expect([...downstreamOf(g, 1)].sort()).toEqual([1, 3]);
  });

  it("compiles container bodies and rejects cycles and unknown successors", () => {
    const g = compileSteps(
      [
        step("fe", [], {
          type: "foreach",
          foreach: { axes: [], concurrency: 0, body: [step("x")] },
        }),
      ],
      "steps",
    );
    expect(g.nodes[0]?.body?.nodes[0]?.id).toBe("x");
    expect(() =>
      compileSteps([step("a", ["b"]), step("b", ["a"]), step("c", ["a"])], "steps"),
    ).toThrow(/cycle/);
    expect(() => compileSteps([step("a", ["zz"])], "steps")).toThrow(/unknown successor 'zz'/);
  });
});
