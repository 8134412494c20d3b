// `kaon job …` against a real nice-grpc JobService test implementation: each command reports
// one thing and has flushed it when it returns; outside a job it fails with a clear message.
import { Command } from "commander";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { JOB_TOKEN, JobState, startJobServer } from "../../../../sdk-ts/test/job-server.js";
import type { TestServer } from "../../../../sdk-ts/test/support.js";
import { CliContext, CliError } from "../client.js";
import { parseOutputValue, register } from "./job.js";

let state: JobState;
let server: TestServer;

beforeAll(async () => {
  state = new JobState();
  server = await startJobServer(state);
});
afterAll(async () => {
  await server?.stop();
});

async function kaon(args: string[], env: Record<string, string | undefined>) {
  const printed: string[] = [];
  const program = new Command("kaon").exitOverride().option("--json");
  const ctx = new CliContext(
    () => program.opts(),
    (t) => printed.push(t),
    () => undefined,
    env,
  );
  register(program, ctx, env);
  await program.parseAsync(["node", "kaon", ...args]);
  return printed.join("");
}

const inJob = () => ({ KAON_ENDPOINT: server.address, KAON_TOKEN: JOB_TOKEN });

describe("kaon job", () => {
  test("VALUE is JSON when it parses, else a string", () => {
    expect(parseOutputValue("0.91")).toBe(0.91);
    expect(parseOutputValue('["US","BR"]')).toEqual(["US", "BR"]);
    expect(parseOutputValue("true")).toBe(true);
    expect(parseOutputValue("hello world")).toBe("hello world");
    expect(parseOutputValue('"quoted"')).toBe("quoted");
  });

  test("each command has delivered its report when it returns", async () => {
    const before = state.items.length;
    await kaon(["job", "output", "auc", "0.91"], inJob());
    await kaon(["job", "output", "name", "plain text"], inJob());
    await kaon(["job", "progress", "40", "training"], inJob());
    await kaon(["job", "milestone", "trained"], inJob());
    await kaon(["job", "link", "dash", "http://dash/1"], inJob());
    await kaon(["job", "counter", "rows", "12.5"], inJob());
    await kaon(["job", "message", "disk almost full", "--level", "warning"], inJob());
    const kinds = state.items.slice(before).map((i) => i.kind);
    expect(kinds).toEqual([
      { $case: "output", value: { name: "auc", value: 0.91 } },
      { $case: "output", value: { name: "name", value: "plain text" } },
      { $case: "progress", value: { percent: 40, message: "training" } },
      { $case: "milestone", value: "trained" },
      { $case: "link", value: { name: "dash", url: "http://dash/1" } },
      { $case: "counter", value: { name: "rows", delta: 12.5 } },
      expect.objectContaining({ $case: "message" }),
    ]);
    // Separate processes (here: separate reporters) keep increasing sequences.
    const seqs = state.applied;
    expect([...seqs].sort((a, b) => a - b)).toEqual(seqs);
    expect(new Set(seqs).size).toBe(seqs.length);
  });

  test("artifact with partitions, uri and metadata", async () => {
    const out = await kaon(
      [
        "job",
        "artifact",
        "cohort",
        "--partition",
        "country=US",
        "--partition",
        "dateint=20261121",
        "--uri",
        "s3://b/c",
        "--metadata",
        '{"rows": 3}',
      ],
      inJob(),
    );
    expect(out).toContain("announced cohort (revision 1)");
    expect(state.artifacts.at(-1)).toMatchObject({
      name: "cohort",
      partitions: { country: "US", dateint: "20261121" },
      uri: "s3://b/c",
      metadata: { rows: 3 },
    });
  });

  test("bad input and outside a job are clear errors", async () => {
    await expect(kaon(["job", "output", "x", "1"], {})).rejects.toThrow(
      /kaon job: not inside a kaon job: KAON_ENDPOINT and KAON_TOKEN are not set/,
    );
    await expect(kaon(["job", "progress", "lots"], inJob())).rejects.toThrow(
      /PERCENT: 'lots' is not a number/,
    );
    await expect(kaon(["job", "message", "x", "--level", "loud"], inJob())).rejects.toThrow(
      CliError,
    );
    await expect(
      kaon(["job", "artifact", "a", "--uri", "u", "--metadata", "[1]"], inJob()),
    ).rejects.toThrow(/--metadata: '\[1\]' is not a JSON object/);
    await expect(
      kaon(["job", "artifact", "a", "--partition", "nokey", "--uri", "u"], inJob()),
    ).rejects.toThrow(/--partition: 'nokey' is not key=value/);
  });
});
