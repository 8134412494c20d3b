// The proto3 JSON mapping, done faithfully. ts-proto's own toJSON/fromJSON do not follow the
// mapping for well-known types (a Duration becomes {seconds,nanos} instead of "30s"), so every
// JSON boundary — the HTTP gateway, definition files, canonical definitions — goes through
// protobuf-es reflection over the committed descriptor set instead. Unknown fields are errors
// by default, so a typo in a YAML definition is reported, never silently dropped.
import {
  createFileRegistry,
  type DescMessage,
  fromBinary,
  fromJson,
  type JsonValue,
  toBinary,
  toJson,
} from "@bufbuild/protobuf";
import type { BinaryReader, BinaryWriter } from "@bufbuild/protobuf/wire";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { DESCRIPTOR_SET_BASE64 } from "./gen/descriptor.js";

export type { JsonValue };

/** The encode/decode half of a ts-proto message codec. */
export interface BinaryCodec<T> {
  encode(message: T, writer?: BinaryWriter): BinaryWriter;
  decode(input: BinaryReader | Uint8Array, length?: number): T;
}

let registry: ReturnType<typeof createFileRegistry> | undefined;

function schemaOf(typeName: string): DescMessage {
  registry ??= createFileRegistry(
    fromBinary(FileDescriptorSetSchema, Buffer.from(DESCRIPTOR_SET_BASE64, "base64")),
  );
  const schema = registry.getMessage(typeName);
  if (!schema) throw new Error(`unknown message type ${typeName}`);
  return schema;
}

export interface ToJsonOptions {
  /** Use proto field names (snake_case) instead of lowerCamelCase JSON names. */
  useProtoFieldName?: boolean;
}

/** Encodes a ts-proto message as proto3 JSON. `typeName` is the full name, e.g. "kaon.v1.Run". */
export function messageToJson<T>(
  codec: BinaryCodec<T>,
  typeName: string,
  message: T,
  options: ToJsonOptions = {},
): JsonValue {
  const schema = schemaOf(typeName);
  const reflected = fromBinary(schema, codec.encode(message).finish());
  return toJson(schema, reflected, { useProtoFieldName: options.useProtoFieldName ?? false });
}

/**
 * Decodes proto3 JSON into a ts-proto message. Accepts JSON names and proto field names.
 * Throws an Error whose message names the offending field (e.g. `key "nxt" is unknown`).
 */
export function messageFromJson<T>(
  codec: BinaryCodec<T>,
  typeName: string,
  json: unknown,
  options: { ignoreUnknownFields?: boolean } = {},
): T {
  const schema = schemaOf(typeName);
  const reflected = fromJson(schema, json as JsonValue, {
    ignoreUnknownFields: options.ignoreUnknownFields ?? false,
  });
  return codec.decode(toBinary(schema, reflected));
}

/** Stable JSON text: object keys sorted, no whitespace. Used for canonical definitions. */
export function canonicalJsonText(value: JsonValue): string {
  return JSON.stringify(sortKeys(value));
}

function sortKeys(value: JsonValue): JsonValue {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value !== null && typeof value === "object") {
    const out: { [key: string]: JsonValue } = {};
    for (const key of Object.keys(value).sort()) out[key] = sortKeys(value[key] as JsonValue);
    return out;
  }
  return value;
}
