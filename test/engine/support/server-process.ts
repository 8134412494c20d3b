// A kaon server in its own process, for crash tests: `tsx server-process.ts <dataDir>` starts
// the engine harness on that data directory and prints one JSON line with its address; it
// runs until killed (the test kills it with SIGKILL to simulate a crash).
import { startEngineKaon } from "./harness.js";

const dataDir = process.argv[2];
if (!dataDir) {
  process.stderr.write("usage: server-process.ts <dataDir>\n");
  process.exit(2);
}
const k = await startEngineKaon({ dataDir, resources: { cpus: 4 } });
process.stdout.write(
  `${JSON.stringify({ grpc: k.server.grpcAddress, adminToken: k.adminToken, agentPid: k.backend.agentInfo().agentPid })}\n`,
);
