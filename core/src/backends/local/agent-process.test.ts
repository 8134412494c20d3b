// Starting the local agent when it misbehaves: a start that times out must not leave core's
// event loop held by the agent's pipe or process handle.
import fs from "node:fs";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { connectOrStartAgent } from "./agent-process.js";
import { tempDataDir, waitFor } from "./test-support.js";

const started: number[] = [];

afterEach(() => {
  for (const pid of started.splice(0)) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
});

/** Handles that keep the event loop alive, by kind (unref'd ones do not count). */
function liveHandles(): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const kind of process.getActiveResourcesInfo()) counts[kind] = (counts[kind] ?? 0) + 1;
  return { ProcessWrap: counts.ProcessWrap ?? 0, PipeWrap: counts.PipeWrap ?? 0 };
}

describe("connectOrStartAgent", () => {
  it("times out on an agent that never says ready, and lets go of it", async () => {
    const dir = tempDataDir();
    const pidFile = path.join(dir, "fake.pid");
    const binary = path.join(dir, "silent-agent");
    fs.writeFileSync(binary, `#!/bin/sh\necho $$ > '${pidFile}'\nexec sleep 60\n`, {
      mode: 0o755,
    });
    const before = liveHandles();
    await expect(
      connectOrStartAgent({
        agentDir: path.join(dir, "agent"),
        binary,
        timeoutMs: 300,
        onEvent: () => {},
        onClose: () => {},
      }),
    ).rejects.toThrow("the local agent did not start within 300 ms");
    await waitFor(() => fs.existsSync(pidFile), "the fake agent's pid file");
    started.push(Number(fs.readFileSync(pidFile, "utf8").trim()));
    // The pipe closes asynchronously after destroy(); before the fix it never did.
    await waitFor(
      () => JSON.stringify(liveHandles()) === JSON.stringify(before),
      "the agent's pipe and process handles to be released",
      2000,
    );
  });
});
