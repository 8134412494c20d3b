"""Vector `branches`: an XOR split with conditions and an otherwise, an AND fan-out with a
conditional edge, joins (ALL by default, ANY when asked), and an `otherwise` that makes a
plain `branch()` XOR.
"""

import kaon


def workflow() -> kaon.Workflow:
    """The vector's workflow."""
    with kaon.Workflow(
        "vectors.branches", description="branch and join", params={"notify": True}
    ) as wf:
        check = kaon.command("check", argv=["./check.sh"])
        small = kaon.command("small", argv=["./small.sh"])
        large = kaon.command("large", argv=["./large.sh"])
        huge = kaon.command("huge", argv=["./huge.sh"])
        merge = kaon.noop("merge", join="any")
        (
            check.branch(xor=True)
            .when(f"{check.outputs['rows']} < 1000", small)
            .when(f"{check.outputs['rows']} < 1000000", large)
            .otherwise(huge)
            >> merge
        )

        report = kaon.command("report", argv=["./report.sh"])
        archive = kaon.command("archive", argv=["./archive.sh"])
        notify = kaon.http("notify", url="http://127.0.0.1:9000/hook", method="POST")
        done = kaon.noop("done")
        merge >> [report, archive]
        merge.branch().when("params.notify", notify)
        kaon.parallel(report, archive, notify) >> done
        # `otherwise` without xor=True: the split becomes XOR all the same.
        audit = kaon.command("audit", argv=["./audit.sh"])
        skip_audit = kaon.noop("skip_audit")
        done.branch().when("params.notify", audit).otherwise(skip_audit)
    return wf
