// Trigger commands: list the triggers of active workflow versions (`triggers`), switch one on or
// off (`trigger enable|disable`; the override is stored by the server and outlives restarts and
// new versions), and send a named signal (`signal`), which starts a run for every enabled signal
// trigger with that name. Everything goes through TriggerService; `--json` prints proto3 JSON.
import { randomUUID } from "node:crypto";
import { messageToJson, Run, TriggerServiceDefinition, TriggerState } from "@kaon/proto";
import type { Command } from "commander";
import { type CliContext, formatTable } from "../client.js";
import { parseParams } from "./runs.js";

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** What fires a trigger, in one line: `cron 0 3 * * * (America/Los_Angeles)`. */
export function describeTriggerKind(state: TriggerState): string {
  const kind = state.trigger?.kind;
  switch (kind?.$case) {
    case "cron":
      return `cron ${kind.value.expression} (${kind.value.timezone || "UTC"})`;
    case "artifact": {
      const parts = Object.entries(kind.value.partitions)
        .map(([k, v]) => `${k}=${v}`)
        .join(",");
      return `artifact ${kind.value.name}${parts ? `{${parts}}` : ""}`;
    }
    case "signal":
      return `signal ${kind.value.name}`;
    default:
      return "";
  }
}

const stateJson = (s: TriggerState) => messageToJson(TriggerState, "kaon.v1.TriggerState", s);

export function register(program: Command, ctx: CliContext): void {
  program
    .command("triggers")
    .description("list the triggers of active workflow versions, with their next fire time")
    .option("--workflow <id>", "only this workflow's triggers")
    .action(async (options: { workflow?: string }) => {
      const client = ctx.client(TriggerServiceDefinition);
      const all: TriggerState[] = [];
      let pageToken = "";
      do {
        const res = await client.listTriggers({
          workflowId: options.workflow ?? "",
          pageSize: 1000,
          pageToken,
        });
        all.push(...res.triggers);
        pageToken = res.nextPageToken;
      } while (pageToken);
      ctx.print(all.map(stateJson), () => {
        if (all.length === 0) return "no triggers";
        const table = formatTable(all, [
          { header: "workflow", value: (s) => s.workflowId },
          { header: "trigger", value: (s) => s.trigger?.id ?? "" },
          { header: "fires on", value: describeTriggerKind },
          { header: "enabled", value: (s) => (s.enabled ? "yes" : "no") },
          { header: "next fire", value: (s) => s.nextFireAt ?? "" },
          { header: "last fired", value: (s) => s.lastFiredAt ?? "" },
        ]);
        // Errors are long sentences: listed under the table rather than in a column.
        const errors = all
          .filter((s) => s.lastError)
          .map(
            (s) =>
              `${s.workflowId}/${s.trigger?.id ?? ""} could not start a run${s.lastErrorAt ? ` at ${s.lastErrorAt.toISOString()}` : ""}: ${s.lastError}`,
          );
        return errors.length === 0 ? table : `${table}\n\n${errors.join("\n")}`;
      });
    });

  const trigger = program.command("trigger").description("enable or disable a trigger");
  for (const action of ["enable", "disable"] as const) {
    trigger
      .command(action)
      .description(
        `${action} a trigger of a workflow (kept across restarts and new versions of the workflow)`,
      )
      .argument("<workflow>", "workflow id")
      .argument("<trigger>", "trigger id")
      .action(async (workflowId: string, triggerId: string) => {
        const client = ctx.client(TriggerServiceDefinition);
        const res =
          action === "enable"
            ? await client.enableTrigger({ workflowId, triggerId })
            : await client.disableTrigger({ workflowId, triggerId });
        const state = res.trigger as TriggerState;
        ctx.print(stateJson(state), () => {
          const next = state.nextFireAt ? `; next fire ${state.nextFireAt.toISOString()}` : "";
          return `${action}d trigger ${triggerId} of ${workflowId}${next}`;
        });
      });
  }

  program
    .command("signal")
    .description("send a named signal: every enabled signal trigger with that name starts a run")
    .argument("<name>", "signal name, e.g. data.ready")
    .option(
      "-p, --param <name=value>",
      "a signal param (signal.params.<name> in trigger params); JSON when it parses (repeatable)",
      collect,
    )
    .option(
      "--request-id <id>",
      "idempotency key: repeating the command with it starts no new runs",
    )
    .action(async (name: string, options: { param?: string[]; requestId?: string }) => {
      const res = await ctx.client(TriggerServiceDefinition).signal({
        name,
        params: parseParams(options.param),
        requestId: options.requestId ?? randomUUID(),
      });
      ctx.print(
        res.runs.map((r) => messageToJson(Run, "kaon.v1.Run", r)),
        () =>
          res.runs.length === 0
            ? `signal ${name}: no enabled trigger listens to it; no run started`
            : [
                `signal ${name} started ${res.runs.length} run(s):`,
                ...res.runs.map((r) => `  ${r.id} (${r.workflowId} v${r.version})`),
              ].join("\n"),
      );
    });
}
