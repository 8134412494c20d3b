import { describe, expect, it } from "vitest";
import { defaultStepTypeSettings } from "../registry.js";
import { makeStepContext, recordingReporter } from "../testing.js";
import { noopStepType } from "./noop.js";
import { sleepStepType } from "./sleep.js";

const settings = defaultStepTypeSettings();

describe("noop", () => {
  it("takes no config", () => {
    expect(noopStepType.validate({}, "s.config", settings)).toEqual([]);
    expect(noopStepType.validate({ seconds: 1 }, "s.config", settings)).toEqual([
      {
        field: "s.config.seconds",
        description: "noop takes no config, got key 'seconds'",
        hint: "remove it",
      },
    ]);
  });

  it("succeeds at once", async () => {
    const { reporter } = recordingReporter();
    const ctx = makeStepContext({ workDir: "/nonexistent" });
    await expect(noopStepType.run(ctx, reporter, new AbortController().signal)).resolves.toEqual({
      succeeded: true,
    });
  });
});

describe("sleep", () => {
  it("validates seconds", () => {
    const v = (c: Record<string, unknown>) =>
      sleepStepType
        .validate(c as never, "steps[1].config", settings)
        .map((x) => `${x.field}: ${x.description}`);
    expect(v({ seconds: 1.5 })).toEqual([]);
    expect(v({})).toEqual(["steps[1].config.seconds: sleep config needs 'seconds'"]);
    expect(v({ seconds: "5" })).toEqual([
      "steps[1].config.seconds: 'seconds' must be a number, got a string \"5\"",
    ]);
    expect(v({ seconds: -1 })).toEqual([
      "steps[1].config.seconds: 'seconds' is -1; it must be between 0 and 604800",
    ]);
    expect(v({ seconds: 1, secs: 2 })).toEqual([
      "steps[1].config.secs: unknown sleep config key 'secs'",
    ]);
  });

  it("sleeps, and stops when aborted", async () => {
    const { reporter } = recordingReporter();
    const done = sleepStepType.run(
      makeStepContext({ config: { seconds: 0.01 } }),
      reporter,
      new AbortController().signal,
    );
    await expect(done).resolves.toEqual({ succeeded: true });

    const ac = new AbortController();
    const long = sleepStepType.run(
      makeStepContext({ config: { seconds: 3600 } }),
      reporter,
      ac.signal,
    );
    ac.abort(new Error("stopped by user"));
    await expect(long).rejects.toThrow("sleep interrupted: stopped by user");

    const pre = new AbortController();
    pre.abort("timeout");
    await expect(
      sleepStepType.run(makeStepContext({ config: { seconds: 1 } }), reporter, pre.signal),
    ).rejects.toThrow("sleep interrupted: timeout");
  });
});
