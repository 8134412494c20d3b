// Test support: a real nice-grpc server on 127.0.0.1 with hand-written test implementations
// of a few kaon.v1 services. Methods a test does not implement answer UNIMPLEMENTED.
import {
  createServer,
  type Server,
  ServerError,
  type ServiceImplementation,
  Status,
  type TsProtoServiceDefinition,
} from "nice-grpc";

export interface TestServer {
  address: string;
  port: number;
  server: Server;
  stop(): Promise<void>;
}

/** Fills the methods `impl` leaves out with UNIMPLEMENTED handlers. */
export function partialImpl<D extends TsProtoServiceDefinition>(
  definition: D,
  impl: Partial<ServiceImplementation<D>>,
): ServiceImplementation<D> {
  const full: Record<string, unknown> = { ...impl };
  for (const name of Object.keys(definition.methods)) {
    full[name] ??= () => {
      throw new ServerError(Status.UNIMPLEMENTED, `${name} is not implemented by this test server`);
    };
  }
  return full as ServiceImplementation<D>;
}

/** Starts a server with `register` adding services; `port` 0 picks a free one. */
export async function startTestServer(
  register: (server: Server) => void,
  port = 0,
): Promise<TestServer> {
  const server = createServer();
  register(server);
  const bound = await server.listen(`127.0.0.1:${port}`);
  return {
    address: `127.0.0.1:${bound}`,
    port: bound,
    server,
    stop: async () => server.forceShutdown(),
  };
}
