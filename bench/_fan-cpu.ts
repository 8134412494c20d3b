// temporary profiling helper (perf engineer); deleted before hand-off
import { readFileSync } from "node:fs";
import { RUN_ENDED } from "../core/src/engine/notifier.js";
import { startEngineKaon } from "../test/engine/support/harness.js";
const fanout = Number(process.argv[2] ?? 5000);
const k = await startEngineKaon({ resources: { cpus: 2 } });
const conn = (k.backend as unknown as { conn: { request(r: object): Promise<{ elapsedMs: number }> } }).conn;
const agentPid = (k.backend as unknown as { agentInfo(): { agentPid: number } }).agentInfo().agentPid;
const agentCpu = () => {
  const f = readFileSync(`/proc/${agentPid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? [];
  return ((Number(f[11]) + Number(f[12])) * 10);
};
const childCpu = () => { const f = readFileSync(`/proc/${agentPid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? []; return (Number(f[13]) + Number(f[14])) * 10; };
await k.deploy({ id: "fanout", steps: [{ id: "fe", type: "foreach", foreach: { axes: [{ values: Array.from({ length: fanout }, (_, i) => i) }], concurrency: 8, body: [{ id: "t", type: "command", config: { argv: ["true"] }, resources: { cpus: 0.1, memMb: 16 } }] } }] });
const a0 = agentCpu(), c0 = childCpu();
const floor = await conn.request({ type: "bench", n: fanout, concurrency: 8, argv: ["true"] });
const a1 = agentCpu(), c1 = childCpu();
let runId = "";
const ended = new Promise<void>((resolve) => { const off = k.engine.notifier.subscribe(RUN_ENDED, () => { if (runId && !k.engine.isLive(runId)) { off(); resolve(); } }); });
const n0 = process.cpuUsage(); const t0 = performance.now();
({ runId } = await k.engine.startRun({ workflowId: "fanout", version: 0, params: {} }));
await ended;
const ms = performance.now() - t0; const n1 = process.cpuUsage(n0);
const a2 = agentCpu(), c2 = childCpu();
console.log(JSON.stringify({ fanout, floorMs: floor.elapsedMs, floorAgentCpuMs: a1 - a0, floorChildCpuMs: c1 - c0, runMs: Math.round(ms), ratio: +(ms / floor.elapsedMs).toFixed(2), nodeCpuMs: Math.round((n1.user + n1.system) / 1000), nodeUser: Math.round(n1.user/1000), agentCpuMs: a2 - a1, childCpuMs: c2 - c1 }));
if (process.env.KAON_AGENT_CPU_PROFILE) { process.kill(agentPid, 'SIGTERM'); await new Promise((r) => setTimeout(r, 500)); }
await k.stop({ keepDataDir: !!process.env.KAON_AGENT_CPU_PROFILE });
