// The friendly client layer: connect to a server, deploy and validate DSL workflows, start runs
// and get `Run` objects back. Everything else is one call away on `client.raw`.
import { randomUUID } from "node:crypto";
import type {
  GetWorkflowResponse,
  Run as RunMessage,
  RunStatus,
  VersionSelector,
  WorkflowDefinition,
  Workflow as WorkflowSummary,
  WorkflowVersion,
} from "@kaon/proto";
import type { JsonValue } from "../dsl/values.js";
import { Workflow } from "../dsl/workflow.js";
import { ConnectionError, InvalidDefinitionError } from "../errors.js";
import { type DiscoveryOptions, discoverServer } from "./discovery.js";
import { createRawClients, type RawClients, readCertificate } from "./raw.js";
import { Run } from "./run.js";
import { clientInfo, scmInfo } from "./scm.js";

/** Options of {@link connect}. */
export interface ConnectOptions extends DiscoveryOptions {
  /** Deadline of each unary call in ms; default 30 000. */
  deadlineMs?: number;
  /** Attempts of an idempotent call while the server is unavailable; default 4. */
  maxAttempts?: number;
  /** How long `connect` waits for the server to accept a connection, in ms; default 5 000. */
  connectTimeoutMs?: number;
  /** Skip the connection check in `connect`. */
  lazy?: boolean;
}

/** Options of `run`. */
export interface RunOptions {
  params?: Record<string, JsonValue>;
  tags?: Record<string, string>;
  /** "active" (default), "latest", or a version number. */
  version?: "active" | "latest" | number;
  /** Idempotency key; a repeated call with the same key returns the same run. Default random. */
  requestId?: string;
  /** Logical time (RUN_TS); default now. */
  runTs?: Date | number;
}

const HOW_TO_START = "start one with `kaon server`, or set KAON_ADDRESS to a running server";

/**
 * Connects to a kaon server: `address`/`token` options, else KAON_ADDRESS/KAON_TOKEN, else the
 * local server published in `$KAON_HOME` (default `~/.kaon`). Throws ConnectionError naming the
 * address when nothing answers there.
 */
export async function connect(options: ConnectOptions = {}): Promise<KaonClient> {
  const target = discoverServer(options);
  const raw = createRawClients({
    address: target.address,
    token: target.token,
    tlsCert: target.tlsCertPath ? readCertificate(target.tlsCertPath) : undefined,
    ...(options.deadlineMs === undefined ? {} : { deadlineMs: options.deadlineMs }),
    ...(options.maxAttempts === undefined ? {} : { maxAttempts: options.maxAttempts }),
    connectionHint: HOW_TO_START,
  });
  const client = new KaonClient(raw);
  if (!options.lazy) {
    try {
      await client.ready(options.connectTimeoutMs ?? 5_000);
    } catch (err) {
      raw.close();
      throw new ConnectionError(
        `no kaon server answers at ${target.address} (from ${target.source}); ${HOW_TO_START}`,
        { code: "UNAVAILABLE", cause: err },
      );
    }
  }
  return client;
}

/** A connection to one kaon server. */
export class KaonClient {
  constructor(
    /** One generated client per service, for calls the friendly layer does not wrap. */
    readonly raw: RawClients,
  ) {}

  get address(): string {
    return this.raw.address;
  }

  /** Resolves when the channel is connected; rejects after `timeoutMs`. */
  async ready(timeoutMs: number): Promise<void> {
    // Channel readiness needs no auth and no particular service, and it is event-driven
    // (connectivity-state callbacks), so `connect` can fail fast with the address.
    await this.raw.waitForReady(timeoutMs);
  }

  /**
   * Deploys a workflow. Changed content makes a new version; identical content returns the
   * existing one. Sends git metadata when the process runs in a checkout.
   */
  async deploy(
    wf: Workflow | WorkflowDefinition,
    options: { activate?: boolean; cwd?: string } = {},
  ): Promise<{ version: WorkflowVersion; created: boolean }> {
    const definition = wf instanceof Workflow ? wf.toDefinition() : wf;
    const scm = await scmInfo(options.cwd);
    const response = await this.raw.workflows.deploy({
      definition,
      ...(scm ? { scm } : {}),
      client: clientInfo(),
      ...(options.activate === undefined ? {} : { activate: options.activate }),
    });
    if (!response.version) throw new ConnectionError("Deploy answered without a version");
    return { version: response.version, created: response.created };
  }

  /**
   * Validates without storing. Throws InvalidDefinitionError with core's violations when the
   * definition is invalid; otherwise returns the canonical form and content hash Deploy would use.
   */
  async validate(
    wf: Workflow | WorkflowDefinition,
  ): Promise<{ canonical: WorkflowDefinition | undefined; contentHash: string }> {
    const definition = wf instanceof Workflow ? wf.toDefinition() : wf;
    const response = await this.raw.workflows.validate({ definition });
    if (response.violations.length > 0) {
      throw new InvalidDefinitionError(
        `workflow ${JSON.stringify(definition.id)} is invalid`,
        response.violations,
      );
    }
    return { canonical: response.canonical, contentHash: response.contentHash };
  }

  /**
   * Starts a run of a deployed workflow (by id), or deploys a DSL workflow and runs the
   * version just deployed.
   */
  async run(workflow: string | Workflow, options: RunOptions = {}): Promise<Run> {
    let workflowId: string;
    let version: VersionSelector;
    if (workflow instanceof Workflow) {
      const deployed = await this.deploy(workflow);
      workflowId = deployed.version.workflowId;
      version = { selector: { $case: "number", value: deployed.version.version } };
    } else {
      workflowId = workflow;
      version = selector(options.version);
    }
    const runTs = options.runTs instanceof Date ? options.runTs.getTime() : (options.runTs ?? 0);
    const { run } = await this.raw.runs.startRun({
      workflowId,
      version,
      params: { ...options.params },
      tags: { ...options.tags },
      requestId: options.requestId ?? randomUUID(),
      client: clientInfo(),
      runTs,
    });
    if (!run) throw new ConnectionError("StartRun answered without a run");
    return new Run(this.raw, run);
  }

  /** An existing run. Throws NotFoundError when it does not exist. */
  async getRun(runId: string): Promise<Run> {
    const { run } = await this.raw.runs.getRun({ runId });
    if (!run) throw new ConnectionError("GetRun answered without a run");
    return new Run(this.raw, run);
  }

  /** Runs, newest first, across all pages. */
  async *runs(
    filter: { workflowId?: string; statuses?: RunStatus[]; namespace?: string } = {},
  ): AsyncGenerator<Run> {
    let pageToken = "";
    do {
      const page = await this.raw.runs.listRuns({
        workflowId: filter.workflowId ?? "",
        statuses: filter.statuses ?? [],
        namespace: filter.namespace ?? "",
        pageSize: 100,
        pageToken,
      });
      for (const run of page.runs) yield new Run(this.raw, run as RunMessage);
      pageToken = page.nextPageToken;
    } while (pageToken);
  }

  /** One workflow version: the active one by default, `-1` for the latest. */
  async workflow(workflowId: string, version = 0): Promise<GetWorkflowResponse> {
    return this.raw.workflows.getWorkflow({ workflowId, version });
  }

  /** Workflows, newest deploy first, across all pages. */
  async *workflows(
    filter: { namespace?: string; idContains?: string; tags?: Record<string, string> } = {},
  ): AsyncGenerator<WorkflowSummary> {
    let pageToken = "";
    do {
      const page = await this.raw.workflows.listWorkflows({
        namespace: filter.namespace ?? "",
        idContains: filter.idContains ?? "",
        tags: { ...filter.tags },
        pageSize: 100,
        pageToken,
      });
      yield* page.workflows;
      pageToken = page.nextPageToken;
    } while (pageToken);
  }

  /** Closes the channel. */
  close(): void {
    this.raw.close();
  }
}

function selector(version: RunOptions["version"]): VersionSelector {
  if (version === undefined || version === "active") {
    return { selector: { $case: "active", value: true } };
  }
  if (version === "latest") return { selector: { $case: "latest", value: true } };
  return { selector: { $case: "number", value: version } };
}
