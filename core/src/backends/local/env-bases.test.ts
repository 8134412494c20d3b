import { describe, expect, it } from "vitest";
import { type EncodedEnv, EnvBases } from "./env-bases.js";

/** What the agent does with the encoded form (core/agent/env.go). */
class AgentSide {
  private readonly bases = new Map<number, Record<string, string>>();
  apply(e: EncodedEnv): Record<string, string> {
    if (e.define) this.bases.set(e.define.envId, { ...e.define.env });
    const base = this.bases.get(e.envId);
    if (!base) throw new Error(`envId ${e.envId} not defined`);
    return { ...base, ...e.env };
  }
}

const common = { HOME: "/root", KAON_RUN_ID: "r1", KAON_ENDPOINT: "127.0.0.1:1", LANG: "C" };
const task = (i: number, extra: Record<string, string> = {}) => ({
  ...common,
  KAON_PATH: `fe[${i}]/t`,
  KAON_TOKEN: `tok-${i}`,
  ...extra,
});

describe("EnvBases", () => {
  it("defines a base once and then sends only what differs", () => {
    const bases = new EnvBases();
    const agent = new AgentSide();
    const first = bases.encode(task(0));
    expect(first.define).toBeDefined();
    expect(agent.apply(first)).toEqual(task(0));
    for (let i = 1; i < 20; i++) {
      const e = bases.encode(task(i));
      expect(e.define).toBeUndefined();
      expect(e.env).toEqual({ KAON_PATH: `fe[${i}]/t`, KAON_TOKEN: `tok-${i}` });
      expect(agent.apply(e)).toEqual(task(i));
    }
  });

  it("never uses a base with a variable the launch lacks, nor one that differs too much", () => {
    const bases = new EnvBases();
    const agent = new AgentSide();
    agent.apply(bases.encode(task(0, { EXTRA: "1" })));
    const without = bases.encode(task(1)); // EXTRA cannot be removed: a new base
    expect(without.define).toBeDefined();
    expect(agent.apply(without)).toEqual(task(1));
    const other = { A: "1", B: "2", C: "3", HOME: "/root" };
    const e = bases.encode(other);
    expect(e.define).toBeDefined();
    expect(agent.apply(e)).toEqual(other);
    // Names of Object's methods are plain variables.
    const odd = { ...other, constructor: "c", toString: "t", __proto__x: "p" };
    expect(agent.apply(bases.encode(odd))).toEqual(odd);
    expect(agent.apply(bases.encode({}))).toEqual({});
  });

  it("keeps a few bases, reusing the least recently used one's id", () => {
    const bases = new EnvBases();
    const agent = new AgentSide();
    const ids = new Set<number>();
    for (let run = 0; run < 20; run++) {
      for (let i = 0; i < 3; i++) {
        const env = { RUN: `run-${run}`, X: "x", Y: "y", I: String(i) };
        const e = bases.encode(env);
        ids.add(e.envId);
        expect(agent.apply(e)).toEqual(env);
      }
    }
    expect(Math.max(...ids)).toBeLessThan(8);
    expect(Math.min(...ids)).toBeGreaterThanOrEqual(0);
  });
});
