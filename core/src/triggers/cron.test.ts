import { describe, expect, test } from "vitest";
import { cronSchedule } from "./cron.js";

const at = (iso: string) => Date.parse(iso);

describe("cron schedules", () => {
  test("the timezone decides the instant of a wall-clock time, across daylight saving", () => {
    const la = cronSchedule("0 3 * * *", "America/Los_Angeles");
    // 03:00 PST is 11:00Z in winter; 03:00 PDT is 10:00Z in summer.
    expect(la.next(at("2026-01-10T00:00:00Z"))).toBe(at("2026-01-10T11:00:00Z"));
    expect(la.next(at("2026-07-10T00:00:00Z"))).toBe(at("2026-07-10T10:00:00Z"));
    const utc = cronSchedule("0 3 * * *");
    expect(utc.timezone).toBe("UTC");
    expect(utc.next(at("2026-01-10T00:00:00Z"))).toBe(at("2026-01-10T03:00:00Z"));
    const tokyo = cronSchedule("0 3 * * *", "Asia/Tokyo");
    expect(tokyo.next(at("2026-01-10T00:00:00Z"))).toBe(at("2026-01-10T18:00:00Z"));
  });

  test("next is strictly after the given instant, on whole seconds", () => {
    const everySecond = cronSchedule("* * * * * *");
    expect(everySecond.next(at("2026-01-01T00:00:00.000Z"))).toBe(at("2026-01-01T00:00:01Z"));
    expect(everySecond.next(at("2026-01-01T00:00:00.400Z"))).toBe(at("2026-01-01T00:00:01Z"));
  });

  test("latestIn finds the last planned time of a long window, or none", () => {
    const daily = cronSchedule("30 4 * * *", "Europe/Berlin");
    // Down from Jan 1 to Mar 15 10:00Z: the latest missed fire is Mar 15 04:30 CET = 03:30Z.
    expect(daily.latestIn(at("2026-01-01T00:00:00Z"), at("2026-03-15T10:00:00Z"))).toBe(
      at("2026-03-15T03:30:00Z"),
    );
    // The window's end is inclusive, its start exclusive.
    expect(daily.latestIn(at("2026-03-14T03:30:00Z"), at("2026-03-15T03:30:00Z"))).toBe(
      at("2026-03-15T03:30:00Z"),
    );
    expect(daily.latestIn(at("2026-03-15T03:30:00Z"), at("2026-03-16T03:29:59Z"))).toBeUndefined();
    const hourThree = cronSchedule("* * 3 * * *");
    expect(hourThree.latestIn(at("2026-01-01T00:00:00Z"), at("2026-01-05T05:00:00Z"))).toBe(
      at("2026-01-05T03:59:59Z"),
    );
  });
});
