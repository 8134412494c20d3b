import { describe, expect, it } from "vitest";
import { emptyUsage, quotaBlock, UNLIMITED } from "./quota.js";

const need = (cpus: number, memMb = 256, gpus = 0) => ({ cpus, memMb, gpus, diskMb: 0 });

describe("quotaBlock", () => {
  it("lets anything through an unlimited quota", () => {
    expect(quotaBlock("ml", UNLIMITED, { ...emptyUsage(), tasks: 1000 }, need(64))).toBeUndefined();
  });

  it("names the namespace, the dimension, what is used and the limit", () => {
    const limits = { ...UNLIMITED, maxTasks: 4, memMb: 1024 };
    expect(quotaBlock("ml", limits, { ...emptyUsage(), tasks: 4 }, need(1))).toBe(
      "namespace 'ml' quota: 4/4 running tasks",
    );
    expect(quotaBlock("ml", limits, { ...emptyUsage(), tasks: 1, memMb: 900 }, need(1))).toBe(
      "namespace 'ml' quota: mem 900/1024 MiB in use, needs 256",
    );
    expect(
      quotaBlock("ml", { ...UNLIMITED, gpus: 2 }, { ...emptyUsage(), gpus: 2 }, need(1, 1, 1)),
    ).toBe("namespace 'ml' quota: gpus 2/2 in use, needs 1");
  });

  it("says when a task is larger than the quota itself", () => {
    expect(quotaBlock("ml", { ...UNLIMITED, cpus: 2 }, emptyUsage(), need(4))).toContain(
      "needs cpus 4, more than the limit of 2",
    );
  });

  it("allows a task that fits exactly", () => {
    expect(
      quotaBlock("ml", { ...UNLIMITED, cpus: 4 }, { ...emptyUsage(), cpus: 3 }, need(1)),
    ).toBeUndefined();
  });
});
