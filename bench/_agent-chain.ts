// temporary helper (perf engineer): sequential launches through LocalBackend only
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Offer, TaskStatus } from "../core/src/backends/backend.js";
import { LocalBackend } from "../core/src/backends/local/local-backend.js";
const n = Number(process.argv[2] ?? 300);
const dir = mkdtempSync(join(tmpdir(), "kaon-ach-"));
let offer: Offer | undefined;
let wakeOffer: (() => void) | undefined;
const waiters = new Map<string, (s: TaskStatus) => void>();
const b = new LocalBackend({ dataDir: dir, resources: { cpus: 2 } });
await b.start({
  onOffers: (o) => { offer = o[0]; wakeOffer?.(); },
  onRescind: () => {},
  onStatus: (s) => { if (s.state === "FINISHED" || s.state === "FAILED" || s.state === "ERROR" || s.state === "LOST") { waiters.get(s.taskId)?.(s); b.acknowledge(s.taskId); } },
  onMessage: () => {},
} as never);
const conn = (b as unknown as { conn: { request(r: object): Promise<{ elapsedMs: number }> } }).conn;
await new Promise((r) => setTimeout(r, 300)); // let the spare pool stock (helper only)
const floor = await conn.request({ type: "bench", n, concurrency: 1, argv: ["true"] });
const t0 = performance.now();
for (let i = 0; i < n; i++) {
  if (!offer) await new Promise<void>((r) => { wakeOffer = r; });
  const o = offer as Offer; offer = undefined;
  const d = join(dir, "runs", "r", `s${i}`, "1");
  const done = new Promise<TaskStatus>((r) => waiters.set(`t${i}`, r));
  b.launch([o.id], [{ taskId: `t${i}`, agentId: "local", name: "x", resources: { cpus: 0.1, memMb: 16, gpus: 0, diskMb: 0 }, command: { kind: "argv", argv: ["true"] }, env: {}, cwd: d, stdoutPath: join(d, "stdout"), stderrPath: join(d, "stderr") }]);
  const s = await done; if (s.state !== "FINISHED") throw new Error(JSON.stringify(s));
}
const per = (performance.now() - t0) / n;
console.log(JSON.stringify({ agent: process.env.KAON_AGENT_BIN ? "old" : "new", perTaskMs: +per.toFixed(3), floorMs: +(floor.elapsedMs / n).toFixed(3), overheadMs: +(per - floor.elapsedMs / n).toFixed(3) }));
await b.stop();
process.exit(0);
