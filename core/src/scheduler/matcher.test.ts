import { ConstraintOperator } from "@kaon/proto";
import { describe, expect, it } from "vitest";
import { matchTasks, neverFits, type OfferSlot, unmetConstraints } from "./matcher.js";
import {
  type Admission,
  behindQuotaReason,
  emptyUsage,
  QuotaGate,
  type QuotaLimits,
  UNLIMITED,
} from "./quota.js";

const r = (cpus: number, memMb = 100) => ({ cpus, memMb, gpus: 0, diskMb: 0 });
const offer = (id: string, cpus: number, attributes: Record<string, string> = {}): OfferSlot => ({
  id,
  agentId: id,
  hostname: `${id}.local`,
  free: r(cpus, 10_000),
  attributes,
});

describe("matchTasks", () => {
  it("bin-packs onto the offer that leaves the least CPU unused", () => {
    const offers = [offer("big", 8), offer("small", 2)];
    const { placed } = matchTasks([{ resources: r(2), constraints: [] }], offers);
    expect(placed[0]?.offer.id).toBe("small");
    expect(offers[1]?.free.cpus).toBe(0);
  });

  it("says why a task waits, naming the resource and what is free", () => {
    const { placed, waiting } = matchTasks(
      [{ resources: r(4), constraints: [] }],
      [offer("a", 1.5)],
    );
    expect(placed).toHaveLength(0);
    expect(waiting[0]?.reason).toBe("waiting for resources: needs cpus 4, 1.5 free");
  });

  it("honours hard constraints and prefers soft ones", () => {
    const gpu = {
      attribute: "pool",
      operator: ConstraintOperator.CONSTRAINT_OPERATOR_EQUALS,
      value: "gpu",
      soft: false,
    };
    const offers = [offer("cpu", 4, { pool: "cpu" }), offer("gpu", 4, { pool: "gpu" })];
    expect(matchTasks([{ resources: r(1), constraints: [gpu] }], offers).placed[0]?.offer.id).toBe(
      "gpu",
    );
    const only = matchTasks(
      [{ resources: r(1), constraints: [gpu] }],
      [offer("cpu", 4, { pool: "cpu" })],
    );
    expect(only.waiting[0]?.reason).toBe("waiting for an agent matching its constraints");
    const soft = { ...gpu, soft: true };
    expect(
      matchTasks(
        [{ resources: r(1), constraints: [soft] }],
        [offer("cpu", 1, { pool: "cpu" }), offer("gpu", 4, { pool: "gpu" })],
      ).placed[0]?.offer.id,
    ).toBe("gpu");
  });

  it("stops scanning after a run of tasks that fit nowhere", () => {
    const tasks = Array.from({ length: 100 }, () => ({ resources: r(10), constraints: [] }));
    const { waiting } = matchTasks(tasks, [offer("a", 1)], 5);
    expect(waiting).toHaveLength(5);
  });

  it("knows a task that can never fit", () => {
    const agents = [{ agentId: "a", hostname: "a", total: r(2, 1000), attributes: {} }];
    expect(neverFits(r(1), [], agents)).toBeUndefined();
    expect(neverFits(r(4), [], agents)).toContain("cpus 4");
  });
});

describe("tasks whose constraints no agent meets (review Q1)", () => {
  const pool = (value: string, operator = ConstraintOperator.CONSTRAINT_OPERATOR_EQUALS) => ({
    attribute: "pool",
    operator,
    value,
    soft: false,
  });

  it("are not misses: work behind them is still placed", () => {
    const gpu = [pool("gpu")];
    const blocked = Array.from({ length: 100 }, () => ({ resources: r(1), constraints: gpu }));
    const last = { resources: r(1), constraints: [] };
    const { placed, waiting } = matchTasks([...blocked, last], [offer("a", 4, { pool: "cpu" })]);
    expect(placed.map((p) => p.task)).toEqual([last]);
    expect(waiting).toHaveLength(100);
    expect(waiting[99]?.reason).toBe("waiting for an agent matching its constraints");
  });

  it("say which constraint no agent meets and what the agents have", () => {
    const one = [{ agentId: "a", hostname: "a.local", total: r(4), attributes: { pool: "cpu" } }];
    expect(unmetConstraints([pool("gpu")], one)).toBe(
      'no agent meets its constraint pool EQUALS "gpu": agent a.local has pool=cpu',
    );
    expect(unmetConstraints([pool("cpu")], one)).toBeUndefined();
    expect(
      unmetConstraints(
        [
          {
            attribute: "zone",
            operator: ConstraintOperator.CONSTRAINT_OPERATOR_EXISTS,
            value: "",
            soft: false,
          },
        ],
        one,
      ),
    ).toBe(
      "no agent meets its constraint zone EXISTS: agent a.local has no attribute 'zone' (it has pool=cpu)",
    );
    expect(unmetConstraints([{ ...pool("gpu"), soft: true }], one)).toBeUndefined();
    // No agent known yet: unknown, never "never".
    expect(unmetConstraints([pool("gpu")], [])).toBeUndefined();

    const many = [
      { agentId: "a", hostname: "a", total: r(4), attributes: { pool: "cpu", zone: "x" } },
      { agentId: "b", hostname: "b", total: r(4), attributes: { pool: "cpu" } },
      { agentId: "c", hostname: "c", total: r(4), attributes: { pool: "gpu" } },
    ];
    expect(unmetConstraints([pool("tpu")], many)).toBe(
      'no agent meets its constraint pool EQUALS "tpu": the 3 agents: 2 agents with pool=cpu, 1 agent with pool=gpu',
    );
    const zoneX = {
      attribute: "zone",
      operator: ConstraintOperator.CONSTRAINT_OPERATOR_EQUALS,
      value: "x",
      soft: false,
    };
    expect(unmetConstraints([pool("gpu"), zoneX], many)).toBe(
      'no agent meets all of its constraints at once (pool EQUALS "gpu", zone EQUALS "x"): ' +
        "the 3 agents: 2 agents with pool=cpu, 1 agent with pool=gpu; " +
        "the 3 agents: 1 agent with zone=x, 2 agents without 'zone'",
    );
    expect(neverFits(r(1), [pool("tpu")], many)).toContain('pool EQUALS "tpu"');
  });
});

describe("matchTasks with namespace quotas", () => {
  type NsTask = { ns: string; resources: ReturnType<typeof r>; constraints: [] };
  const task = (ns: string, cpus = 1): NsTask => ({ ns, resources: r(cpus), constraints: [] });
  const gate = (limits: Record<string, Partial<QuotaLimits>>, usage: Record<string, number> = {}) =>
    new QuotaGate<NsTask>(
      (ns) => (limits[ns] ? { ...UNLIMITED, ...limits[ns] } : undefined),
      new Map(
        Object.entries(usage).map(([ns, tasks]) => [ns, { ...emptyUsage(), tasks, cpus: tasks }]),
      ),
      (t) => t.ns,
      (t) => t.resources,
    );

  it("places up to the task quota and says why the rest wait", () => {
    const tasks = [task("ml"), task("ml"), task("ml")];
    const { placed, waiting } = matchTasks(
      tasks,
      [offer("a", 8)],
      32,
      gate({ ml: { maxTasks: 2 } }),
    );
    expect(placed).toHaveLength(2);
    expect(waiting.map((w) => w.reason)).toEqual(["namespace 'ml' quota: 2/2 running tasks"]);
  });

  it("counts tasks already running against the quota", () => {
    const { placed, waiting } = matchTasks(
      [task("ml")],
      [offer("a", 8)],
      32,
      gate({ ml: { maxTasks: 1 } }, { ml: 1 }),
    );
    expect(placed).toHaveLength(0);
    expect(waiting[0]?.reason).toBe("namespace 'ml' quota: 1/1 running tasks");
  });

  it("never lets a namespace at its quota block another namespace queued behind it", () => {
    // 50 blocked tasks ahead of one free task: blocked tasks must not count as misses.
    const tasks = [...Array.from({ length: 50 }, () => task("ml")), task("web")];
    const { placed } = matchTasks(
      tasks,
      [offer("a", 8)],
      5,
      gate({ ml: { maxTasks: 1 } }, { ml: 1 }),
    );
    expect(placed.map((p) => p.task.ns)).toEqual(["web"]);
  });

  it("limits cpus held by a namespace; later smaller tasks do not overtake the one held back", () => {
    const tasks = [task("ml", 2), task("ml", 2), task("ml", 1)];
    const { placed, waiting } = matchTasks(tasks, [offer("a", 8)], 32, gate({ ml: { cpus: 3 } }));
    expect(placed.map((p) => p.task.resources.cpus)).toEqual([2]);
    expect(waiting.map((w) => w.reason)).toEqual([
      "namespace 'ml' quota: cpus 2/3 in use, needs 2",
      behindQuotaReason("ml"),
    ]);
  });

  it("holds back the rest of a full namespace's queue without measuring it (review Q7)", () => {
    const tasks = [task("ml", 2), ...Array.from({ length: 1000 }, () => task("ml", 1))];
    const other = task("web", 1);
    const g = gate({ ml: { cpus: 1 } }, { ml: 1 });
    let measured = 0;
    const counting: Admission<NsTask> = {
      blocked: (t) => {
        const why = g.blocked(t);
        if (why !== behindQuotaReason("ml")) measured++;
        return why;
      },
      charge: (t) => g.charge(t),
    };
    const { placed, waiting } = matchTasks([...tasks, other], [offer("a", 8)], 32, counting);
    expect(placed.map((p) => p.task)).toEqual([other]);
    expect(waiting).toHaveLength(1001);
    expect(waiting.every((w) => w.refused)).toBe(true);
    // The first ml task needs more than the limit: it holds nothing back and says so.
    expect(waiting[0]?.reason).toContain("more than the limit of 1");
    expect(waiting[1]?.reason).toBe("namespace 'ml' quota: cpus 1/1 in use, needs 1");
    expect(waiting[2]?.reason).toBe(behindQuotaReason("ml"));
    expect(measured).toBe(3); // ml's head, its first 1-cpu task, and web's task
  });

  it("keeps priority order: the first queued task of a limited namespace goes first", () => {
    const first = task("ml");
    const second = task("ml");
    const { placed } = matchTasks(
      [first, second],
      [offer("a", 8)],
      32,
      gate({ ml: { maxTasks: 1 } }),
    );
    expect(placed[0]?.task).toBe(first);
  });
});

describe("reservation for a higher-priority task that missed (review Q4)", () => {
  const withTotal = (o: OfferSlot, cpus: number): OfferSlot => ({ ...o, total: r(cpus, 10_000) });

  it("keeps lower-priority tasks off the agents that could hold the task that missed", () => {
    const big = { resources: r(4), constraints: [], priority: 100 };
    const small = Array.from({ length: 3 }, () => ({
      resources: r(1),
      constraints: [],
      priority: 0,
    }));
    const { placed, waiting } = matchTasks([big, ...small], [withTotal(offer("a", 2), 4)]);
    expect(placed).toEqual([]);
    expect(waiting.map((w) => w.reason)).toEqual([
      "waiting for resources: needs cpus 4, 2 free",
      ...small.map(
        () =>
          "waiting for resources: held for a task of priority 100 that needs cpus 4, mem 100 MiB",
      ),
    ]);
  });

  it("leaves agents that could never hold it, and tasks of the same priority, free to use", () => {
    const big = { resources: r(4), constraints: [], priority: 100 };
    const peer = { resources: r(3), constraints: [], priority: 100 };
    const low = { resources: r(1), constraints: [], priority: 0 };
    const offers = [withTotal(offer("large", 3), 8), withTotal(offer("tiny", 2), 2)];
    const { placed } = matchTasks([big, peer, low, low, low], offers);
    // peer (same priority) may use the reserved agent; low goes to the agent too small for big.
    expect(placed.map((p) => [p.task.priority, p.offer.id])).toEqual([
      [100, "large"],
      [0, "tiny"],
      [0, "tiny"],
    ]);
  });

  it("reserves nothing for tasks without a priority (the old behaviour)", () => {
    const { placed } = matchTasks(
      [
        { resources: r(4), constraints: [] },
        { resources: r(1), constraints: [] },
      ],
      [offer("a", 2)],
    );
    expect(placed).toHaveLength(1);
  });
});

describe("reasons that tell the truth (review Q8)", () => {
  it("returns the tasks left unscanned behind the miss limit, so their old reasons go", () => {
    const tasks = Array.from({ length: 8 }, () => ({ resources: r(10), constraints: [] }));
    const { waiting, unscanned } = matchTasks(tasks, [offer("a", 1)], 5);
    expect(waiting).toHaveLength(5);
    expect(unscanned).toEqual(tasks.slice(5));
  });

  it("measures the shortfall against the offer closest to fitting, not the one with most cpus", () => {
    const many: OfferSlot = { ...offer("many", 8), free: r(8, 100) };
    const near: OfferSlot = { ...offer("near", 1.5), free: r(1.5, 10_000) };
    const { waiting } = matchTasks([{ resources: r(2, 1000), constraints: [] }], [many, near]);
    expect(waiting[0]?.reason).toBe("waiting for resources: needs cpus 2, 1.5 free");
  });
});
