// The step-type registry: the engine asks it for a type by name and knows nothing about any
// particular type (ARCHITECTURE §8). Containers (foreach, loop, subworkflow) are names the
// engine handles itself; the registry knows them only so that validation can tell
// "container" from "unknown type".
import type { FieldViolation } from "@kaon/proto";
import { suggest } from "../model/expr/index.js";
import { violation } from "./config-check.js";
import type { JsonObject, StepType, StepTypeSettings } from "./step-type.js";
import { commandStepType } from "./types/command.js";
import { containerStepType } from "./types/container.js";
import { httpStepType } from "./types/http.js";
import { noopStepType } from "./types/noop.js";
import { pythonStepType } from "./types/python.js";
import { sleepStepType } from "./types/sleep.js";
import { sparkStepType } from "./types/spark.js";
import { sqlStepType } from "./types/sql.js";

/** Step types the engine expands itself; they have no plugin. */
export const CONTAINER_TYPES: ReadonlySet<string> = new Set(["foreach", "loop", "subworkflow"]);

const TYPE_NAME = /^[a-z][a-z0-9_.-]{0,63}$/;

/** A fresh map of the built-in plugins, by name. */
export function builtinStepTypes(): Map<string, StepType> {
  const types: StepType[] = [
    noopStepType,
    sleepStepType,
    commandStepType,
    pythonStepType,
    httpStepType,
    sqlStepType,
    sparkStepType,
    containerStepType,
  ];
  return new Map(types.map((t) => [t.name, t]));
}

/** Settings with nothing configured: loopback-only http, no sql connections, no Spark. */
export function defaultStepTypeSettings(): StepTypeSettings {
  return {
    sparkVersions: {},
    sqlConnections: {},
    httpAllowedHosts: [],
    pythonInterpreter: "python3",
  };
}

/** A set of step types; the server has one, tests may build their own. */
export class StepTypeRegistry {
  private readonly types: Map<string, StepType>;

  constructor(types: Iterable<StepType> = builtinStepTypes().values()) {
    this.types = new Map();
    for (const t of types) this.register(t);
  }

  /** Adds a plugin; throws when the name is taken, reserved for a container, or malformed. */
  register(type: StepType): this {
    if (!TYPE_NAME.test(type.name)) {
      throw new Error(`step type name '${type.name}' must match ${TYPE_NAME}`);
    }
    if (CONTAINER_TYPES.has(type.name)) {
      throw new Error(`step type name '${type.name}' is reserved for a container`);
    }
    if (this.types.has(type.name))
      throw new Error(`step type '${type.name}' is already registered`);
    const kind: string = type.kind;
    if (kind !== "process" && kind !== "inline") {
      throw new Error(`step type '${type.name}' has unknown kind '${kind}'`);
    }
    this.types.set(type.name, type);
    return this;
  }

  get(name: string): StepType | undefined {
    return this.types.get(name);
  }

  names(): string[] {
    return [...this.types.keys()];
  }

  /**
   * Validates a step's type and config: an unknown type is one violation at `typePath` with a
   * did-you-mean; a container type has no plugin config to check (returns []).
   */
  validate(
    typeName: string,
    config: JsonObject | undefined,
    paths: { typePath: string; configPath: string },
    settings: StepTypeSettings,
  ): FieldViolation[] {
    if (CONTAINER_TYPES.has(typeName)) return [];
    const type = this.types.get(typeName);
    if (!type) {
      const known = [...this.names(), ...CONTAINER_TYPES];
      const near = suggest(typeName, known);
      return [
        violation(
          paths.typePath,
          typeName === "" ? "step type is missing" : `unknown step type '${typeName}'`,
          near ? `did you mean '${near}'?` : `known types: ${known.join(", ")}`,
        ),
      ];
    }
    try {
      return type.validate(config ?? {}, paths.configPath, settings);
    } catch (e) {
      // A plugin bug must not take validation (or the server) down.
      return [
        violation(
          paths.configPath,
          `step type '${typeName}' could not check its config: ${(e as Error).message}`,
        ),
      ];
    }
  }
}

const defaultRegistry = new StepTypeRegistry();

/** The server's registry (built-ins plus anything registered at startup). */
export function stepTypeRegistry(): StepTypeRegistry {
  return defaultRegistry;
}

/** A plugin by name from the server's registry; undefined for containers and unknown names. */
export function lookupStepType(name: string): StepType | undefined {
  return defaultRegistry.get(name);
}
