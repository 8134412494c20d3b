import { describe, expect, it } from "vitest";
import { dateIntDaysBetween, dateIntToTs, dayFromDateInt, tsToDateInt } from "./dates.js";
import { evaluate } from "./expression.js";

const RUN_TS = Date.UTC(2026, 10, 21, 23, 30); // 2026-11-21T23:30Z

describe("date helpers", () => {
  it("tsToDateInt in UTC and in a timezone", () => {
    expect(tsToDateInt(RUN_TS)).toBe(20261121);
    expect(tsToDateInt(RUN_TS, "Asia/Tokyo")).toBe(20261122);
    expect(tsToDateInt(RUN_TS, "America/Los_Angeles")).toBe(20261121);
    expect(() => tsToDateInt(RUN_TS, "Mars/Olympus")).toThrow(/unknown timezone "Mars\/Olympus"/);
  });

  it("dateIntToTs gives midnight in the timezone", () => {
    expect(dateIntToTs(20261121)).toBe(Date.UTC(2026, 10, 21));
    expect(new Date(dateIntToTs(20261121, "Europe/Berlin")).toISOString()).toBe(
      "2026-11-20T23:00:00.000Z",
    );
    // Across a DST change (Berlin is UTC+2 in July).
    expect(new Date(dateIntToTs(20260701, "Europe/Berlin")).toISOString()).toBe(
      "2026-06-30T22:00:00.000Z",
    );
    expect(tsToDateInt(dateIntToTs(20260308, "America/New_York"), "America/New_York")).toBe(
      20260308,
    );
  });

  it("dayFromDateInt crosses months, years and leap days", () => {
    expect(dayFromDateInt(20261121, 10)).toBe(20261201);
    expect(dayFromDateInt(20260101, -1)).toBe(20251231);
    expect(dayFromDateInt(20280228, 1)).toBe(20280229);
    expect(dayFromDateInt(20261121, 0)).toBe(20261121);
  });

  it("dateIntDaysBetween counts whole days, signed", () => {
    expect(dateIntDaysBetween(20261101, 20261121)).toBe(20);
    expect(dateIntDaysBetween(20261121, 20261101)).toBe(-20);
    expect(dateIntDaysBetween(20251231, 20260101)).toBe(1);
  });

  it("rejects values that are not dateints", () => {
    expect(() => dayFromDateInt(2026112, 1)).toThrow("2026112 is not a dateint");
    expect(() => dayFromDateInt(20261131, 1)).toThrow("20261131 is not a calendar date");
    expect(() => dateIntDaysBetween(20261301, 20261101)).toThrow("not a calendar date");
  });

  it("are available in expressions", () => {
    const scope = { RUN_TS, params: { dateint: 20261121 } };
    const ev = (src: string) => evaluate(src, scope);
    expect(ev("tsToDateInt(RUN_TS)")).toEqual({ ok: true, value: 20261121 });
    expect(ev("tsToDateInt(RUN_TS) - 1")).toEqual({ ok: true, value: 20261120 });
    expect(ev("tsToDateInt(RUN_TS, 'Asia/Tokyo')")).toEqual({ ok: true, value: 20261122 });
    expect(ev("dayFromDateInt(params.dateint, -30)")).toEqual({ ok: true, value: 20261022 });
    expect(ev("dateIntDaysBetween(20261101, params.dateint)")).toEqual({ ok: true, value: 20 });
    expect(ev("dateIntToTs(params.dateint)")).toEqual({ ok: true, value: Date.UTC(2026, 10, 21) });
    expect(ev("dateIntToIso(params.dateint)")).toEqual({ ok: true, value: "2026-11-21" });
    const bad = ev("dayFromDateInt(20261131, 1)");
    expect(bad.ok).toBe(false);
    if (!bad.ok) expect(bad.error.message).toBe("20261131 is not a calendar date (YYYYMMDD)");
    const tz = ev("tsToDateInt(RUN_TS, 'Nowhere/Land')");
    expect(!tz.ok && tz.error.message).toContain("unknown timezone");
  });
});
