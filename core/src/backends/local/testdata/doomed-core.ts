// A core that the abrupt-death test kills with SIGKILL once its jobs run: it starts the
// local backend on the data directory in argv[2], launches two jobs and prints "running".

import path from "node:path";
import { LocalBackend } from "../local-backend.js";
import { Recorder, shell, spec, untilReleased } from "../test-support.js";

const dataDir = process.argv[2] as string;
const backend = new LocalBackend({
  dataDir,
  resources: { cpus: 4, memMb: 4096, gpus: 0, diskMb: 0 },
});
const rec = new Recorder();
await backend.start(rec);
const offer = await rec.takeOffer();
backend.launch(
  [offer.id],
  [
    spec(dataDir, "c-long", untilReleased),
    spec(dataDir, "c-quick", shell("while [ ! -e go ]; do sleep 0.02; done; echo x >> quick.done")),
  ],
);
await rec.state("c-long", "RUNNING");
await rec.state("c-quick", "RUNNING");
process.stdout.write(`running ${path.basename(dataDir)}\n`);
await new Promise(() => {}); // until killed
