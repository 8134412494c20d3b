// Workflow commands: `validate FILE`, `deploy FILE`, `workflows`, `versions WF`,
// `activate WF VERSION`, `delete WF`. Definition files are decoded here (so syntax errors
// carry file positions before anything is sent), checked by the server's Validate/Deploy,
// and every violation the server returns is printed with its field path and file position.
import { execFile } from "node:child_process";
import { hostname, userInfo } from "node:os";
import { dirname, resolve } from "node:path";
import { promisify } from "node:util";
import {
  ActivateResponse,
  type ClientInfo,
  DeployResponse,
  type FieldViolation,
  GetWorkflowResponse,
  ListVersionsResponse,
  ListWorkflowsResponse,
  type ScmInfo,
  ValidateResponse,
  type Workflow,
  WorkflowServiceDefinition,
  type WorkflowVersion,
} from "@kaon/proto";
import { type Command, InvalidArgumentError as CommanderArgumentError } from "commander";
import { canonicalize } from "../../model/canonical.js";
import { type DefinitionFile, loadDefinitionFile } from "../../model/files.js";
import { validateDefinition } from "../../model/validate.js";
import {
  type CliContext,
  CliError,
  formatTable,
  formatViolationList,
  KaonClientError,
} from "../client.js";

const run = promisify(execFile);

/** Reported as ClientInfo.name/version on deploy. */
export const CLI_CLIENT_NAME = "kaon-cli";
export const CLI_CLIENT_VERSION = "0.1.0";

export function register(program: Command, ctx: CliContext): void {
  program
    .command("validate")
    .description("check a workflow definition file (.yaml/.yml/.json) against the server's rules")
    .argument("<file>", "definition file")
    .option("--local", "validate in this process with the built-in step types (no server)")
    .action(async (file: string, options: { local?: boolean }) => {
      const loaded = await loadOrFail(file);
      const definition = loaded.definition!;
      let response: ValidateResponse;
      if (options.local) {
        const violations = validateDefinition(definition);
        const canonical = violations.length === 0 ? canonicalize(definition) : undefined;
        response = {
          violations,
          canonical: canonical?.definition,
          contentHash: canonical?.hash ?? "",
        };
      } else {
        response = await withLocations(loaded, () =>
          ctx.client(WorkflowServiceDefinition).validate({ definition }),
        );
      }
      if (response.violations.length > 0) {
        if (ctx.json) {
          ctx.printMessage(ValidateResponse, "kaon.v1.ValidateResponse", response, () => "");
          throw new CliError("", 1);
        }
        throw new CliError(invalidMessage(loaded, response.violations));
      }
      ctx.printMessage(
        ValidateResponse,
        "kaon.v1.ValidateResponse",
        response,
        () =>
          `${file}: workflow '${definition.id}' is valid (content hash ${response.contentHash.slice(0, 12)})`,
      );
    });

  program
    .command("deploy")
    .description(
      "deploy a workflow definition file as a new version (unchanged content keeps its version)",
    )
    .argument("<file>", "definition file (.yaml/.yml/.json)")
    .option(
      "--no-activate",
      "store the version without making it active (a first version is always active)",
    )
    .action(async (file: string, options: { activate: boolean }) => {
      const loaded = await loadOrFail(file);
      const [scm, client] = await Promise.all([gitInfo(file), clientInfo()]);
      const response = await withLocations(loaded, () =>
        ctx.client(WorkflowServiceDefinition).deploy({
          definition: loaded.definition,
          scm,
          client,
          activate: options.activate,
        }),
      );
      const v = response.version!;
      ctx.printMessage(DeployResponse, "kaon.v1.DeployResponse", response, () => {
        const state = v.active ? "active" : "not active";
        return response.created
          ? `deployed ${v.workflowId} version ${v.version} (${state})`
          : `unchanged: ${v.workflowId} version ${v.version} already has this content (${state})`;
      });
    });

  program
    .command("workflows")
    .description("list deployed workflows, newest deploy first")
    .option("--namespace <ns>", "only this namespace")
    .option("--id-contains <text>", "only ids containing this text")
    .option("--tag <key=value>", "only workflows with this tag (repeatable)", collectTag, {})
    .option("--limit <n>", "show at most this many (default 100)", positiveInt, 100)
    .action(
      async (options: {
        namespace?: string;
        idContains?: string;
        tag: Record<string, string>;
        limit: number;
      }) => {
        const client = ctx.client(WorkflowServiceDefinition);
        const workflows: Workflow[] = [];
        let pageToken = "";
        let more = false;
        do {
          const page = await client.listWorkflows({
            pageSize: Math.min(1000, options.limit - workflows.length),
            pageToken,
            namespace: options.namespace ?? "",
            idContains: options.idContains ?? "",
            tags: options.tag,
          });
          workflows.push(...page.workflows);
          pageToken = page.nextPageToken;
          more = pageToken !== "";
        } while (more && workflows.length < options.limit);
        const response: ListWorkflowsResponse = { workflows, nextPageToken: pageToken };
        ctx.printMessage(ListWorkflowsResponse, "kaon.v1.ListWorkflowsResponse", response, () => {
          if (workflows.length === 0) return "no workflows";
          const table = formatTable(workflows, [
            { header: "id", value: (w) => w.id },
            { header: "namespace", value: (w) => w.namespace },
            { header: "active", value: (w) => w.activeVersion },
            { header: "latest", value: (w) => w.latestVersion },
            { header: "owner", value: (w) => w.owner },
            { header: "updated", value: (w) => w.updatedAt },
            { header: "description", value: (w) => truncate(w.description, 60) },
          ]);
          return more ? `${table}\n(more workflows exist: raise --limit)` : table;
        });
      },
    );

  program
    .command("versions")
    .description("list the versions of a workflow, newest first")
    .argument("<workflow>", "workflow id")
    .option("--limit <n>", "show at most this many (default 100)", positiveInt, 100)
    .action(async (workflowId: string, options: { limit: number }) => {
      const client = ctx.client(WorkflowServiceDefinition);
      const versions: WorkflowVersion[] = [];
      let pageToken = "";
      do {
        const page = await client.listVersions({
          workflowId,
          pageSize: Math.min(1000, options.limit - versions.length),
          pageToken,
        });
        versions.push(...page.versions);
        pageToken = page.nextPageToken;
      } while (pageToken && versions.length < options.limit);
      const response: ListVersionsResponse = { versions, nextPageToken: pageToken };
      ctx.printMessage(
        ListVersionsResponse,
        "kaon.v1.ListVersionsResponse",
        response,
        () =>
          formatTable(versions, [
            { header: "version", value: (v) => `${v.version}${v.active ? " *" : ""}` },
            { header: "created", value: (v) => v.createdAt },
            { header: "hash", value: (v) => v.contentHash.slice(0, 12) },
            { header: "commit", value: (v) => v.scm?.commit.slice(0, 10) },
            { header: "branch", value: (v) => v.scm?.branch },
            { header: "dirty", value: (v) => (v.scm?.dirty ? "yes" : "") },
            { header: "author", value: (v) => v.scm?.author },
            {
              header: "client",
              value: (v) => (v.client?.name ? `${v.client.name} ${v.client.version}`.trim() : ""),
            },
          ]) + (pageToken ? "\n(more versions exist: raise --limit)" : "\n(* = active)"),
      );
    });

  program
    .command("workflow")
    .description("show one version of a workflow (the active one by default) with its definition")
    .argument("<workflow>", "workflow id")
    .argument("[version]", "version number, or 'latest'", "active")
    .action(async (workflowId: string, versionArg: string) => {
      const version =
        versionArg === "active" ? 0 : versionArg === "latest" ? -1 : parseVersion(versionArg);
      const response = await ctx
        .client(WorkflowServiceDefinition)
        .getWorkflow({ workflowId, version });
      ctx.printMessage(GetWorkflowResponse, "kaon.v1.GetWorkflowResponse", response, () => {
        const v = response.version!;
        const def = v.definition;
        return [
          `workflow ${v.workflowId} version ${v.version}${v.active ? " (active)" : ""}`,
          `  namespace: ${def?.namespace ?? ""}`,
          `  steps:     ${def?.steps.map((s) => s.id).join(", ") ?? ""}`,
          `  hash:      ${v.contentHash}`,
          `  created:   ${v.createdAt?.toISOString() ?? ""}`,
          v.scm?.commit
            ? `  commit:    ${v.scm.commit}${v.scm.dirty ? " (dirty)" : ""} on ${v.scm.branch}`
            : "",
        ]
          .filter(Boolean)
          .join("\n");
      });
    });

  program
    .command("activate")
    .description("make a version the active one (rollback or roll forward)")
    .argument("<workflow>", "workflow id")
    .argument("<version>", "version number")
    .action(async (workflowId: string, versionArg: string) => {
      const version = parseVersion(versionArg);
      const response = await ctx
        .client(WorkflowServiceDefinition)
        .activate({ workflowId, version });
      ctx.printMessage(
        ActivateResponse,
        "kaon.v1.ActivateResponse",
        response,
        () =>
          `workflow ${workflowId}: version ${response.workflow?.activeVersion} is active (latest is ${response.workflow?.latestVersion})`,
      );
    });

  program
    .command("delete")
    .description("delete a workflow and all its versions (refused while it has unfinished runs)")
    .argument("<workflow>", "workflow id")
    .action(async (workflowId: string) => {
      await ctx.client(WorkflowServiceDefinition).deleteWorkflow({ workflowId });
      ctx.print({ deleted: workflowId }, () => `deleted workflow ${workflowId}`);
    });
}

// ---------------------------------------------------------------------------------------

async function loadOrFail(file: string): Promise<DefinitionFile> {
  const loaded = await loadDefinitionFile(file);
  if (!loaded.definition) {
    throw new CliError(
      `${file} cannot be read as a workflow definition:\n${formatViolationList(loaded.violations)}`,
    );
  }
  return loaded;
}

function invalidMessage(file: DefinitionFile, violations: readonly FieldViolation[]): string {
  const n = violations.length;
  return `${file.path}: the definition is invalid (${n} problem${n === 1 ? "" : "s"}):\n${formatViolationList(withPositions(file, violations))}`;
}

function withPositions(
  file: DefinitionFile,
  violations: readonly FieldViolation[],
): FieldViolation[] {
  return violations.map((v) => {
    const at = file.locate(v.field);
    return at ? { ...v, description: `${v.description} [${at}]` } : v;
  });
}

/** Runs an RPC; INVALID_ARGUMENT violations come back annotated with file positions. */
async function withLocations<T>(file: DefinitionFile, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    if (err instanceof KaonClientError && err.violations.length > 0) {
      throw new CliError(invalidMessage(file, err.violations));
    }
    throw err;
  }
}

/** SCM metadata of the checkout holding `file`; undefined outside a git work tree. */
export async function gitInfo(file: string): Promise<ScmInfo | undefined> {
  const cwd = dirname(resolve(file));
  const git = async (...args: string[]): Promise<string | undefined> => {
    try {
      const { stdout } = await run("git", ["-C", cwd, ...args], { timeout: 5000 });
      return stdout.trim();
    } catch {
      return undefined;
    }
  };
  if ((await git("rev-parse", "--is-inside-work-tree")) !== "true") return undefined;
  const [commit, branch, status, author, repository] = await Promise.all([
    git("rev-parse", "HEAD"),
    git("rev-parse", "--abbrev-ref", "HEAD"),
    git("status", "--porcelain"),
    git("log", "-1", "--format=%an <%ae>"),
    git("config", "--get", "remote.origin.url"),
  ]);
  return {
    commit: commit ?? "",
    branch: branch && branch !== "HEAD" ? branch : "",
    dirty: status !== undefined && status !== "",
    author: author ?? "",
    repository: repository ?? "",
  };
}

async function clientInfo(): Promise<ClientInfo> {
  let user = "";
  try {
    user = userInfo().username;
  } catch {
    // No passwd entry (containers); the user stays unknown.
  }
  return { name: CLI_CLIENT_NAME, version: CLI_CLIENT_VERSION, user, host: hostname() };
}

function parseVersion(text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) {
    throw new CliError(`'${text}' is not a version number (versions are 1, 2, 3, ...)`, 2);
  }
  return n;
}

function positiveInt(text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1)
    throw new CommanderArgumentError("expected a positive integer");
  return n;
}

function collectTag(text: string, previous: Record<string, string>): Record<string, string> {
  const eq = text.indexOf("=");
  if (eq <= 0) throw new CommanderArgumentError("expected key=value");
  return { ...previous, [text.slice(0, eq)]: text.slice(eq + 1) };
}

function truncate(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}
