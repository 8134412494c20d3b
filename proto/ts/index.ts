// The public face of @kaon/proto: every kaon.v1 message, enum and service definition,
// re-exported from the generated modules under ./gen (which are never edited by hand).

export { DESCRIPTOR_SET_BASE64 } from "./gen/descriptor.js";
export { Duration } from "./gen/google/protobuf/duration.js";
export { ListValue, Struct, Value } from "./gen/google/protobuf/struct.js";
export { Timestamp } from "./gen/google/protobuf/timestamp.js";
export * from "./gen/kaon/v1/artifact.js";
export * from "./gen/kaon/v1/artifact_service.js";
export * from "./gen/kaon/v1/cluster_service.js";
export * from "./gen/kaon/v1/common.js";
export * from "./gen/kaon/v1/job_service.js";
export * from "./gen/kaon/v1/run.js";
export * from "./gen/kaon/v1/run_service.js";
export * from "./gen/kaon/v1/trigger_service.js";
export * from "./gen/kaon/v1/workflow.js";
export * from "./gen/kaon/v1/workflow_service.js";
export * from "./json.js";
