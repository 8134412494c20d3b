// Date helpers for expressions, in the style of Meson's macros: ML pipelines partition data
// by "dateint" (20261121), so params are usually derived from the run's clock (RUN_TS, epoch
// milliseconds) as dateints in a timezone, and shifted by days. Pure functions on numbers;
// ./environment.ts adapts them to CEL ints.

const MS_PER_DAY = 86_400_000;

export class DateError extends Error {}

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatterFor(tz: string): Intl.DateTimeFormat {
  let f = formatters.get(tz);
  if (f === undefined) {
    try {
      f = new Intl.DateTimeFormat("en-US", {
        timeZone: tz,
        hourCycle: "h23",
        year: "numeric",
        month: "numeric",
        day: "numeric",
        hour: "numeric",
        minute: "numeric",
        second: "numeric",
      });
    } catch {
      throw new DateError(
        `unknown timezone ${JSON.stringify(tz)}; use an IANA name such as "UTC" or "America/Los_Angeles"`,
      );
    }
    if (formatters.size > 500) formatters.clear();
    formatters.set(tz, f);
  }
  return f;
}

/** Wall-clock fields of instant `ms` in `tz`. */
function wallClock(ms: number, tz: string) {
  const fields: Record<string, number> = {};
  for (const part of formatterFor(tz).formatToParts(new Date(ms))) {
    if (part.type !== "literal") fields[part.type] = Number(part.value);
  }
  return {
    year: fields.year ?? 0,
    month: fields.month ?? 0,
    day: fields.day ?? 0,
    hour: fields.hour ?? 0,
    minute: fields.minute ?? 0,
    second: fields.second ?? 0,
  };
}

function checkTs(ms: number): void {
  if (!Number.isFinite(ms) || Math.abs(ms) > 8.64e15) {
    throw new DateError(`timestamp ${ms} is not a valid epoch-milliseconds value`);
  }
}

/** Epoch milliseconds -> dateint (YYYYMMDD) of that instant in `tz` (default UTC). */
export function tsToDateInt(ms: number, tz = "UTC"): number {
  checkTs(ms);
  if (tz === "UTC") {
    const d = new Date(ms);
    return d.getUTCFullYear() * 10000 + (d.getUTCMonth() + 1) * 100 + d.getUTCDate();
  }
  const w = wallClock(ms, tz);
  return w.year * 10000 + w.month * 100 + w.day;
}

/** Splits and checks a dateint; throws naming the bad value. */
export function parseDateInt(dateint: number): { year: number; month: number; day: number } {
  if (!Number.isInteger(dateint) || dateint < 10000101 || dateint > 99991231) {
    throw new DateError(`${dateint} is not a dateint (YYYYMMDD, e.g. 20261121)`);
  }
  const year = Math.floor(dateint / 10000);
  const month = Math.floor(dateint / 100) % 100;
  const day = dateint % 100;
  const probe = new Date(Date.UTC(year, month - 1, day));
  if (
    probe.getUTCFullYear() !== year ||
    probe.getUTCMonth() !== month - 1 ||
    probe.getUTCDate() !== day
  ) {
    throw new DateError(`${dateint} is not a calendar date (YYYYMMDD)`);
  }
  return { year, month, day };
}

function utcMidnight(dateint: number): number {
  const { year, month, day } = parseDateInt(dateint);
  return Date.UTC(year, month - 1, day);
}

function fromUtcMs(ms: number): number {
  const d = new Date(ms);
  return d.getUTCFullYear() * 10000 + (d.getUTCMonth() + 1) * 100 + d.getUTCDate();
}

/** Dateint -> epoch milliseconds of its midnight in `tz` (default UTC). */
export function dateIntToTs(dateint: number, tz = "UTC"): number {
  const guess = utcMidnight(dateint);
  if (tz === "UTC") return guess;
  const offsetAt = (ms: number) => {
    const w = wallClock(ms, tz);
    return (
      Date.UTC(w.year, w.month - 1, w.day, w.hour, w.minute, w.second) -
      Math.floor(ms / 1000) * 1000
    );
  };
  const first = guess - offsetAt(guess);
  return guess - offsetAt(first);
}

/** The dateint `days` days after `dateint` (negative: before). */
export function dayFromDateInt(dateint: number, days: number): number {
  if (!Number.isInteger(days) || Math.abs(days) > 3_000_000) {
    throw new DateError(`${days} is not a usable number of days`);
  }
  const result = fromUtcMs(utcMidnight(dateint) + days * MS_PER_DAY);
  parseDateInt(result);
  return result;
}

/** Whole days from dateint `a` to dateint `b` (negative when b is earlier). */
export function dateIntDaysBetween(a: number, b: number): number {
  return Math.round((utcMidnight(b) - utcMidnight(a)) / MS_PER_DAY);
}
