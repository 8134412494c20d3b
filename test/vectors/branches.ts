// Vector `branches` (README.md): an XOR split with conditions and an otherwise, an AND fan-out
// with a conditional edge, joins (ALL by default, ANY when asked), and an `otherwise` that makes
// a plain `branch()` XOR.
import * as kaon from "@kaon/sdk";

export function workflow(): kaon.Workflow {
  return kaon.workflow(
    { id: "vectors.branches", description: "branch and join", params: { notify: true } },
    () => {
      const check = kaon.command("check", ["./check.sh"]);
      const small = kaon.command("small", ["./small.sh"]);
      const large = kaon.command("large", ["./large.sh"]);
      const huge = kaon.command("huge", ["./huge.sh"]);
      const merge = kaon.noop("merge", { join: "any" });
      kaon.seq(
        check
          .branch({ xor: true })
          .when(`${check.output("rows")} < 1000`, small)
          .when(`${check.output("rows")} < 1000000`, large)
          .otherwise(huge),
        merge,
      );

      const report = kaon.command("report", ["./report.sh"]);
      const archive = kaon.command("archive", ["./archive.sh"]);
      const notify = kaon.http("notify", { url: "http://127.0.0.1:9000/hook", method: "POST" });
      const done = kaon.noop("done");
      merge.to(report, archive);
      merge.when("params.notify", notify);
      kaon.seq(kaon.par(report, archive, notify), done);
      // `otherwise` without { xor: true }: the split becomes XOR all the same.
      const audit = kaon.command("audit", ["./audit.sh"]);
      const skipAudit = kaon.noop("skip_audit");
      done.branch().when("params.notify", audit).otherwise(skipAudit);
    },
  );
}
