// `container`: runs a command in a container image with podman or docker on the agent
// (podman preferred, whichever is on PATH; a step may insist on one). As in Kubernetes,
// `command` replaces the image's ENTRYPOINT and `args` its CMD; `shell` runs `/bin/sh -c`.
// The container joins the host network so that KAON_ENDPOINT reaches core, sees the attempt's
// working directory at the same path (so $KAON_OUTPUT and $KAON_PARAMS_FILE work unchanged)
// and gets the job's environment by name (`--env NAME`: values travel in the client's
// environment, never on its command line, so KAON_TOKEN does not show in `ps`).
//
// Kill: the backend signals the process group of the runtime client, but a container lives
// outside it (under conmon or dockerd), and a container that ignores SIGTERM would outlive a
// SIGKILLed client. So the client runs under a small sh wrapper that, on SIGTERM, stops the
// container by its name (derived from the attempt: deterministic, unique) within a grace
// shorter than the backend's, then reports the client's exit status. `--init` gives the
// container a PID 1 that forwards signals and reaps zombies.
import { createHash } from "node:crypto";
import { accessSync, constants, existsSync } from "node:fs";
import { delimiter, isAbsolute, join, resolve } from "node:path";
import type { TaskStatus } from "../../backends/backend.js";
import { ConfigCheck, checkEnv, show } from "../config-check.js";
import type {
  EndResult,
  JsonObject,
  ProcessPlan,
  ProcessStepType,
  StepContext,
} from "../step-type.js";
import {
  configScope,
  renderConfigList,
  renderConfigMap,
  renderConfigString,
  StepConfigError,
} from "../templating.js";
import { attemptOutputTail, lastLines } from "./stderr-tail.js";

export const CONTAINER_RUNTIMES = ["podman", "docker"] as const;
export type ContainerRuntime = (typeof CONTAINER_RUNTIMES)[number];
/** Seconds a killed container gets between SIGTERM and SIGKILL (under the backend's 10 s). */
export const CONTAINER_STOP_GRACE_SECONDS = 5;
const NETWORKS = ["host", "none", "bridge"] as const;
const PULL_POLICIES = ["missing", "always", "never"] as const;
const MAX_SHELL_LENGTH = 64 * 1024;
const IMAGE_REF = /^[A-Za-z0-9][A-Za-z0-9._\-/:@]*$/;
/** Client-side variables the runtime itself needs (not passed into the container). */
const CLIENT_ENV = [
  "HOME",
  "XDG_RUNTIME_DIR",
  "XDG_CONFIG_HOME",
  "CONTAINERS_CONF",
  "CONTAINERS_STORAGE_CONF",
  "CONTAINERS_REGISTRIES_CONF",
  "DOCKER_HOST",
  "DOCKER_CONFIG",
  "DOCKER_CONTEXT",
];

/**
 * Runs `<runtime> run ARGS...` and, when signalled, stops the container by name. The values
 * come as positional parameters, never spliced into this text.
 */
export const CONTAINER_WRAPPER = `rt=$1 name=$2 grace=$3
shift 3
stop() { "$rt" stop -t "$grace" "$name" >/dev/null 2>&1 || "$rt" rm -f "$name" >/dev/null 2>&1; }
trap stop TERM INT HUP
"$rt" run "$@" &
child=$!
wait "$child"; rc=$?
while kill -0 "$child" 2>/dev/null; do wait "$child"; rc=$?; done
exit "$rc"`;

/** The container's name for an attempt: deterministic, unique per attempt, a valid name. */
export function containerName(ctx: Pick<StepContext, "runId" | "path" | "attempt">): string {
  const raw = `${ctx.runId}-${ctx.path}-${ctx.attempt}`.replace(/[^A-Za-z0-9_.-]+/g, "-");
  if (raw.length <= 100) return `kaon-${raw}`;
  const digest = createHash("sha256").update(raw).digest("hex").slice(0, 24);
  return `kaon-${raw.slice(0, 60)}-${digest}`;
}

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The first of `names` found on PATH, with its full path. */
export function findRuntime(
  names: readonly ContainerRuntime[],
  pathVar: string | undefined,
): { runtime: ContainerRuntime; path: string } | undefined {
  for (const runtime of names) {
    for (const dir of (pathVar ?? "").split(delimiter)) {
      if (dir !== "" && executable(join(dir, runtime)))
        return { runtime, path: join(dir, runtime) };
    }
  }
  return undefined;
}

function checkMounts(check: ConfigCheck): void {
  const raw = check.value("mounts");
  if (raw === undefined || raw === null) return;
  const field = check.field("mounts");
  if (!Array.isArray(raw)) {
    check.add(
      field,
      `'mounts' must be a list of {source, target, read_only?}, got ${show(raw)}`,
      'e.g. [{"source": "/data/cohorts", "target": "/data", "read_only": true}]',
    );
    return;
  }
  const targets = new Set<string>();
  raw.forEach((m, i) => {
    const f = `${field}[${i}]`;
    if (typeof m !== "object" || m === null || Array.isArray(m)) {
      check.add(f, `a mount must be an object {source, target, read_only?}, got ${show(m)}`);
      return;
    }
    const sub = new ConfigCheck(m, f, "container mount").allowKeys([
      "source",
      "target",
      "read_only",
    ]);
    const source = sub.string("source", { required: true, template: true });
    const target = sub.string("target", { required: true });
    for (const [key, value] of [
      ["source", source],
      ["target", target],
    ] as const) {
      if (value?.includes(":")) {
        sub.add(
          sub.field(key),
          `${show(value)} contains ':', which the runtime's --volume syntax cannot take`,
        );
      }
    }
    if (target !== undefined && target.trim() !== "" && !isAbsolute(target)) {
      sub.add(sub.field("target"), `${show(target)} is not an absolute path`, `e.g. "/${target}"`);
    }
    if (target !== undefined) {
      if (targets.has(target)) sub.add(sub.field("target"), `${show(target)} is mounted twice`);
      targets.add(target);
    }
    const ro = sub.value("read_only");
    if (ro !== undefined && typeof ro !== "boolean") {
      sub.add(sub.field("read_only"), `'read_only' must be true or false, got ${show(ro)}`);
    }
    check.violations.push(...sub.violations);
  });
}

function checkChoice(check: ConfigCheck, key: string, choices: readonly string[]): void {
  const value = check.string(key);
  if (value !== undefined && value.trim() !== "" && !choices.includes(value)) {
    check.add(
      check.field(key),
      `${show(value)} is not one of ${choices.map((c) => `"${c}"`).join(", ")}`,
    );
  }
}

function validateContainer(config: JsonObject, path: string) {
  const check = new ConfigCheck(config, path, "container").allowKeys([
    "image",
    "command",
    "args",
    "shell",
    "env",
    "mounts",
    "workdir",
    "runtime",
    "network",
    "pull",
    "init",
  ]);
  const image = check.string("image", { required: true, template: true });
  if (
    image !== undefined &&
    image.trim() !== "" &&
    !image.includes("${") &&
    !IMAGE_REF.test(image)
  ) {
    check.add(
      check.field("image"),
      `${show(image)} is not an image reference`,
      'e.g. "python:3.11-slim" or "localhost/trainer:1.2"',
    );
  }
  const mode = check.oneOf(["command", "shell"], false);
  if (mode === "command") {
    const command = check.stringList("command", { nonEmpty: true, template: true });
    if (command && command.length === 1 && /\s/.test(command[0]!.trim())) {
      check.add(
        `${check.field("command")}[0]`,
        `${show(command[0])} is one argv item containing spaces; 'command' is not parsed by a shell`,
        `split it into items, e.g. ${JSON.stringify(command[0]!.trim().split(/\s+/))}, or use "shell"`,
      );
    }
  }
  if (mode === "shell") check.string("shell", { maxLength: MAX_SHELL_LENGTH });
  check.stringList("args", { template: true });
  checkEnv(check);
  checkMounts(check);
  const workdir = check.string("workdir", { template: true });
  if (
    workdir !== undefined &&
    workdir.trim() !== "" &&
    !workdir.startsWith("${") &&
    !isAbsolute(workdir)
  ) {
    check.add(
      check.field("workdir"),
      `${show(workdir)} is not an absolute path inside the container`,
      "leave it out to run in the attempt's working directory",
    );
  }
  checkChoice(check, "runtime", CONTAINER_RUNTIMES);
  checkChoice(check, "network", NETWORKS);
  checkChoice(check, "pull", PULL_POLICIES);
  const init = check.value("init");
  if (init !== undefined && typeof init !== "boolean") {
    check.add(check.field("init"), `'init' must be true or false, got ${show(init)}`);
  }
  return check.violations;
}

function planContainer(ctx: StepContext): ProcessPlan {
  const config = ctx.config;
  const scope = configScope(ctx);
  const wanted =
    typeof config.runtime === "string" ? [config.runtime as ContainerRuntime] : CONTAINER_RUNTIMES;
  const found = findRuntime(wanted, ctx.env.PATH ?? process.env.PATH);
  if (!found) {
    throw new StepConfigError(
      typeof config.runtime === "string"
        ? `container step '${ctx.stepId}' asks for ${config.runtime}, which is not on the agent's PATH; install it, or leave 'runtime' out to use whichever of podman and docker is there`
        : `container step '${ctx.stepId}' needs podman or docker on the agent; install podman (apt-get install podman) or use a command step`,
    );
  }
  const name = containerName(ctx);
  const image = renderConfigString(config.image as string, scope, "image");
  const userEnv = renderConfigMap(config.env as Record<string, string> | undefined, scope, "env");
  const runArgs = [
    "--rm",
    "--name",
    name,
    "--label",
    `kaon.run=${ctx.runId}`,
    "--label",
    `kaon.step=${ctx.path}`,
    "--label",
    `kaon.attempt=${ctx.attempt}`,
    "--network",
    typeof config.network === "string" ? config.network : "host",
    "--pull",
    typeof config.pull === "string" ? config.pull : "missing",
  ];
  // A leftover of this very attempt (a relaunch after a core restart) must not block the name.
  if (found.runtime === "podman") runArgs.push("--replace");
  if (config.init !== false) runArgs.push("--init");
  runArgs.push("--volume", `${ctx.workDir}:${ctx.workDir}`);
  const tlsCa = ctx.env.KAON_TLS_CA;
  if (tlsCa && isAbsolute(tlsCa) && !tlsCa.includes(":") && existsSync(tlsCa)) {
    runArgs.push("--volume", `${tlsCa}:${tlsCa}:ro`);
  }
  const mounts = Array.isArray(config.mounts) ? (config.mounts as JsonObject[]) : [];
  mounts.forEach((m, i) => {
    const source = renderConfigString(m.source as string, scope, `mounts[${i}].source`);
    const abs = isAbsolute(source) ? source : resolve(ctx.workDir, source);
    if (!existsSync(abs)) {
      throw new StepConfigError(
        `container step '${ctx.stepId}': mount source ${abs} (mounts[${i}].source) does not exist on the agent`,
      );
    }
    runArgs.push("--volume", `${abs}:${m.target as string}${m.read_only === true ? ":ro" : ""}`);
  });
  const workdir =
    typeof config.workdir === "string"
      ? renderConfigString(config.workdir, scope, "workdir")
      : ctx.workDir;
  runArgs.push("--workdir", workdir);
  for (const key of new Set([...Object.keys(ctx.env), ...Object.keys(userEnv)])) {
    if (key === "PATH") continue; // the image's own PATH, not the agent's
    runArgs.push("--env", key);
  }
  // As in Kubernetes: `command` replaces the image's ENTRYPOINT, `args` its CMD.
  const args = Array.isArray(config.args)
    ? renderConfigList(config.args as string[], scope, "args")
    : [];
  if (typeof config.shell === "string") {
    runArgs.push("--entrypoint", "/bin/sh", image, "-c", config.shell, "sh", ...args);
  } else if (Array.isArray(config.command)) {
    const [program, ...rest] = renderConfigList(config.command as string[], scope, "command");
    runArgs.push("--entrypoint", program as string, image, ...rest, ...args);
  } else {
    runArgs.push(image, ...args);
  }

  const env: Record<string, string> = {};
  for (const key of CLIENT_ENV) {
    const value = process.env[key];
    if (value !== undefined && ctx.env[key] === undefined) env[key] = value;
  }
  Object.assign(env, userEnv);
  return {
    command: {
      kind: "argv",
      argv: [
        "/bin/sh",
        "-c",
        CONTAINER_WRAPPER,
        "kaon-container",
        found.path,
        name,
        String(CONTAINER_STOP_GRACE_SECONDS),
        ...runArgs,
      ],
    },
    env,
  };
}

/** Exit codes the runtime itself uses (podman and docker agree), with what they mean. */
const RUNTIME_EXIT: Record<number, string> = {
  125: "the container runtime failed to run the container",
  126: "the command in the image cannot be invoked",
  127: "the command was not found in the image",
};

function endOfContainer(ctx: StepContext, status: TaskStatus): EndResult {
  if (status.state === "FINISHED" && (status.exitCode ?? 0) === 0) return { succeeded: true };
  const code = status.exitCode;
  const how =
    code !== undefined
      ? `exit code ${code}${RUNTIME_EXIT[code] ? ` (${RUNTIME_EXIT[code]})` : ""}`
      : status.signal
        ? `killed by signal ${status.signal}`
        : status.message || status.state.toLowerCase();
  const tail = lastLines(attemptOutputTail(ctx.workDir), 3).join(" | ");
  return { succeeded: false, message: `container failed: ${how}${tail ? `: ${tail}` : ""}` };
}

export const containerStepType: ProcessStepType = {
  kind: "process",
  name: "container",
  description:
    "Runs a command in a container image with podman or docker, on the host network, with the attempt's working directory mounted.",
  validate: validateContainer,
  plan: planContainer,
  interpretEnd: endOfContainer,
};
