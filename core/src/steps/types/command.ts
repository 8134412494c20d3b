// `command`: runs any program — Python, R (`Rscript`), Scala, bash. argv is the default and
// the safe form: each item is one argument, `${params.x}` placeholders fill single items and
// no shell ever parses them. Shell mode is an explicit opt-in (`shell: "..."`); its text is
// passed to `/bin/sh -c` as written, and params reach it only as environment variables.
import { isAbsolute, resolve } from "node:path";
import { ConfigCheck, checkEnv } from "../config-check.js";
import type { ProcessPlan, ProcessStepType, StepContext } from "../step-type.js";
import {
  configScope,
  renderConfigList,
  renderConfigMap,
  renderConfigString,
} from "../templating.js";

export const MAX_SHELL_SCRIPT_LENGTH = 64 * 1024;
export const MAX_ARGV_ITEMS = 10_000;

/** Resolves a config `cwd` against the attempt's working directory. */
export function resolveCwd(
  ctx: StepContext,
  cwd: string | undefined,
  scope = configScope(ctx),
): string {
  if (cwd === undefined) return ctx.workDir;
  const rendered = renderConfigString(cwd, scope, "cwd");
  return isAbsolute(rendered) ? rendered : resolve(ctx.workDir, rendered);
}

export const commandStepType: ProcessStepType = {
  kind: "process",
  name: "command",
  description: "Runs a program given as argv (default) or, when asked for, a shell script.",
  validate(config, path) {
    const check = new ConfigCheck(config, path, "command").allowKeys([
      "argv",
      "shell",
      "cwd",
      "env",
    ]);
    const mode = check.oneOf(["argv", "shell"]);
    if (mode === "argv") {
      const argv = check.stringList("argv", {
        nonEmpty: true,
        template: true,
        maxItems: MAX_ARGV_ITEMS,
      });
      if (argv && argv[0]!.trim() === "")
        check.add(`${path}.argv[0]`, "the program name must not be empty");
      if (argv && argv.length === 1 && /\s/.test(argv[0]!.trim())) {
        check.add(
          `${path}.argv[0]`,
          `${JSON.stringify(argv[0])} is one argv item containing spaces; argv is not parsed by a shell`,
          `split it into items, e.g. ${JSON.stringify(argv[0]!.trim().split(/\s+/))}, or use "shell" if you need shell syntax`,
        );
      }
    } else if (mode === "shell") {
      check.string("shell", { maxLength: MAX_SHELL_SCRIPT_LENGTH });
    }
    check.string("cwd", { template: true });
    checkEnv(check);
    return check.violations;
  },
  plan(ctx): ProcessPlan {
    const config = ctx.config;
    const scope = configScope(ctx);
    const plan: ProcessPlan = {
      command:
        typeof config.shell === "string"
          ? { kind: "shell", script: config.shell }
          : { kind: "argv", argv: renderConfigList(config.argv as string[], scope, "argv") },
      cwd: resolveCwd(ctx, config.cwd as string | undefined, scope),
    };
    const env = renderConfigMap(config.env as Record<string, string> | undefined, scope, "env");
    if (Object.keys(env).length > 0) plan.env = env;
    return plan;
  },
};
