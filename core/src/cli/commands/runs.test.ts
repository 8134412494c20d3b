import { RunStatus, StepStatus } from "@kaon/proto";
import { describe, expect, test } from "vitest";
import { CliError } from "../client.js";
import { parseParams, parseRunStatuses, parseStepStatuses, parseTags } from "./runs.js";

describe("run command arguments", () => {
  test("param values are JSON when they parse, else strings", () => {
    expect(
      parseParams(["epochs=10", 'countries=["US","BR"]', "name=hello world", "flag=true", "e="]),
    ).toEqual({ epochs: 10, countries: ["US", "BR"], name: "hello world", flag: true, e: "" });
    expect(parseParams(["expr=a=b"])).toEqual({ expr: "a=b" });
  });

  test("a param without '=' is a usage error naming it", () => {
    expect(() => parseParams(["epochs"])).toThrow(CliError);
    expect(() => parseParams(["epochs"])).toThrow(/-p 'epochs': expected name=value/);
  });

  test("tags stay strings", () => {
    expect(parseTags(["team=recs", "n=3"])).toEqual({ team: "recs", n: "3" });
    expect(() => parseTags(["team"])).toThrow(/--tag 'team'/);
  });

  test("statuses by name, case-insensitive, comma-separated or repeated", () => {
    expect(parseRunStatuses(["failed,Running", "timed-out"])).toEqual([
      RunStatus.RUN_STATUS_FAILED,
      RunStatus.RUN_STATUS_RUNNING,
      RunStatus.RUN_STATUS_TIMED_OUT,
    ]);
    expect(parseStepStatuses(["waiting_for_data"])).toEqual([
      StepStatus.STEP_STATUS_WAITING_FOR_DATA,
    ]);
    expect(() => parseRunStatuses(["done"])).toThrow(
      /--status: 'done' is not a status; use one of queued, running, succeeded, failed, stopped, timed_out/,
    );
  });
});
