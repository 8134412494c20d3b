"""`Workflow`: the top-level graph plus everything a `WorkflowDefinition` holds."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from types import TracebackType
from typing import TYPE_CHECKING

from kaon._dsl.canonical import canonical_json
from kaon._dsl.graph import Flow, Graph
from kaon._dsl.policies import (
    Notification,
    ParamsLike,
    RunStrategy,
    Trigger,
    params_to_proto,
)
from kaon._dsl.values import enum_value, to_duration
from kaon.v1 import workflow_pb2

if TYPE_CHECKING:
    from typing_extensions import Self


class Workflow(Graph):
    """A workflow: params, triggers, policies and a graph of steps.

    Use it as a context manager (steps created inside the block join it) or as a builder
    (`wf.add(a >> b)`). Nothing is validated here; `client.validate(wf)` asks core.

    Example:
        ```python
        with kaon.Workflow("etl", params={"country": "US"}) as wf:
            extract = kaon.command("extract", argv=["./extract.sh"])
            load = kaon.command("load", argv=["./load.sh"])
            extract >> load
        ```

    Args:
        id: Workflow id (lowercase letters, digits, `_` `-` `.`, starting with a letter).
        description: Free text shown in the UI.
        namespace: Tenant namespace; empty means "default".
        owner: Owning team or person.
        tags: Labels for search.
        params: Workflow params: a list of `Param`, or `{name: literal | expr(...)}`.
        triggers: `CronTrigger`, `ArtifactTrigger`, `SignalTrigger`.
        notifications: Webhooks told about outcomes.
        run_strategy: `RunStrategy(...)` or a mode name ("sequential", ...).
        timeout: Whole-run timeout, seconds or timedelta.
        failure_mode: "finish_running" or "stop_all".
        step_type_concurrency: Most steps of a type running at once in one run.
        priority: Scheduling priority; higher goes first.
        steps: Steps or flows to add (alternative to the `with` block).
    """

    def __init__(
        self,
        id: str,
        *,
        description: str = "",
        namespace: str = "",
        owner: str = "",
        tags: Mapping[str, str] | None = None,
        params: ParamsLike = None,
        triggers: Sequence[Trigger] = (),
        notifications: Sequence[Notification] = (),
        run_strategy: RunStrategy | str | None = None,
        timeout: float | timedelta | None = None,
        failure_mode: str | None = None,
        step_type_concurrency: Mapping[str, int] | None = None,
        priority: int = 0,
        steps: Iterable[Flow] = (),
    ) -> None:
        super().__init__()
        self.id = id
        self.description = description
        self.namespace = namespace
        self.owner = owner
        self.tags = dict(tags or {})
        self.params = params
        self.triggers = list(triggers)
        self.notifications = list(notifications)
        self.run_strategy = (
            RunStrategy(run_strategy) if isinstance(run_strategy, str) else run_strategy
        )
        self.timeout = timeout
        self.failure_mode = failure_mode
        self.step_type_concurrency = dict(step_type_concurrency or {})
        self.priority = priority
        for item in steps:
            self.add(item)

    def __enter__(self) -> Self:
        self._enter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._exit()

    def to_definition(self) -> workflow_pb2.WorkflowDefinition:
        """Compiles to `kaon.v1.WorkflowDefinition`.

        Raises:
            TypeError, ValueError: a value cannot be encoded at all (the message names the
                field path); everything else is left for core to judge.
        """
        out = workflow_pb2.WorkflowDefinition(
            id=self.id,
            description=self.description,
            namespace=self.namespace,
            owner=self.owner,
            tags=self.tags,
            params=params_to_proto(self.params, "params"),
            steps=self._compile_steps("steps"),
            triggers=[t.to_proto(f"triggers[{i}]") for i, t in enumerate(self.triggers)],
            notifications=[n.to_proto() for n in self.notifications],
            step_type_concurrency=self.step_type_concurrency,
            priority=self.priority,
        )
        if self.run_strategy is not None:
            out.run_strategy.CopyFrom(self.run_strategy.to_proto("run_strategy"))
            out.run_strategy.SetInParent()
        if self.timeout is not None:
            out.timeout.CopyFrom(to_duration(self.timeout, "timeout"))
        if self.failure_mode is not None:
            out.failure_mode = enum_value(  # type: ignore[assignment]
                "FAILURE_MODE_",
                dict(workflow_pb2.FailureMode.items()),
                self.failure_mode,
                "failure_mode",
            )
        return out

    def to_canonical_json(self) -> str:
        """Canonical JSON text of the definition (identical to the TypeScript SDK's)."""
        return canonical_json(self.to_definition())

    def _repr_html_(self) -> str:
        from kaon._html import workflow_html

        return workflow_html(self)

    def __repr__(self) -> str:
        return f"Workflow(id={self.id!r}, steps={[s.id for s in self.steps]})"
