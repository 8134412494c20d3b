#!/usr/bin/env node
// The `kaon` command line. This file only assembles the program: global options, then one
// module per command group, registered from the explicit COMMANDS list below.
//
// Adding commands: create `core/src/cli/commands/<name>.ts` exporting
//
//   export function register(program: Command, ctx: CliContext): void {
//     program.command("workflows").description("list deployed workflows").action(async () => {
//       const res = await ctx.client(WorkflowServiceDefinition).listWorkflows({});
//       ctx.print(res, () => formatTable(res.workflows, [...]));
//     });
//   }
//
// and add it to COMMANDS. Commands read global options through `ctx` (never re-declare
// --address/--token/--json/--data-dir), let RPC errors propagate (main prints them as the
// server's field-path list and picks the exit code), and throw CliError for their own failures.
import { realpathSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Command, CommanderError } from "commander";
import { CliContext, EXIT, type GlobalOptions } from "./client.js";
import * as clusterCommands from "./commands/cluster.js";
import * as demoCommand from "./commands/demo.js";
import * as jobCommands from "./commands/job.js";
import * as runsCommand from "./commands/runs.js";
import * as serverCommand from "./commands/server.js";
import * as triggerCommands from "./commands/triggers.js";
import * as workflowCommands from "./commands/workflows.js";

export interface CommandModule {
  register(program: Command, ctx: CliContext): void;
}

/** Every command group, in the order `kaon --help` lists them. */
const COMMANDS: readonly CommandModule[] = [
  serverCommand,
  workflowCommands,
  runsCommand,
  triggerCommands,
  clusterCommands,
  demoCommand,
  jobCommands,
];

export interface MainIo {
  out?: (text: string) => void;
  err?: (text: string) => void;
  env?: Record<string, string | undefined>;
}

/** Runs the CLI with `argv` (as process.argv) and resolves to the exit code. */
export async function main(
  argv: readonly string[] = process.argv,
  io: MainIo = {},
): Promise<number> {
  const err = io.err ?? ((text: string) => process.stderr.write(text));
  const program = new Command("kaon")
    .description("kaon: workflow orchestration for ML pipelines")
    .option(
      "--address <host:port>",
      "gRPC address of the server (env KAON_ADDRESS; default: from <data-dir>/server.json)",
    )
    .option(
      "--token <token>",
      "API token (env KAON_TOKEN; default for a local server: <data-dir>/admin.token)",
    )
    .option("--json", "print machine-readable JSON")
    .option("--data-dir <dir>", "data directory (env KAON_HOME; default ~/.kaon)")
    .showHelpAfterError()
    .exitOverride()
    .configureOutput({
      writeOut: io.out ?? ((text) => process.stdout.write(text)),
      writeErr: err,
    });
  const ctx = new CliContext(() => program.opts<GlobalOptions>(), io.out, err, io.env);
  for (const command of COMMANDS) command.register(program, ctx);
  for (const sub of program.commands) sub.exitOverride();

  try {
    await program.parseAsync(argv as string[]);
    return EXIT.ok;
  } catch (error) {
    if (error instanceof CommanderError) {
      // Help and version are "errors" to commander; they already printed what they had to.
      return error.exitCode === 0 ? EXIT.ok : EXIT.usage;
    }
    const { message, exitCode } = ctx.describeError(error);
    err(`${ctx.json ? "" : "error: "}${message}\n`);
    return exitCode;
  } finally {
    ctx.close();
  }
}

function isEntryPoint(): boolean {
  const script = process.argv[1];
  if (script === undefined) return false;
  try {
    return realpathSync(script) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  main().then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      process.stderr.write(`kaon: ${error instanceof Error ? error.stack : String(error)}\n`);
      process.exitCode = EXIT.failure;
    },
  );
}
