// The protobuf descriptors the server needs at run time: the kaon.v1 descriptor set (committed
// with the generated code) for server reflection, and a reflection registry over it that lets
// the HTTP gateway find each method's request/response message names and fields generically.
// The health service's descriptor is added so `grpcurl … grpc.health.v1.Health/Check` works.
import {
  create,
  createFileRegistry,
  type DescMessage,
  type DescMethod,
  type FileRegistry,
  fromBinary,
  toBinary,
} from "@bufbuild/protobuf";
import {
  FieldDescriptorProto_Label,
  FieldDescriptorProto_Type,
  FileDescriptorProtoSchema,
  FileDescriptorSetSchema,
  MethodDescriptorProtoSchema,
} from "@bufbuild/protobuf/wkt";
import { DESCRIPTOR_SET_BASE64 } from "@kaon/proto";

let protoset: Uint8Array | undefined;
let registry: FileRegistry | undefined;

/** kaon.v1 plus grpc.health.v1, encoded as a google.protobuf.FileDescriptorSet. */
export function serverProtoset(): Uint8Array {
  if (protoset) return protoset;
  const set = fromBinary(FileDescriptorSetSchema, Buffer.from(DESCRIPTOR_SET_BASE64, "base64"));
  if (!set.file.some((f) => f.package === "grpc.health.v1")) set.file.push(healthFile());
  protoset = toBinary(FileDescriptorSetSchema, set);
  return protoset;
}

function descriptorRegistry(): FileRegistry {
  registry ??= createFileRegistry(fromBinary(FileDescriptorSetSchema, serverProtoset()));
  return registry;
}

/** The descriptor of `method` (by its proto name, e.g. "GetRun") of service `serviceFullName`. */
export function methodDescriptor(serviceFullName: string, method: string): DescMethod | undefined {
  return descriptorRegistry()
    .getService(serviceFullName)
    ?.methods.find((m) => m.name === method);
}

export function messageDescriptor(typeName: string): DescMessage | undefined {
  return descriptorRegistry().getMessage(typeName);
}

/** grpc/health/v1/health.proto, written out (nice-grpc-server-health ships no descriptor). */
function healthFile() {
  const T = FieldDescriptorProto_Type;
  const optional = FieldDescriptorProto_Label.OPTIONAL;
  return create(FileDescriptorProtoSchema, {
    name: "grpc/health/v1/health.proto",
    package: "grpc.health.v1",
    syntax: "proto3",
    messageType: [
      {
        name: "HealthCheckRequest",
        field: [
          { name: "service", number: 1, label: optional, type: T.STRING, jsonName: "service" },
        ],
      },
      {
        name: "HealthCheckResponse",
        field: [
          {
            name: "status",
            number: 1,
            label: optional,
            type: T.ENUM,
            typeName: ".grpc.health.v1.HealthCheckResponse.ServingStatus",
            jsonName: "status",
          },
        ],
        enumType: [
          {
            name: "ServingStatus",
            value: [
              { name: "UNKNOWN", number: 0 },
              { name: "SERVING", number: 1 },
              { name: "NOT_SERVING", number: 2 },
              { name: "SERVICE_UNKNOWN", number: 3 },
            ],
          },
        ],
      },
    ],
    service: [
      {
        name: "Health",
        method: [
          create(MethodDescriptorProtoSchema, {
            name: "Check",
            inputType: ".grpc.health.v1.HealthCheckRequest",
            outputType: ".grpc.health.v1.HealthCheckResponse",
          }),
          create(MethodDescriptorProtoSchema, {
            name: "Watch",
            inputType: ".grpc.health.v1.HealthCheckRequest",
            outputType: ".grpc.health.v1.HealthCheckResponse",
            serverStreaming: true,
          }),
        ],
      },
    ],
  });
}
