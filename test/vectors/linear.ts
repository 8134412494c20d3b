// Vector `linear` (README.md): three command steps in a sequence, workflow params literal and computed.
import * as kaon from "@kaon/sdk";

export function workflow(): kaon.Workflow {
  return kaon.workflow(
    {
      id: "vectors.linear",
      description: "extract, transform, load",
      params: { country: "US", limit: 1000, dateint: kaon.expr("tsToDateInt(RUN_TS)") },
    },
    () => {
      const extract = kaon.command("extract", ["./extract.sh", "--country", "US"]);
      const transform = kaon.command("transform", "python transform.py | gzip > out.gz");
      const load = kaon.command("load", { argv: ["./load.sh"], cwd: "/srv/etl" });
      return kaon.seq(extract, transform, load);
    },
  );
}
