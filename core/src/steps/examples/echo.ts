// An example step type for docs/extending.md: `echo` writes a message (with `${params.x}`
// placeholders) to a file in the working directory and reports it as an output. Inline — it
// runs inside core — so it must be quick and must honour the abort signal.
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { ConfigCheck } from "../config-check.js";
import type { InlineStepType } from "../step-type.js";
import { configScope, renderConfigString } from "../templating.js";

export const echoStepType: InlineStepType = {
  kind: "inline",
  name: "echo",
  description: "Writes a message to echo.txt and reports it as the output `message`.",

  validate(config, path) {
    const check = new ConfigCheck(config, path, "echo").allowKeys(["message", "uppercase"]);
    check.string("message", { required: true, template: true, maxLength: 4096 });
    const upper = check.value("uppercase");
    if (upper !== undefined && typeof upper !== "boolean") {
      check.add(
        check.field("uppercase"),
        `'uppercase' must be true or false, got ${JSON.stringify(upper)}`,
      );
    }
    return check.violations;
  },

  async run(ctx, report, signal) {
    const rendered = renderConfigString(ctx.config.message as string, configScope(ctx), "message");
    const message = ctx.config.uppercase === true ? rendered.toUpperCase() : rendered;
    await writeFile(join(ctx.workDir, "echo.txt"), `${message}\n`, { signal });
    report.progress(100, "written");
    return { succeeded: true, outputs: { message } };
  },
};
