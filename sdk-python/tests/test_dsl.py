"""The DSL compiles every construct to the WorkflowDefinition core expects."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

import kaon
from kaon.v1 import workflow_pb2


def as_json(wf: kaon.Workflow) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(wf.to_canonical_json())
    return data


def steps_by_id(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["id"]: s for s in data["steps"]}


def test_context_manager_collects_steps_in_creation_order() -> None:
    with kaon.Workflow("wf") as wf:
        kaon.noop("c")
        kaon.noop("a")
        kaon.noop("b")
    assert [s.id for s in wf.to_definition().steps] == ["c", "a", "b"]


def test_steps_outside_a_workflow_block_belong_to_no_workflow() -> None:
    with kaon.Workflow("wf") as wf:
        kaon.noop("inside")
    outside = kaon.noop("outside")
    assert [s.id for s in wf.steps] == ["inside"]
    assert outside._graph is None


def test_builder_style_adds_everything_reachable() -> None:
    a, b, c = kaon.noop("a"), kaon.noop("b"), kaon.noop("c")
    wf = kaon.Workflow("wf", steps=[a >> b >> c])
    assert [s.id for s in wf.steps] == ["a", "b", "c"]
    wf2 = kaon.Workflow("wf2")
    wf2.add(a)
    assert [s.id for s in wf2.steps] == ["a", "b", "c"]


def test_edge_to_a_new_step_adopts_it_into_the_graph() -> None:
    with kaon.Workflow("wf") as wf:
        a = kaon.noop("a")
    late = kaon.noop("late")
    a >> late
    assert [s.id for s in wf.steps] == ["a", "late"]


def test_sequence_parallel_and_join() -> None:
    with kaon.Workflow("wf") as wf:
        a, b, c, d = (kaon.noop(x) for x in "abcd")
        a >> [b, c] >> d
    s = steps_by_id(as_json(wf))
    assert s["a"]["next"] == [{"to": "b"}, {"to": "c"}]
    assert s["b"]["next"] == [{"to": "d"}]
    assert s["c"]["next"] == [{"to": "d"}]
    assert "next" not in s["d"]


def test_verbs_build_the_same_graph_as_operators() -> None:
    with kaon.Workflow("ops") as ops:
        a, b, c, d = (kaon.noop(x) for x in "abcd")
        a >> [b, c] >> d
    with kaon.Workflow("ops") as verbs:
        a, b, c, d = (kaon.noop(x) for x in "abcd")
        kaon.sequence(a, kaon.parallel(b, c), d)
    assert ops.to_canonical_json() == verbs.to_canonical_json()


def test_list_on_the_left_joins() -> None:
    with kaon.Workflow("wf") as wf:
        a, b, c = (kaon.noop(x) for x in "abc")
        [a, b] >> c
    s = steps_by_id(as_json(wf))
    assert s["a"]["next"] == [{"to": "c"}] and s["b"]["next"] == [{"to": "c"}]


def test_chain_as_branch_target_connects_its_head_and_joins_its_tail() -> None:
    with kaon.Workflow("wf") as wf:
        a, b, c, d, e = (kaon.noop(x) for x in "abcde")
        a.branch(xor=True).when("x > 1", b >> c).otherwise(d) >> e
    s = steps_by_id(as_json(wf))
    assert s["a"]["split"] == "SPLIT_MODE_XOR"
    assert s["a"]["next"] == [{"to": "b", "condition": "x > 1"}, {"to": "d", "otherwise": True}]
    assert s["c"]["next"] == [{"to": "e"}] and s["d"]["next"] == [{"to": "e"}]
    assert s["b"]["next"] == [{"to": "c"}]


def test_and_branch_leaves_split_unset_and_to_adds_a_condition() -> None:
    with kaon.Workflow("wf") as wf:
        a, b, c = (kaon.noop(x) for x in "abc")
        a.branch().when("params.go", b)
        a.to(c, when=kaon.expr("params.other"))
    s = steps_by_id(as_json(wf))
    assert "split" not in s["a"]
    assert s["a"]["next"] == [
        {"to": "b", "condition": "params.go"},
        {"to": "c", "condition": "params.other"},
    ]


def test_otherwise_makes_a_plain_branch_xor_as_in_typescript() -> None:
    # Core rejects an otherwise edge unless the split is XOR; `otherwise` means "else".
    with kaon.Workflow("wf") as wf:
        a, b, c = (kaon.noop(x) for x in "abc")
        a.branch().when("params.go", b).otherwise(c)
    s = steps_by_id(as_json(wf))
    assert s["a"]["split"] == "SPLIT_MODE_XOR"
    assert s["a"]["next"] == [
        {"to": "b", "condition": "params.go"},
        {"to": "c", "otherwise": True},
    ]


def test_split_is_a_step_option_as_in_typescript() -> None:
    with kaon.Workflow("wf") as wf:
        a = kaon.noop("a", split="and")
        b = kaon.noop("b", split="xor")
        a >> b
    s = steps_by_id(as_json(wf))
    assert s["a"]["split"] == "SPLIT_MODE_AND" and s["b"]["split"] == "SPLIT_MODE_XOR"


def test_output_refs_render_as_cel_paths() -> None:
    train = kaon.noop("train")
    assert str(train.outputs["auc"]) == "steps.train.outputs.auc"
    assert train.outputs.auc.path == "steps.train.outputs.auc"
    assert f"{train.outputs['auc']} > 0.8" == "steps.train.outputs.auc > 0.8"


@pytest.mark.parametrize(
    ("ctor", "expected_type", "expected_config"),
    [
        (lambda: kaon.command("s", argv=["a", "b"]), "command", {"argv": ["a", "b"]}),
        (
            lambda: kaon.command("s", shell="echo hi", cwd="/tmp"),
            "command",
            {"shell": "echo hi", "cwd": "/tmp"},
        ),
        (lambda: kaon.python("s", script="print(1)"), "python", {"script": "print(1)"}),
        (
            lambda: kaon.python("s", module="m", args=["-x"]),
            "python",
            {"module": "m", "args": ["-x"]},
        ),
        (
            lambda: kaon.spark(
                "s",
                app="a.jar",
                main_class="M",
                version="3.5",
                executor_memory="4g",
                py_files=None,
            ),
            "spark",
            {"app": "a.jar", "main_class": "M", "version": "3.5", "executor_memory": "4g"},
        ),
        (
            lambda: kaon.container(
                "s", image="img", shell="echo hi", mounts=[{"source": "/a", "target": "/b"}]
            ),
            "container",
            {"image": "img", "shell": "echo hi", "mounts": [{"source": "/a", "target": "/b"}]},
        ),
        (
            lambda: kaon.sql("s", connection="wh", query="SELECT 1"),
            "sql",
            {"connection": "wh", "query": "SELECT 1"},
        ),
        (
            lambda: kaon.http("s", url="http://h", expect_status=[200], body={"a": 1}),
            "http",
            {"url": "http://h", "expect_status": [200], "body": {"a": 1}},
        ),
        (lambda: kaon.sleep("s", 1.5), "sleep", {"seconds": 1.5}),
        (lambda: kaon.noop("s"), "noop", None),
        (lambda: kaon.step("s", "custom", config={"k": [1]}), "custom", {"k": [1]}),
        (
            lambda: kaon.command("s", argv=["a"], config={"extra": True}),
            "command",
            {"argv": ["a"], "extra": True},
        ),
    ],
)
def test_step_types_and_their_config(ctor: Any, expected_type: str, expected_config: Any) -> None:
    wf = kaon.Workflow("wf", steps=[ctor()])
    step = as_json(wf)["steps"][0]
    assert step["type"] == expected_type
    assert step.get("config") == expected_config


def test_common_step_options() -> None:
    with kaon.Workflow("wf") as wf:
        kaon.command(
            "s",
            argv=["x"],
            description="d",
            params={"n": 1, "e": kaon.expr("params.n + 1")},
            resources={"cpus": 0.5, "mem_mb": 512},
            constraints=[kaon.Constraint("pool", "equals", "gpu", soft=True)],
            retry=kaon.Retry(
                max_attempts=4,
                initial_backoff=timedelta(seconds=2),
                retry_on=["exit_code"],
                exit_codes=[3],
            ),
            timeout=timedelta(minutes=2),
            env={"A": "1"},
            inputs=[kaon.Artifact("in", partitions={"d": "${params.d}"})],
            outputs=[kaon.Artifact("out", uri="file:///x")],
            tags={"t": "v"},
            ignore_failure=True,
            skip_if_outputs_exist="always",
            join="any",
        )
    step = as_json(wf)["steps"][0]
    assert step == {
        "id": "s",
        "type": "command",
        "description": "d",
        "config": {"argv": ["x"]},
        "params": [
            {"name": "n", "type": "PARAM_TYPE_INT", "value": 1},
            {"name": "e", "expr": "params.n + 1"},
        ],
        "resources": {"cpus": 0.5, "memMb": 512},
        "constraints": [
            {
                "attribute": "pool",
                "operator": "CONSTRAINT_OPERATOR_EQUALS",
                "value": "gpu",
                "soft": True,
            }
        ],
        "retry": {
            "maxAttempts": 4,
            "initialBackoff": "2s",
            "retryOn": ["RETRY_ON_EXIT_CODE"],
            "exitCodes": [3],
        },
        "timeout": "120s",
        "env": {"A": "1"},
        "inputs": [{"name": "in", "partitions": {"d": "${params.d}"}}],
        "outputs": [{"name": "out", "uri": "file:///x"}],
        "tags": {"t": "v"},
        "ignoreFailure": True,
        "skipIfOutputsExist": "SKIP_POLICY_ALWAYS",
        "join": "JOIN_MODE_ANY",
    }


def test_retry_as_an_int_and_timeout_in_seconds() -> None:
    wf = kaon.Workflow("wf", steps=[kaon.noop("s", retry=3, timeout=0.25)])
    step = as_json(wf)["steps"][0]
    assert step["retry"] == {"maxAttempts": 3}
    assert step["timeout"] == "0.250s"


def test_params_typed_literal_expression_and_required() -> None:
    wf = kaon.Workflow(
        "wf",
        params=[
            kaon.Param("country", str, default="US"),
            kaon.Param("dateint", int, expr="tsToDateInt(RUN_TS)"),
            kaon.Param("d2", int, default=kaon.expr("params.dateint - 1")),
            kaon.Param("model", "string", required=True, description="which"),
            kaon.Param("cfg", "json", default={"a": [1, None]}),
            kaon.Param("x", float, default=3),
        ],
    )
    assert as_json(wf)["params"] == [
        {"name": "country", "type": "PARAM_TYPE_STRING", "value": "US"},
        {"name": "dateint", "type": "PARAM_TYPE_INT", "expr": "tsToDateInt(RUN_TS)"},
        {"name": "d2", "type": "PARAM_TYPE_INT", "expr": "params.dateint - 1"},
        {"name": "model", "type": "PARAM_TYPE_STRING", "required": True, "description": "which"},
        {"name": "cfg", "type": "PARAM_TYPE_JSON", "value": {"a": [1, None]}},
        {"name": "x", "type": "PARAM_TYPE_DOUBLE", "value": 3},
    ]


def test_param_shorthand_infers_types() -> None:
    wf = kaon.Workflow(
        "wf",
        params={"s": "x", "i": 2, "f": 2.5, "b": False, "l": [1], "m": {"k": "v"}, "n": None},
    )
    types = {p["name"]: p.get("type") for p in as_json(wf)["params"]}
    assert types == {
        "s": "PARAM_TYPE_STRING",
        "i": "PARAM_TYPE_INT",
        "f": "PARAM_TYPE_DOUBLE",
        "b": "PARAM_TYPE_BOOL",
        "l": "PARAM_TYPE_LIST",
        "m": "PARAM_TYPE_MAP",
        "n": None,
    }
    assert as_json(wf)["params"][-1] == {"name": "n", "value": None}


def test_foreach_over_list_expr_output_and_axes() -> None:
    with kaon.Workflow("wf") as wf:
        src = kaon.noop("src")
        with kaon.foreach("a", over=[1, "x"], concurrency=3):
            kaon.noop("body_a")
        kaon.foreach("b", over=kaon.expr("range(3)"), body=[kaon.noop("body_b")])
        kaon.foreach("c", over=src.outputs["regions"], body=kaon.noop("c1") >> kaon.noop("c2"))
        kaon.foreach("d", over={"x": [1], "y": kaon.expr("params.ys")}, body=kaon.noop("body_d"))
    s = steps_by_id(as_json(wf))
    assert list(s) == ["src", "a", "b", "c", "d"]
    assert s["a"]["foreach"] == {
        "axes": [{"values": [1, "x"]}],
        "concurrency": 3,
        "body": [{"id": "body_a", "type": "noop"}],
    }
    assert s["b"]["foreach"]["axes"] == [{"expr": "range(3)"}]
    assert s["c"]["foreach"]["axes"] == [{"expr": "steps.src.outputs.regions"}]
    assert [b["id"] for b in s["c"]["foreach"]["body"]] == ["c1", "c2"]
    assert s["d"]["foreach"]["axes"] == [
        {"name": "x", "values": [1]},
        {"name": "y", "expr": "params.ys"},
    ]


def test_foreach_body_passed_explicitly_moves_steps_out_of_the_workflow() -> None:
    with kaon.Workflow("wf") as wf:
        t = kaon.noop("train")
        v = kaon.noop("validate")
        kaon.foreach("per", over=[1, 2], body=t >> v)
    data = as_json(wf)
    assert [s["id"] for s in data["steps"]] == ["per"]
    assert [s["id"] for s in data["steps"][0]["foreach"]["body"]] == ["train", "validate"]


def test_foreach_over_a_bare_string_is_refused_with_the_fix() -> None:
    wf = kaon.Workflow("wf", steps=[kaon.foreach("f", over="params.xs", body=[kaon.noop("b")])])
    with pytest.raises(TypeError, match=r"kaon.expr"):
        wf.to_definition()


def test_loop_and_subworkflow() -> None:
    with kaon.Workflow("wf") as wf:
        with kaon.loop("tune", until="steps.check.outputs.ok", while_="true", max_iterations=5):
            kaon.noop("fit") >> kaon.noop("check")
        kaon.subworkflow("child", "other", version=2, params={"a": kaon.expr("params.a")})
    s = steps_by_id(as_json(wf))
    assert s["tune"]["loop"] == {
        "body": [
            {"id": "fit", "type": "noop", "next": [{"to": "check"}]},
            {"id": "check", "type": "noop"},
        ],
        "until": "steps.check.outputs.ok",
        "while": "true",
        "maxIterations": 5,
    }
    assert s["child"] == {
        "id": "child",
        "type": "subworkflow",
        "subworkflow": {
            "workflowId": "other",
            "version": 2,
            "params": [{"name": "a", "expr": "params.a"}],
        },
    }


def test_workflow_level_fields_and_triggers() -> None:
    wf = kaon.Workflow(
        "wf",
        description="d",
        namespace="ns",
        owner="me",
        tags={"a": "b"},
        triggers=[
            kaon.CronTrigger("c", expression="0 3 * * *", timezone="UTC", params={"x": 1}),
            kaon.ArtifactTrigger("a", name="features", partitions={"k": "v"}),
            kaon.SignalTrigger("s", name="go", disabled=True),
        ],
        notifications=[kaon.Notification("http://h", on=["FAILED"])],
        run_strategy="sequential",
        timeout=3600,
        failure_mode="stop_all",
        step_type_concurrency={"spark": 1},
        priority=-2,
        steps=[kaon.noop("only")],
    )
    data = as_json(wf)
    del data["steps"]
    assert data == {
        "id": "wf",
        "description": "d",
        "namespace": "ns",
        "owner": "me",
        "tags": {"a": "b"},
        "triggers": [
            {
                "id": "c",
                "cron": {"expression": "0 3 * * *", "timezone": "UTC"},
                "params": [{"name": "x", "type": "PARAM_TYPE_INT", "value": 1}],
            },
            {"id": "a", "artifact": {"name": "features", "partitions": {"k": "v"}}},
            {"id": "s", "signal": {"name": "go"}, "disabled": True},
        ],
        "notifications": [{"on": ["FAILED"], "webhookUrl": "http://h"}],
        "runStrategy": {"mode": "RUN_STRATEGY_MODE_SEQUENTIAL"},
        "timeout": "3600s",
        "failureMode": "FAILURE_MODE_STOP_ALL",
        "stepTypeConcurrency": {"spark": 1},
        "priority": -2,
    }


def test_to_definition_returns_the_generated_message() -> None:
    wf = kaon.Workflow("wf", steps=[kaon.noop("a")])
    definition = wf.to_definition()
    assert isinstance(definition, workflow_pb2.WorkflowDefinition)
    assert definition.steps[0].id == "a"


def test_the_sdk_does_not_validate_what_core_validates() -> None:
    # Bad ids, dangling edges, duplicate steps: all compile; core's Validate reports them.
    with kaon.Workflow("Not A Valid Id!") as wf:
        a = kaon.noop("dup")
        kaon.noop("dup")
        other = kaon.Workflow("other", steps=[kaon.noop("elsewhere")])
        a >> other.steps[0]
        kaon.loop("l", max_iterations=0)
    data = as_json(wf)
    assert [s["id"] for s in data["steps"]] == ["dup", "dup", "l"]
    assert data["steps"][0]["next"] == [{"to": "elsewhere"}]


def test_unencodable_values_name_the_field() -> None:
    wf = kaon.Workflow("wf", steps=[kaon.noop("s", params={"bad": object()})])
    with pytest.raises(
        kaon.EncodeError, match=r"steps\[0\]\.params\.bad\.value: a value of type builtins.object"
    ):
        wf.to_definition()
    wf2 = kaon.Workflow("wf", steps=[kaon.noop("s", timeout="10s")])  # type: ignore[arg-type]
    with pytest.raises(kaon.EncodeError, match=r"steps\[0\]\.timeout: expected seconds"):
        wf2.to_definition()
    wf3 = kaon.Workflow("wf", steps=[kaon.noop("s", join="some")])
    with pytest.raises(
        ValueError, match=r"steps\[0\]\.join: unknown value 'some'; expected one of 'all', 'any'"
    ):
        wf3.to_definition()


def test_unknown_step_option_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="unknown option"):
        kaon.noop("s", retires=3)  # type: ignore[call-arg]


def test_repr_html_of_a_workflow_lists_steps_and_edges() -> None:
    with kaon.Workflow("wf", description="<b>") as wf:
        a, b = kaon.noop("a"), kaon.noop("b")
        a.branch(xor=True).when("x < 1", b)
    html = wf._repr_html_()
    assert "&lt;b&gt;" in html and "<code>a</code>" in html and "b [x &lt; 1]" in html
