"""The recommendations pipeline from the Meson paper, in kaon's Python DSL.

    select_users (sql) >> wrangle (python) >> train_loop (loop, <= 3 iterations) >> publish

    train_loop body:   train_global (spark) >> validate_global ─┐
                       regional (foreach over the regions found) ┴>> select_model >> validate

The same workflow is defined in TypeScript in `pipeline.ts`; both compile to the same canonical
definition (test/e2e/recommendations-defs.test.ts). Run `python pipeline.py` to print that
definition (canonical JSON); `kaon demo` deploys it and runs it. See README.md here and
docs/tutorial.md.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import kaon
from kaon import Param, Resources, expr

HERE = Path(__file__).resolve().parent
JOBS_DIR = str(HERE / "jobs")

#: The example's data (a SQLite file) is reached through this named connection, which the
#: server is configured with (`kaon demo` does that).
SQL_CONNECTION = "recommendations"

#: The cohort: recent ratings of users in the selected countries. Values are bound, never
#: spliced: `:since_ms`/`:until_ms` come from the step params, `:countries` is a JSON list.
COHORT_QUERY = """\
select r.user_id, r.title_id, r.rating, r.ts, r.country
from ratings r
where r.ts >= cast(:since_ms as integer)
  and r.ts < cast(:until_ms as integer)
  and r.country in (select value from json_each(:countries))
order by r.ts"""

#: Hyper-parameters per loop iteration: the first pass is deliberately short (1 epoch, strong
#: regularisation), so it is rarely stable; each later pass trains longer with less.
EPOCHS = "1 + 5 * loop.iteration"
REG = "0.3 / double(1 + 2 * loop.iteration)"


def publish_image() -> str | None:
    """The image for the publish step, when it can run in a container here.

    A container runtime alone is not enough: the image must exist too (this machine may have no
    registry access). KAON_RECOMMENDATIONS_IMAGE names it: one built from ./Dockerfile, or the
    one ./build-image.sh assembles offline from this host's Python (`kaon demo` does that when
    podman is installed). Otherwise publish runs as a command step with the same script.
    """
    image = os.environ.get("KAON_RECOMMENDATIONS_IMAGE", "")
    if image and (shutil.which("docker") or shutil.which("podman")):
        return image
    return None


def per_iteration_params() -> list[Param]:
    """Params of the training steps that change with each loop iteration."""
    return [
        Param("iteration", int, expr="loop.iteration"),
        Param("epochs", int, expr=EPOCHS),
        Param("reg", float, expr=REG),
    ]


def workflow() -> kaon.Workflow:
    """The workflow definition."""
    with kaon.Workflow(
        "recommendations",
        description=(
            "Meson's recommendations pipeline: select a cohort, wrangle it, train a global "
            "Spark ALS model and one model per region in parallel, pick the better per region, "
            "retrain until stable (at most 3 times), publish."
        ),
        owner="examples",
        tags={"example": "recommendations"},
        params=[
            Param(
                "root",
                str,
                default="/tmp/kaon-recommendations",
                description="directory under which each run gets its own workspace",
            ),
            Param(
                "jobs_dir",
                str,
                default=JOBS_DIR,
                description="directory of the job scripts",
            ),
            Param(
                "python",
                str,
                default="python3",
                description="Python with the kaon SDK, for the publish command",
            ),
            Param(
                "workspace",
                str,
                expr='params.root + "/" + run.id',
                description="this run's working directory (root + run id)",
            ),
            Param("dateint", int, expr="tsToDateInt(RUN_TS)", description="the run's day"),
            Param("window_days", int, default=30, description="days of viewing in the cohort"),
            Param(
                "countries",
                list,
                default=["US", "BR", "IN", "DE", "JP"],
                description="countries in the cohort",
            ),
            Param(
                "target_rmse",
                float,
                default=0.7,
                description="mean held-out RMSE at which the models count as stable",
            ),
        ],
    ) as wf:
        select_users = kaon.sql(
            "select_users",
            description="the cohort: ratings in the date window, in the selected countries",
            connection=SQL_CONNECTION,
            query=COHORT_QUERY,
            query_params={
                "since_ms": "${params.since_ms}",
                "until_ms": "${params.until_ms}",
                "countries": "${params.countries}",
            },
            params={
                "since_ms": expr("RUN_TS - int(params.window_days) * 86400000"),
                "until_ms": expr("RUN_TS"),
            },
        )
        wrangle = kaon.python(
            "wrangle",
            description="clean, split train/test, list the regions present",
            path="${params.jobs_dir}/wrangle.py",
            params={"rows_file": select_users.outputs["rows_file"]},
            timeout=600,
        )

        with kaon.loop(
            "train_loop",
            description="retrain until the chosen models are stable",
            until="steps.validate.outputs.stable",
            max_iterations=3,
        ) as train_loop:
            train_global = kaon.step(
                "train_global",
                "spark",
                description="global ALS model on the whole cohort (Spark MLlib)",
                config={
                    "app": "${params.jobs_dir}/train_global.py",
                    "master": "local[2]",
                    "driver_memory": "1g",
                    "conf": {"spark.sql.shuffle.partitions": "4"},
                },
                params=per_iteration_params(),
                resources=Resources(cpus=1, mem_mb=1536),
                retry=2,
                timeout=900,
            )
            validate_global = kaon.python(
                "validate_global",
                description="held-out RMSE of the global model, overall and per region",
                path="${params.jobs_dir}/validate_global.py",
                params={"predictions_dir": train_global.outputs["predictions_dir"]},
                timeout=600,
            )
            with kaon.foreach(
                "regional",
                description="one model per region found in the cohort",
                over=wrangle.outputs["regions"],
                concurrency=2,
                params=per_iteration_params(),
            ) as regional:
                kaon.python(
                    "train",
                    description="train and validate this region's model",
                    path="${params.jobs_dir}/train_region.py",
                    params={"region": expr("foreach.value")},
                    resources=Resources(cpus=0.5, mem_mb=512),
                    timeout=600,
                )
            select_model = kaon.python(
                "select_model",
                description="per region, the better of global and regional; a plot",
                path="${params.jobs_dir}/select_model.py",
                params=[
                    Param("iteration", int, expr="loop.iteration"),
                    Param(
                        "global_rmse_by_region",
                        dict,
                        expr="steps.validate_global.outputs.rmse_by_region",
                    ),
                ],
                join="all",
                timeout=600,
            )
            validate = kaon.python(
                "validate",
                description="stable when the mean RMSE of the chosen models meets the target",
                path="${params.jobs_dir}/validate.py",
                params={"mean_rmse": select_model.outputs["mean_rmse"]},
                timeout=300,
            )
            train_global >> validate_global
            [validate_global, regional] >> select_model >> validate

        publish_params = {
            "choice": train_loop.outputs["choice"],
            "chosen_rmse": train_loop.outputs["chosen_rmse"],
        }
        image = publish_image()
        if image is not None:
            # The job scripts and the run's workspace are mounted; publish.py writes through
            # the mount (`write_dir`) and announces the workspace path the host sees.
            publish = kaon.container(
                "publish",
                description="write the manifest of the chosen models and announce it",
                image=image,
                command=["python", "/jobs/publish.py"],
                mounts=[
                    {"source": "${params.jobs_dir}", "target": "/jobs", "read_only": True},
                    {"source": "${params.workspace}", "target": "/workspace"},
                ],
                params={**publish_params, "write_dir": "/workspace"},
                timeout=300,
            )
        else:
            publish = kaon.command(
                "publish",
                description="write the manifest of the chosen models and announce it",
                argv=["${params.python}", "${params.jobs_dir}/publish.py"],
                params={**publish_params, "write_dir": expr("params.workspace")},
                timeout=300,
            )

        select_users >> wrangle >> train_loop >> publish
    return wf


if __name__ == "__main__":
    sys.stdout.write(workflow().to_canonical_json() + "\n")
