"""Vector `everything`: every field of WorkflowDefinition and Step the DSLs can set."""

from datetime import timedelta

import kaon


def workflow() -> kaon.Workflow:
    """The vector's workflow."""
    with kaon.Workflow(
        "vectors.everything",
        description="every construct, ünïcödé included",
        namespace="ml",
        owner="recs-team",
        tags={"team": "recs", "tier": "1"},
        params=[
            kaon.Param("country", str, default="US", description="ISO country"),
            kaon.Param("limit", int, default=1000),
            kaon.Param("ratio", float, default=0.25),
            kaon.Param("threshold", float, default=2.0),
            kaon.Param("big", float, default=1e21),
            kaon.Param("tiny", float, default=1e-7),
            kaon.Param("enabled", bool, default=True),
            kaon.Param("regions", list, default=["us-east", "eu-west"]),
            kaon.Param(
                "weights", dict, default={"b": 2, "a": 1.5, "nested": {"z": None}}
            ),
            kaon.Param("blob", "json", default={"k": [1, "two", False]}),
            kaon.Param("dateint", int, expr="tsToDateInt(RUN_TS)"),
            kaon.Param("day", int, default=kaon.expr("params.dateint % 100")),
            kaon.Param("model", str, required=True, description="model to publish"),
            kaon.Param("anything"),
            kaon.Param("nothing", default=None),
        ],
        triggers=[
            kaon.CronTrigger(
                "nightly",
                expression="0 3 * * *",
                timezone="America/Los_Angeles",
                params={"country": "CA"},
            ),
            kaon.ArtifactTrigger(
                "on_features",
                name="features.daily",
                partitions={"country": "US"},
                params={"dateint": kaon.expr("trigger.partitions.dateint")},
            ),
            kaon.SignalTrigger("manual_kick", name="kick", disabled=True),
        ],
        notifications=[
            kaon.Notification("http://127.0.0.1:9000/fail"),
            kaon.Notification("http://127.0.0.1:9000/all", on=["SUCCEEDED", "FAILED"]),
        ],
        run_strategy=kaon.RunStrategy("parallel", max_concurrent_runs=3),
        timeout=timedelta(hours=6),
        failure_mode="stop_all",
        step_type_concurrency={"spark": 2, "python": 8},
        priority=5,
    ) as wf:
        select = kaon.sql(
            "select_cohort",
            connection="warehouse",
            query="SELECT id FROM members WHERE country = :country",
            query_params={"country": "${params.country}"},
            description="pick the cohort",
            tags={"stage": "data"},
        )
        wrangle = kaon.spark(
            "wrangle",
            app="jobs/wrangle.jar",
            main_class="com.example.Wrangle",
            args=["--date", "${params.dateint}"],
            conf={"spark.sql.shuffle.partitions": "64"},
            jars=["libs/extra.jar"],
            driver_memory="2g",
            executor_memory="4g",
            master="local[2]",
            version="3.5",
            name="wrangle-${params.dateint}",
            split="and",
            resources=kaon.Resources(cpus=4, mem_mb=8192, disk_mb=1024),
            constraints=[
                kaon.Constraint("pool", "equals", "spark"),
                kaon.Constraint("hostname", "unique"),
                kaon.Constraint("zone", "like", "us-.*", soft=True),
                kaon.Constraint("ssd", "exists"),
                kaon.Constraint("rack", "not_equals", "r13"),
            ],
            retry=kaon.Retry(
                max_attempts=3,
                initial_backoff=1.5,
                backoff_multiplier=2.5,
                max_backoff=timedelta(minutes=5),
                retry_on=["exit_code", "lost", "timeout"],
                exit_codes=[1, 137],
            ),
            timeout=timedelta(minutes=90),
            heartbeat_timeout=timedelta(minutes=10),
            inputs=[
                kaon.Artifact("members", partitions={"dateint": "${params.dateint}"})
            ],
            outputs=[
                kaon.Artifact(
                    "features.daily",
                    partitions={
                        "dateint": "${params.dateint}",
                        "country": "${params.country}",
                    },
                    uri="s3://bucket/features/${params.dateint}",
                )
            ],
            skip_if_outputs_exist="on_restart",
        )
        train = kaon.container(
            "train_global",
            image="registry.local/train:1.2",
            command=["python", "-m", "train", "--epochs", "3"],
            mounts=[
                {"source": "/data/cohorts", "target": "/data", "read_only": True},
                {"source": "/srv/models", "target": "/models"},
            ],
            workdir="/work",
            runtime="podman",
            network="none",
            pull="never",
            init=True,
            resources=kaon.Resources(cpus=2, mem_mb=4096, gpus=1),
            env={"MODE": "global", "SEED": "42"},
            params={"epochs": 3, "lr": 0.001},
        )
        validate = kaon.python(
            "validate",
            script="import sys\nprint('ok')\n",
            interpreter="/usr/bin/python3",
            retry=2,
            timeout=30,
            ignore_failure=True,
        )
        publish = kaon.http(
            "publish",
            url="http://127.0.0.1:9000/publish",
            method="PUT",
            headers={"content-type": "application/json"},
            body={"model": "${params.model}", "score": 0.5},
            expect_status=[200, 204],
            timeout_seconds=12.5,
            skip_if_outputs_exist="never",
        )
        wait = kaon.sleep("cool_down", 2.5)
        custom = kaon.step("custom", "my_plugin", config={"answer": 42}, join="all")
        cleanup = kaon.command("cleanup", shell="rm -rf tmp", cwd="/srv/work")
        end = kaon.noop("end", skip_if_outputs_exist="always")

        with kaon.foreach(
            "regional",
            over={"region": kaon.expr("params.regions"), "seed": [1, 2]},
            concurrency=2,
            description="per region",
        ) as regional:
            kaon.python(
                "train_region",
                module="train.region",
                args=["--region", "${params.region}"],
                venv="/opt/venvs/train",
                cwd="/srv/train",
                params={"region": kaon.expr("foreach.values.region")},
            )

        with kaon.loop(
            "stabilise",
            until="steps.check.outputs.stable == true",
            while_="loop.iteration < 9",
            max_iterations=10,
        ) as stabilise:
            kaon.noop("check")

        child = kaon.subworkflow(
            "downstream", "vectors.linear", params={"country": "MX"}
        )

        select >> wrangle >> [train, regional] >> validate
        validate.branch(xor=True).when(
            "steps.validate.outputs.auc > 0.8", publish
        ).otherwise(stabilise)
        [publish, stabilise] >> wait >> custom >> child >> cleanup >> end
    return wf
