// The local backend: this machine as a ComputeBackend, its jobs run by the kaon-agent process.
export { defaultAgentBinary } from "./agent-process.js";
export {
  LOCAL_AGENT_ID,
  type LocalAgentInfo,
  LocalBackend,
  type LocalBackendOptions,
  machineResources,
} from "./local-backend.js";
export { ResourcePool } from "./resource-pool.js";
