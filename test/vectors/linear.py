"""Vector `linear`: three command steps in a sequence, workflow params literal and computed."""

import kaon


def workflow() -> kaon.Workflow:
    """The vector's workflow."""
    with kaon.Workflow(
        "vectors.linear",
        description="extract, transform, load",
        params={
            "country": "US",
            "limit": 1000,
            "dateint": kaon.expr("tsToDateInt(RUN_TS)"),
        },
    ) as wf:
        extract = kaon.command("extract", argv=["./extract.sh", "--country", "US"])
        transform = kaon.command(
            "transform", shell="python transform.py | gzip > out.gz"
        )
        load = kaon.command("load", argv=["./load.sh"], cwd="/srv/etl")
        extract >> transform >> load
    return wf
