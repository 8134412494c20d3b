"""Vector `foreach_loop`: foreach over a literal list, an expression, an upstream output and
two axes; a loop with until and max_iterations; a subworkflow.
"""

import kaon


def workflow() -> kaon.Workflow:
    """The vector's workflow."""
    with kaon.Workflow(
        "vectors.foreach_loop", params={"days": [1, 2, 3], "depths": [3, 5]}
    ) as wf:
        prepare = kaon.python("prepare", module="pipeline.prepare")

        with kaon.foreach(
            "per_country", over=["US", "CA", "MX"], concurrency=2
        ) as per_country:
            kaon.command(
                "fetch",
                argv=["./fetch.sh"],
                params={"country": kaon.expr("foreach.value")},
            )

        with kaon.foreach("per_day", over=kaon.expr("params.days")) as per_day:
            kaon.noop("day")

        with kaon.foreach(
            "regional", over=prepare.outputs["regions"], concurrency=4
        ) as regional:
            train = kaon.python("train", module="pipeline.train")
            score = kaon.python("score", module="pipeline.score")
            train >> score

        with kaon.foreach(
            "grid", over={"lr": [0.1, 0.01], "depth": kaon.expr("params.depths")}
        ) as grid:
            kaon.python("fit", script="print('fit')")

        with kaon.loop(
            "tune", until="steps.evaluate.outputs.stable", max_iterations=5
        ) as tune:
            fit = kaon.python("refit", module="pipeline.refit")
            evaluate = kaon.python("evaluate", module="pipeline.evaluate")
            fit >> evaluate

        publish = kaon.subworkflow(
            "publish",
            "vectors.publish",
            version=3,
            params={"model": kaon.expr("steps.tune.outputs.model"), "dry_run": False},
        )

        prepare >> [per_country, per_day, regional, grid] >> tune >> publish
    return wf
