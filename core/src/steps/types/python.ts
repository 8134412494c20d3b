// `python`: a script (inline source), a script file, a module, or a function shipped by the
// Python SDK, run by a chosen interpreter or virtual environment. Function steps follow a
// file contract with the SDK's runner (docs/step-types.md, "python function steps"): the plan
// writes `call.pkl` (and `function.py`, for people) into the attempt's working directory
// and runs `<interpreter> -m kaon._function_runner <workDir>`.
import { join } from "node:path";
import { ConfigCheck, checkEnv, show } from "../config-check.js";
import type { JsonObject, ProcessPlan, ProcessStepType } from "../step-type.js";
import { configScope, renderConfigList, renderConfigMap } from "../templating.js";
import { resolveCwd } from "./command.js";

/** Module the SDK provides for function steps. */
export const FUNCTION_RUNNER_MODULE = "kaon._function_runner";
/** Files of the function-step contract, relative to the working directory. */
export const FUNCTION_FILES = {
  /** cloudpickle of `(function, args, kwargs)`: what the runner loads. */
  pickle: "call.pkl",
  /** The function's source, for people reading the working directory; the runner ignores it. */
  source: "function.py",
} as const;
/** File an inline `script` is written to. */
export const SCRIPT_FILE = "script.py";

const MAX_SCRIPT_LENGTH = 1024 * 1024;
const MAX_PICKLE_B64_LENGTH = 16 * 1024 * 1024;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const MODULE_NAME = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$/;
const PYTHON_VERSION = /^\d+\.\d+$/;

function interpreterFor(config: JsonObject, fallback: string): string {
  if (typeof config.venv === "string") return join(config.venv, "bin", "python");
  if (typeof config.interpreter === "string") return config.interpreter;
  return fallback;
}

export const pythonStepType: ProcessStepType = {
  kind: "process",
  name: "python",
  description:
    "Runs Python: inline script source, a script file, a module, or a function from the Python SDK.",
  validate(config, path) {
    const check = new ConfigCheck(config, path, "python").allowKeys([
      "script",
      "path",
      "module",
      "function",
      "args",
      "interpreter",
      "venv",
      "cwd",
      "env",
    ]);
    const mode = check.oneOf(["script", "path", "module", "function"]);
    if (mode === "script") check.string("script", { maxLength: MAX_SCRIPT_LENGTH });
    if (mode === "path") check.string("path", { template: true });
    if (mode === "module") {
      const m = check.string("module");
      if (m !== undefined && m.trim() !== "" && !MODULE_NAME.test(m)) {
        check.add(
          check.field("module"),
          `${show(m)} is not a Python module name`,
          'e.g. "mypkg.train"',
        );
      }
    }
    if (mode === "function") {
      const fn = config.function;
      const f = check.field("function");
      if (typeof fn !== "object" || fn === null || Array.isArray(fn)) {
        check.add(
          f,
          `'function' must be an object {name, pickle_b64, source?, python?}, got ${show(fn)}`,
        );
      } else {
        const sub = new ConfigCheck(fn, f, "python function").allowKeys([
          "name",
          "source",
          "pickle_b64",
          "python",
        ]);
        sub.string("name", { required: true });
        sub.string("source", { nonEmpty: false, maxLength: MAX_SCRIPT_LENGTH });
        const b64 = sub.string("pickle_b64", { required: true, maxLength: MAX_PICKLE_B64_LENGTH });
        if (b64 !== undefined && (!BASE64.test(b64) || b64.length % 4 !== 0)) {
          sub.add(sub.field("pickle_b64"), "is not base64 text");
        }
        const py = sub.string("python");
        if (py !== undefined && !PYTHON_VERSION.test(py)) {
          sub.add(sub.field("python"), `${show(py)} is not a Python version like "3.11"`);
        }
        check.violations.push(...sub.violations);
      }
      if (check.has("args")) {
        check.add(
          check.field("args"),
          "function steps take their arguments from the pickled call, not 'args'",
          "remove 'args'",
        );
      }
    } else {
      check.stringList("args", { template: true });
    }
    if (check.has("venv") && check.has("interpreter")) {
      check.add(
        check.field("venv"),
        "python config has both 'venv' and 'interpreter'",
        "use only one",
      );
    }
    check.string("interpreter");
    check.string("venv");
    check.string("cwd", { template: true });
    checkEnv(check);
    return check.violations;
  },
  plan(ctx): ProcessPlan {
    const config = ctx.config;
    const scope = configScope(ctx);
    const python = interpreterFor(config, ctx.settings.pythonInterpreter);
    const args = Array.isArray(config.args)
      ? renderConfigList(config.args as string[], scope, "args")
      : [];
    const files: NonNullable<ProcessPlan["files"]> = [];
    let argv: string[];
    if (typeof config.script === "string") {
      files.push({ path: SCRIPT_FILE, content: config.script });
      argv = [python, join(ctx.workDir, SCRIPT_FILE), ...args];
    } else if (typeof config.path === "string") {
      argv = [python, renderConfigList([config.path], scope, "path")[0]!, ...args];
    } else if (typeof config.module === "string") {
      argv = [python, "-m", config.module, ...args];
    } else {
      const fn = config.function as JsonObject;
      files.push({
        path: FUNCTION_FILES.pickle,
        content: new Uint8Array(Buffer.from(fn.pickle_b64 as string, "base64")),
      });
      files.push({
        path: FUNCTION_FILES.source,
        content: typeof fn.source === "string" ? fn.source : "",
      });
      argv = [python, "-m", FUNCTION_RUNNER_MODULE, ctx.workDir];
    }
    const env = renderConfigMap(config.env as Record<string, string> | undefined, scope, "env");
    // Unbuffered, so log lines reach the step's log as they are printed.
    env.PYTHONUNBUFFERED = "1";
    const plan: ProcessPlan = {
      command: { kind: "argv", argv },
      env,
      cwd: resolveCwd(ctx, config.cwd as string | undefined, scope),
    };
    if (files.length > 0) plan.files = files;
    return plan;
  },
};
