// Definition files: a workflow written as YAML or JSON in the proto3 JSON mapping, so that
// `kaon deploy pipeline.yaml` works with no SDK. Field names may be snake_case (as in the
// .proto) or lowerCamelCase (JSON names); unknown keys are errors, never silently dropped.
// Every problem comes back as a FieldViolation with the field path, and `locate` turns any
// field path (also the server's validation paths) into `file:line:column`.
import { readFile, stat } from "node:fs/promises";
import { basename, extname } from "node:path";
import * as proto from "@kaon/proto";
import {
  ArtifactRef,
  ArtifactTrigger,
  type BinaryCodec,
  Constraint,
  CronTrigger,
  type FieldViolation,
  Foreach,
  ForeachAxis,
  Loop,
  messageFromJson,
  Notification,
  Param,
  Resources,
  RetryPolicy,
  RunStrategy,
  SignalTrigger,
  Step,
  Subworkflow,
  Transition,
  Trigger,
  WorkflowDefinition,
} from "@kaon/proto";
import { isMap, isScalar, isSeq, LineCounter, type Node, type Pair, parseDocument } from "yaml";
import { suggest } from "./expr/index.js";

/** Largest definition file read (the encoded definition itself is limited to 1 MiB). */
export const MAX_DEFINITION_FILE_BYTES = 8 * 1024 * 1024;

export const DEFINITION_FILE_EXTENSIONS = [".yaml", ".yml", ".json"] as const;

export interface DefinitionFile {
  /** The file name as given. */
  path: string;
  /** The decoded definition, when the file parsed and matched the schema. */
  definition?: WorkflowDefinition;
  /** Syntax and schema problems (not the semantic rules: see validate.ts). */
  violations: FieldViolation[];
  /** `file:line:column` of a field path such as `steps[2].next[0].to`, when present. */
  locate(fieldPath: string): string | undefined;
}

/** Reads and decodes a `.yaml`, `.yml` or `.json` definition file. Never throws for bad content. */
export async function loadDefinitionFile(path: string): Promise<DefinitionFile> {
  const ext = extname(path).toLowerCase();
  const failed = (description: string, hint = ""): DefinitionFile => ({
    path,
    violations: [{ field: basename(path), description, hint }],
    locate: () => undefined,
  });
  if (!(DEFINITION_FILE_EXTENSIONS as readonly string[]).includes(ext)) {
    return failed(
      `'${path}' is not a definition file`,
      "definition files end in .yaml, .yml or .json",
    );
  }
  let size: number;
  try {
    size = (await stat(path)).size;
  } catch (err) {
    return failed(
      `cannot read '${path}': ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
  }
  if (size > MAX_DEFINITION_FILE_BYTES) {
    return failed(
      `'${path}' is ${size} bytes; definition files are limited to ${MAX_DEFINITION_FILE_BYTES}`,
    );
  }
  const text = await readFile(path, "utf8");
  return parseDefinitionText(text, path);
}

/** Decodes definition text (YAML or JSON; JSON is read by the YAML 1.2 parser too). */
export function parseDefinitionText(text: string, fileName = "definition.yaml"): DefinitionFile {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const where = (offset: number | undefined): string => {
    if (offset === undefined) return fileName;
    const { line, col } = lines.linePos(offset);
    return `${fileName}:${line}:${col}`;
  };
  const locate = (fieldPath: string): string | undefined => {
    const node = findNode(doc.contents as Node | null, splitPath(fieldPath));
    return node?.range ? where(node.range[0]) : undefined;
  };
  const result: DefinitionFile = { path: fileName, violations: [], locate };

  if (doc.errors.length > 0) {
    for (const e of doc.errors) {
      result.violations.push({
        field: where(e.pos?.[0]),
        description: `${fileName.endsWith(".json") ? "JSON" : "YAML"} syntax error: ${firstLine(e.message)}`,
        hint: "",
      });
    }
    return result;
  }
  const json = doc.toJS({ maxAliasCount: 100 }) as unknown;
  if (json === null || json === undefined) {
    result.violations.push({
      field: fileName,
      description: `'${fileName}' is empty`,
      hint: "a definition needs at least `id` and `steps`",
    });
    return result;
  }
  const decoded = definitionFromJson(json);
  if (decoded.definition) {
    result.definition = decoded.definition;
  } else {
    for (const v of decoded.violations) {
      const at = locate(v.field);
      result.violations.push(at ? { ...v, description: `${v.description} (${at})` } : v);
    }
  }
  return result;
}

/**
 * Decodes a proto3-JSON value into a WorkflowDefinition. On failure, finds the offending
 * field by decoding sub-trees, so the violation names its path (`steps[0].next[1].to`).
 */
export function definitionFromJson(json: unknown): {
  definition?: WorkflowDefinition;
  violations: FieldViolation[];
} {
  try {
    return {
      definition: messageFromJson(WorkflowDefinition, TYPE.WorkflowDefinition, json),
      violations: [],
    };
  } catch (err) {
    return { violations: [locateError(json, "WorkflowDefinition", "", err as Error)] };
  }
}

// ---------------------------------------------------------------------------------------
// Finding the field behind a protobuf-es decoding error

type MessageName = keyof typeof TYPE;

const TYPE = {
  WorkflowDefinition: "kaon.v1.WorkflowDefinition",
  Param: "kaon.v1.Param",
  Step: "kaon.v1.Step",
  Trigger: "kaon.v1.Trigger",
  Notification: "kaon.v1.Notification",
  RunStrategy: "kaon.v1.RunStrategy",
  Transition: "kaon.v1.Transition",
  Foreach: "kaon.v1.Foreach",
  ForeachAxis: "kaon.v1.ForeachAxis",
  Loop: "kaon.v1.Loop",
  Subworkflow: "kaon.v1.Subworkflow",
  Resources: "kaon.v1.Resources",
  Constraint: "kaon.v1.Constraint",
  RetryPolicy: "kaon.v1.RetryPolicy",
  ArtifactRef: "kaon.v1.ArtifactRef",
  CronTrigger: "kaon.v1.CronTrigger",
  ArtifactTrigger: "kaon.v1.ArtifactTrigger",
  SignalTrigger: "kaon.v1.SignalTrigger",
} as const;

// biome-ignore lint/suspicious/noExplicitAny: codecs of different message types in one table
type AnyCodec = BinaryCodec<any> & { fromPartial(o: object): object };

const CODEC: Record<MessageName, AnyCodec> = {
  WorkflowDefinition,
  Param,
  Step,
  Trigger,
  Notification,
  RunStrategy,
  Transition,
  Foreach,
  ForeachAxis,
  Loop,
  Subworkflow,
  Resources,
  Constraint,
  RetryPolicy,
  ArtifactRef,
  CronTrigger,
  ArtifactTrigger,
  SignalTrigger,
};

/** Message-typed fields (by proto name) of the messages a definition contains. */
const CHILDREN: Partial<Record<MessageName, Record<string, MessageName>>> = {
  WorkflowDefinition: {
    params: "Param",
    steps: "Step",
    triggers: "Trigger",
    notifications: "Notification",
    run_strategy: "RunStrategy",
  },
  Step: {
    foreach: "Foreach",
    loop: "Loop",
    subworkflow: "Subworkflow",
    params: "Param",
    resources: "Resources",
    constraints: "Constraint",
    retry: "RetryPolicy",
    inputs: "ArtifactRef",
    outputs: "ArtifactRef",
    next: "Transition",
  },
  Foreach: { axes: "ForeachAxis", body: "Step" },
  Loop: { body: "Step" },
  Subworkflow: { params: "Param" },
  Trigger: {
    params: "Param",
    cron: "CronTrigger",
    artifact: "ArtifactTrigger",
    signal: "SignalTrigger",
  },
};

/** Proto field names of a message (for "did you mean" on unknown keys). */
function fieldNames(type: MessageName): string[] {
  const names = Object.keys(CODEC[type].fromPartial({})).map(toSnake);
  if (type === "Trigger") names.push("cron", "artifact", "signal");
  return names.filter((n) => n !== "kind");
}

function tryDecode(type: MessageName, json: unknown): Error | undefined {
  try {
    messageFromJson(CODEC[type], TYPE[type], json);
    return undefined;
  } catch (err) {
    return err as Error;
  }
}

function locateError(json: unknown, type: MessageName, path: string, whole: Error): FieldViolation {
  const here = path || "definition";
  if (json === null || typeof json !== "object" || Array.isArray(json)) {
    return {
      field: here,
      description: `expected an object (${TYPE[type]}), got ${describeJson(json)}`,
      hint: "",
    };
  }
  const children = CHILDREN[type] ?? {};
  for (const [key, value] of Object.entries(json)) {
    const err = tryDecode(type, { [key]: value });
    if (!err) continue;
    const fieldPath = path ? `${path}.${key}` : key;
    const childType = children[toSnake(key)];
    if (childType && value !== null) {
      if (Array.isArray(value)) {
        for (let i = 0; i < value.length; i++) {
          const childErr = tryDecode(childType, value[i]);
          if (childErr) return locateError(value[i], childType, `${fieldPath}[${i}]`, childErr);
        }
      } else if (typeof value === "object") {
        const childErr = tryDecode(childType, value);
        if (childErr) return locateError(value, childType, fieldPath, childErr);
      }
    }
    return explain(err, type, key, fieldPath, value);
  }
  return { field: here, description: cleanMessage(whole.message), hint: "" };
}

function explain(
  err: Error,
  type: MessageName,
  key: string,
  fieldPath: string,
  value: unknown,
): FieldViolation {
  const message = err.message;
  if (/key ".*" is unknown/.test(message)) {
    const names = fieldNames(type);
    const close = suggest(toSnake(key), names);
    return {
      field: fieldPath,
      description: `unknown field '${key}' in ${TYPE[type]}`,
      hint: close ? `did you mean '${close}'?` : `fields: ${names.join(", ")}`,
    };
  }
  const enumMatch = /cannot decode enum kaon\.v1\.(\w+) from JSON: (.*)$/.exec(message);
  if (enumMatch) {
    const enumName = enumMatch[1]!;
    const values = enumValueNames(enumName);
    const written = typeof value === "string" ? value : Array.isArray(value) ? "" : String(value);
    const close =
      values.find((v) => written && v.endsWith(`_${written.toUpperCase()}`)) ??
      (written ? suggest(written, values) : undefined);
    return {
      field: fieldPath,
      description: `${enumMatch[2]} is not a ${enumName} value`,
      hint: close ? `did you mean '${close}'?` : `use one of ${values.join(", ")}`,
    };
  }
  if (/google\.protobuf\.Duration/.test(message)) {
    return {
      field: fieldPath,
      description: `${JSON.stringify(value)} is not a duration`,
      hint: 'write seconds with an "s" suffix, e.g. "300s" or "1.5s"',
    };
  }
  return { field: fieldPath, description: cleanMessage(message), hint: "" };
}

function enumValueNames(enumName: string): string[] {
  const e = (proto as unknown as Record<string, Record<string, unknown>>)[enumName];
  if (!e) return [];
  return Object.keys(e).filter(
    (k) => typeof e[k] === "number" && e[k] !== -1 && !k.endsWith("_UNSPECIFIED"),
  );
}

function cleanMessage(message: string): string {
  return message
    .replace(/^cannot decode (field|message|enum) [\w.]+ from JSON: /, "")
    .replace(/^cannot decode (field|message|enum) [\w.]+ from JSON: /, "");
}

function describeJson(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "a list";
  return `${typeof value} ${JSON.stringify(value)}`;
}

function toSnake(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

function toCamel(name: string): string {
  return name.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

function firstLine(text: string): string {
  return text.split("\n")[0] ?? text;
}

// ---------------------------------------------------------------------------------------
// Field paths → YAML nodes

/** `steps[2].next[0].to` → ["steps", 2, "next", 0, "to"]. */
export function splitPath(path: string): Array<string | number> {
  const out: Array<string | number> = [];
  for (const part of path.split(".")) {
    const m = /^([^[\]]*)((?:\[\d+\])*)$/.exec(part);
    if (!m) {
      out.push(part);
      continue;
    }
    if (m[1]) out.push(m[1]);
    for (const ix of m[2]!.matchAll(/\[(\d+)\]/g)) out.push(Number(ix[1]));
  }
  return out;
}

/** The deepest node along `segments` (a missing last key locates its parent). */
function findNode(root: Node | null, segments: Array<string | number>): Node | undefined {
  let node: Node | null | undefined = root;
  let last: Node | undefined = root ?? undefined;
  for (const [i, seg] of segments.entries()) {
    if (!node) break;
    if (typeof seg === "number" && isSeq(node)) {
      node = node.items[seg] as Node | undefined;
    } else if (isMap(node)) {
      const key = String(seg);
      const pair: Pair | undefined = (node.items as Pair[]).find((p) => {
        const k = isScalar(p.key) ? String(p.key.value) : undefined;
        return k === key || k === toCamel(key) || k === toSnake(key);
      });
      // The last segment points at its key (the line a user edits); others descend.
      const atKey: boolean = i === segments.length - 1 || isScalar(pair?.value);
      node = pair ? ((atKey ? pair.key : pair.value) as Node | null) : undefined;
    } else {
      node = undefined;
    }
    if (node) last = node;
  }
  return last;
}
