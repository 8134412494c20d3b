// The workflow CLI commands against a real server (WorkflowService on SQLite), run in-process
// the way main.ts runs them: same global options, same error printing and exit codes.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { WorkflowServiceDefinition } from "@kaon/proto";
import { Command, CommanderError } from "commander";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { registerService } from "../../api/registration.js";
import { startTestKaon, type TestKaon } from "../../api/testing.js";
import { createWorkflowService } from "../../api/workflow-service.js";
import { silentLogger } from "../../log.js";
import { type Db, openDatabase } from "../../store/db.js";
import { CliContext, type GlobalOptions } from "../client.js";
import { gitInfo, register } from "./workflows.js";

let kaon: TestKaon;
let db: Db;
let dir: string;
let env: Record<string, string>;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "kaon-cli-wf-"));
  db = await openDatabase({ url: `sqlite:${join(dir, "db", "kaon.db")}` });
  const impl = createWorkflowService({ db, log: silentLogger });
  kaon = await startTestKaon({ services: [registerService(WorkflowServiceDefinition, impl)] });
  env = { KAON_ADDRESS: kaon.kaon.grpcAddress, KAON_TOKEN: kaon.adminToken, KAON_HOME: dir };
});
afterAll(async () => {
  await kaon?.stop();
  await db?.destroy();
  rmSync(dir, { recursive: true, force: true });
});

async function cli(
  args: string[],
  environment: Record<string, string> = env,
): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const program = new Command("kaon")
    .option("--address <host:port>")
    .option("--token <token>")
    .option("--json")
    .option("--data-dir <dir>")
    .exitOverride()
    .configureOutput({ writeOut: (t) => out.push(t), writeErr: (t) => err.push(t) });
  const ctx = new CliContext(
    () => program.opts<GlobalOptions>(),
    (t) => out.push(t),
    (t) => err.push(t),
    environment,
  );
  register(program, ctx);
  for (const sub of program.commands) sub.exitOverride();
  let code = 0;
  try {
    await program.parseAsync(["node", "kaon", ...args]);
  } catch (error) {
    if (error instanceof CommanderError) {
      code = error.exitCode === 0 ? 0 : 2;
    } else {
      const described = ctx.describeError(error);
      err.push(`error: ${described.message}\n`);
      code = described.exitCode;
    }
  } finally {
    ctx.close();
  }
  return { code, out: out.join(""), err: err.join("") };
}

function file(name: string, text: string, base = dir): string {
  const path = join(base, name);
  writeFileSync(path, text);
  return path;
}

const GOOD =
  "id: cli-wf\ndescription: from the cli\nsteps:\n  - {id: a, type: noop, next: [{to: b}]}\n  - {id: b, type: noop}\n";

describe("kaon validate", () => {
  it("reports a valid file with its content hash", async () => {
    const r = await cli(["validate", file("good.yaml", GOOD)]);
    expect(r).toMatchObject({ code: 0, err: "" });
    expect(r.out).toMatch(/workflow 'cli-wf' is valid \(content hash [0-9a-f]{12}\)/);
  });

  it("prints the server's violations with field paths and file positions, exit 1", async () => {
    const path = file(
      "bad.yaml",
      GOOD.replace("{to: b}", "{to: bb}").replace("type: noop}", "type: nop}"),
    );
    const r = await cli(["validate", path]);
    expect(r.code).toBe(1);
    expect(r.err).toContain("the definition is invalid (2 problems)");
    expect(r.err).toContain(
      `  steps[0].next[0].to: step 'a': unknown successor 'bb' [${path}:4:33] (did you mean 'b'?)`,
    );
    expect(r.err).toContain("steps[1].type: step 'b': unknown step type 'nop'");
    // Violations come in definition order.
    expect(r.err.indexOf("steps[0].next[0].to")).toBeLessThan(r.err.indexOf("steps[1].type"));
  });

  it("reports syntax and schema errors before calling the server", async () => {
    const r = await cli(
      ["validate", file("typo.yaml", "id: x\nsteps:\n  - {id: a, type: noop, nxt: []}\n")],
      {
        ...env,
        KAON_ADDRESS: "127.0.0.1:1",
      },
    );
    expect(r.code).toBe(1);
    expect(r.err).toContain("steps[0].nxt: unknown field 'nxt'");
    expect(r.err).toContain("did you mean 'next'?");
  });

  it("says clearly when no server is running, and --local works without one", async () => {
    const path = file("good2.yaml", GOOD);
    const down = await cli(["validate", path], { ...env, KAON_ADDRESS: "127.0.0.1:1" });
    expect(down.code).toBe(3);
    expect(down.err).toContain("cannot reach a kaon server at 127.0.0.1:1");
    expect(down.err).toContain("kaon server");
    const local = await cli(["validate", "--local", path], { ...env, KAON_ADDRESS: "127.0.0.1:1" });
    expect(local.code).toBe(0);
    expect(local.out).toContain("is valid");
  });

  it("prints the Validate response as JSON with --json", async () => {
    const r = await cli(["--json", "validate", file("good3.yaml", GOOD)]);
    expect(r.code).toBe(0);
    const body = JSON.parse(r.out) as { contentHash: string; canonical: { id: string } };
    expect(body.canonical.id).toBe("cli-wf");
    expect(body.contentHash).toMatch(/^[0-9a-f]{64}$/);
  });
});

describe("kaon deploy and friends", () => {
  it("deploys from a git checkout with SCM metadata, then lists, activates and deletes", async () => {
    const repo = mkdtempSync(join(dir, "repo-"));
    const git = (...args: string[]) =>
      execFileSync(
        "git",
        ["-C", repo, "-c", "user.name=Ann Dev", "-c", "user.email=ann@example.com", ...args],
        {
          encoding: "utf8",
        },
      );
    git("init", "-q", "-b", "main");
    const path = file("pipeline.yaml", GOOD.replace("cli-wf", "git-wf"), repo);
    git("add", ".");
    git("commit", "-q", "-m", "first");
    const commit = git("rev-parse", "HEAD").trim();

    const first = await cli(["deploy", path]);
    expect(first).toMatchObject({ code: 0, err: "" });
    expect(first.out).toBe("deployed git-wf version 1 (active)\n");
    const same = await cli(["deploy", path]);
    expect(same.out).toBe("unchanged: git-wf version 1 already has this content (active)\n");

    writeFileSync(path, GOOD.replace("cli-wf", "git-wf").replace("from the cli", "changed"));
    expect(await gitInfo(path)).toMatchObject({
      commit,
      branch: "main",
      dirty: true,
      author: "Ann Dev <ann@example.com>",
    });
    const second = await cli(["--json", "deploy", "--no-activate", path]);
    const deployed = JSON.parse(second.out) as {
      created: boolean;
      version: {
        version: number;
        active?: boolean;
        scm: Record<string, unknown>;
        client: Record<string, unknown>;
      };
    };
    expect(deployed.created).toBe(true);
    expect(deployed.version.version).toBe(2);
    expect(deployed.version.active).toBeUndefined();
    expect(deployed.version.scm).toMatchObject({ commit, branch: "main", dirty: true });
    expect(deployed.version.client).toMatchObject({ name: "kaon-cli" });

    const versions = await cli(["versions", "git-wf"]);
    expect(versions.code).toBe(0);
    const lines = versions.out.trim().split("\n");
    expect(lines[0]).toMatch(
      /^VERSION\s+CREATED\s+HASH\s+COMMIT\s+BRANCH\s+DIRTY\s+AUTHOR\s+CLIENT$/,
    );
    expect(lines[1]).toMatch(/^2 {2,}.*main\s+yes\s+Ann Dev <ann@example.com>\s+kaon-cli 0\.1\.0$/);
    expect(lines[2]).toMatch(/^1 \*/);

    const list = await cli(["workflows", "--id-contains", "git"]);
    expect(list.out).toMatch(/^ID\s+NAMESPACE\s+ACTIVE\s+LATEST\s+OWNER\s+UPDATED\s+DESCRIPTION\n/);
    expect(list.out).toMatch(/git-wf\s+default\s+1\s+2\s+/);
    const listJson = JSON.parse(
      (await cli(["--json", "workflows", "--id-contains", "git"])).out,
    ) as {
      workflows: Array<{ id: string }>;
    };
    expect(listJson.workflows.map((w) => w.id)).toEqual(["git-wf"]);

    const activated = await cli(["activate", "git-wf", "2"]);
    expect(activated.out).toBe("workflow git-wf: version 2 is active (latest is 2)\n");
    const shown = await cli(["workflow", "git-wf"]);
    expect(shown.out).toContain("workflow git-wf version 2 (active)");
    expect(shown.out).toContain(`commit:    ${commit} (dirty) on main`);

    const badVersion = await cli(["activate", "git-wf", "nine"]);
    expect(badVersion.code).toBe(2);
    const missing = await cli(["activate", "git-wf", "9"]);
    expect(missing.code).toBe(1);
    expect(missing.err).toContain("NOT_FOUND: workflow 'git-wf' has no version 9");

    expect((await cli(["delete", "git-wf"])).out).toBe("deleted workflow git-wf\n");
    const gone = await cli(["versions", "git-wf"]);
    expect(gone.code).toBe(1);
    expect(gone.err).toContain("NOT_FOUND: workflow 'git-wf' not found");
  });

  it("deploys outside a git checkout without SCM metadata and prints server violations", async () => {
    expect(await gitInfo(join(tmpdir(), "x.yaml"))).toBeUndefined();
    const bad = await cli([
      "deploy",
      file("bad-deploy.yaml", "id: d\nsteps: [{id: a, type: noop, resources: {gpus: 0.5}}]\n"),
    ]);
    expect(bad.code).toBe(1);
    expect(bad.err).toContain("steps[0].resources.gpus: step 'a': gpus 0.5 is not a whole number");
  });
});
