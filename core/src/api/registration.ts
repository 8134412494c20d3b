// How a service joins the server: a generated kaon.v1 definition paired with an implementation.
// The server and the HTTP gateway see only this pair, never a service's internals, so adding a
// service is one `registerService(Definition, impl)` in the composition root.
import type { ServiceImplementation, TsProtoServiceDefinition } from "nice-grpc";
import type { CallContextExt } from "./auth.js";

/** A service ready to be served over gRPC and the HTTP gateway. */
export interface ServiceRegistration {
  readonly definition: TsProtoServiceDefinition;
  /** Methods keyed like `definition.methods` (lowerCamelCase, e.g. `getRun`). */
  readonly implementation: ServiceImplementation<TsProtoServiceDefinition, CallContextExt>;
}

/** Type-checks `implementation` against `definition` and erases the pair for the server. */
export function registerService<Definition extends TsProtoServiceDefinition>(
  definition: Definition,
  implementation: ServiceImplementation<Definition, CallContextExt>,
): ServiceRegistration {
  for (const key of Object.keys(definition.methods)) {
    if (typeof (implementation as Record<string, unknown>)[key] !== "function") {
      throw new Error(`${definition.fullName}: the implementation has no method '${key}'`);
    }
  }
  return {
    definition,
    implementation: implementation as unknown as ServiceRegistration["implementation"],
  };
}
