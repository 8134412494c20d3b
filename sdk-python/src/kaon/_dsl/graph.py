"""Steps, graphs and the composition operators (`>>`, lists, branches, verbs).

A `Flow` is a fragment of a graph with entry steps (`heads`) and exit steps (`tails`);
a single step is the smallest flow. `x >> y` connects every tail of x to every head of y,
in declaration order, and returns the combined flow, so `a >> [b, c] >> d` reads like the
pipeline it builds. Steps join a graph when they are created inside a `with Workflow(...)`
(or `with foreach(...)`) block, when passed to `add(...)`, or when an edge connects them to a
step that already belongs to one.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeAlias

from kaon._dsl.policies import (
    Artifact,
    Constraint,
    ParamsLike,
    Resources,
    Retry,
    params_to_proto,
)
from kaon._dsl.values import Expr, OutputRef, enum_value, to_duration, to_struct
from kaon.v1 import workflow_pb2

if TYPE_CHECKING:
    from typing_extensions import TypedDict
else:
    from typing import TypedDict

_current_graph: contextvars.ContextVar[Graph | None] = contextvars.ContextVar(
    "kaon_current_graph", default=None
)

FlowLike: TypeAlias = "Flow | Sequence[Flow]"
Condition: TypeAlias = "str | Expr | OutputRef"


class CommonStepOptions(TypedDict, total=False):
    """Keyword options every step constructor accepts (all optional).

    Attributes:
        description: Free text shown in the UI.
        resources: `Resources(...)` or a dict of its fields.
        constraints: Placement rules.
        retry: `Retry(...)`, or an int for `Retry(max_attempts=n)`.
        timeout: Seconds or a timedelta; the attempt is killed after this long.
        heartbeat_timeout: Seconds or a timedelta; an attempt that reports nothing (e.g.
            `kaon.job.heartbeat()`) for this long is taken as hung and killed (TIMED_OUT).
        env: Extra environment (literal strings).
        inputs: Artifacts the step waits for.
        outputs: Artifacts announced when the step succeeds.
        tags: Free-form labels.
        ignore_failure: A failure does not fail the run.
        skip_if_outputs_exist: "never", "on_restart" or "always".
        join: "all" or "any": how incoming edges are awaited.
        split: "and" or "xor": how outgoing edges are chosen (see `Step.branch`).
        config: Extra config keys merged over the type's own.
    """

    description: str
    resources: Resources | Mapping[str, float]
    constraints: Sequence[Constraint]
    retry: Retry | int
    timeout: float | timedelta
    heartbeat_timeout: float | timedelta
    env: Mapping[str, str]
    inputs: Sequence[Artifact]
    outputs: Sequence[Artifact]
    tags: Mapping[str, str]
    ignore_failure: bool
    skip_if_outputs_exist: str
    join: str
    split: str
    config: Mapping[str, Any]


class StepOptions(CommonStepOptions, total=False):
    """`CommonStepOptions` plus step params.

    Attributes:
        params: Step params: a list of `Param` or `{name: literal | expr(...)}`.
    """

    params: ParamsLike


class Graph:
    """An ordered set of steps: the top level of a workflow or the body of a container."""

    def __init__(self) -> None:
        self._steps: list[Step] = []
        self._token: contextvars.Token[Graph | None] | None = None

    @property
    def steps(self) -> list[Step]:
        """The steps in insertion order."""
        return list(self._steps)

    def add(self, *items: Flow | Iterable[Flow]) -> None:
        """Adds steps (or every step reachable from a flow's heads) to this graph."""
        for step in collect_steps(items):
            self._adopt(step)

    def step(self, step_id: str) -> Step:
        """Returns the step with this id (searching container bodies too).

        Raises:
            KeyError: naming the id and the ids that exist.
        """
        for step in self.walk():
            if step.id == step_id:
                return step
        known = ", ".join(s.id for s in self.walk())
        raise KeyError(f"no step {step_id!r} in this graph (steps: {known})")

    def walk(self) -> Iterator[Step]:
        """Yields every step, depth first, container bodies after their container."""
        for step in self._steps:
            yield step
            body = getattr(step, "body", None)
            if isinstance(body, Graph):
                yield from body.walk()

    def _adopt(self, step: Step) -> None:
        if step._graph is self:
            return
        if step._graph is not None:
            step._graph._steps.remove(step)
        step._graph = self
        self._steps.append(step)

    def _enter(self) -> None:
        self._token = _current_graph.set(self)

    def _exit(self) -> None:
        if self._token is not None:
            _current_graph.reset(self._token)
            self._token = None

    def _compile_steps(self, where: str) -> list[workflow_pb2.Step]:
        return [step.to_proto(f"{where}[{i}]") for i, step in enumerate(self._steps)]


def collect_steps(items: Iterable[Flow | Iterable[Flow]]) -> list[Step]:
    """Every step reachable from the heads of the given flows, in breadth-first edge order."""
    seen: dict[int, Step] = {}
    queue: list[Step] = []

    def push(step: Step) -> None:
        if id(step) not in seen:
            seen[id(step)] = step
            queue.append(step)

    for item in items:
        flows: Iterable[Flow] = [item] if isinstance(item, Flow) else item
        for flow in flows:
            if not isinstance(flow, Flow):
                raise TypeError(f"expected a kaon step or flow, got {flow!r}")
            for head in flow.heads:
                push(head)
            for step in flow._members:
                push(step)
    i = 0
    while i < len(queue):
        for edge in queue[i].next:
            push(edge.target)
        i += 1
    return queue


def _as_flow(value: FlowLike) -> Flow:
    if isinstance(value, Flow):
        return value
    if isinstance(value, (list, tuple)):
        return parallel(*value)
    raise TypeError(f"cannot connect {value!r}: expected a kaon step, a flow or a list of them")


class Flow:
    """A graph fragment with entry steps (`heads`) and exit steps (`tails`)."""

    def __init__(
        self,
        heads: Sequence[Step],
        tails: Sequence[Step],
        members: Sequence[Step] = (),
    ) -> None:
        self.heads: tuple[Step, ...] = tuple(heads)
        self.tails: tuple[Step, ...] = tuple(tails)
        self._members: tuple[Step, ...] = tuple(members)

    def __rshift__(self, other: FlowLike) -> Flow:
        target = _as_flow(other)
        for tail in self.tails:
            for head in target.heads:
                tail._connect(head, condition="", otherwise=False)
        return Flow(self.heads, target.tails, (*self._members, *target._members))

    def __rrshift__(self, other: Sequence[Flow]) -> Flow:
        return _as_flow(other) >> self

    def __repr__(self) -> str:
        heads = ", ".join(s.id for s in self.heads)
        tails = ", ".join(s.id for s in self.tails)
        return f"Flow(heads=[{heads}], tails=[{tails}])"


class Transition:
    """An edge to `target`, optionally guarded by a CEL condition."""

    def __init__(self, target: Step, condition: str, otherwise: bool) -> None:
        self.target = target
        self.condition = condition
        self.otherwise = otherwise

    def to_proto(self) -> workflow_pb2.Transition:
        """Returns the `kaon.v1.Transition` message."""
        return workflow_pb2.Transition(
            to=self.target.id, condition=self.condition, otherwise=self.otherwise
        )


class Outputs:
    """`step.outputs["name"]`: references to a step's outputs for conditions and foreach."""

    def __init__(self, step_id: str) -> None:
        self._step_id = step_id

    def __getitem__(self, name: str) -> OutputRef:
        return OutputRef(self._step_id, name)

    def __getattr__(self, name: str) -> OutputRef:
        if name.startswith("_"):
            raise AttributeError(name)
        return OutputRef(self._step_id, name)


class Step(Flow):
    """One step of a graph. Create steps with the constructors (`command`, `python`, ...)."""

    def __init__(
        self,
        id: str,
        type: str,
        type_config: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> None:
        super().__init__((self,), (self,))
        self.id = id
        self.type = type
        self.config: dict[str, Any] = dict(type_config or {})
        self.config.update(options.pop("config", None) or {})
        self.description: str = options.pop("description", "")
        self.params: ParamsLike = options.pop("params", None)
        resources = options.pop("resources", None)
        self.resources: Resources | None = (
            Resources(**resources) if isinstance(resources, Mapping) else resources
        )
        self.constraints: list[Constraint] = list(options.pop("constraints", ()))
        retry = options.pop("retry", None)
        self.retry: Retry | None = Retry(max_attempts=retry) if isinstance(retry, int) else retry
        self.timeout: float | timedelta | None = options.pop("timeout", None)
        self.heartbeat_timeout: float | timedelta | None = options.pop("heartbeat_timeout", None)
        self.env: dict[str, str] = dict(options.pop("env", {}))
        self.input_artifacts: list[Artifact] = list(options.pop("inputs", ()))
        self.output_artifacts: list[Artifact] = list(options.pop("outputs", ()))
        self.tags: dict[str, str] = dict(options.pop("tags", {}))
        self.ignore_failure: bool = options.pop("ignore_failure", False)
        self.skip_if_outputs_exist: str | None = options.pop("skip_if_outputs_exist", None)
        self.join: str | None = options.pop("join", None)
        self.split: str | None = options.pop("split", None)
        if options:
            raise TypeError(f"step {id!r}: unknown option(s) {', '.join(sorted(options))}")
        self.next: list[Transition] = []
        self._graph: Graph | None = None
        graph = _current_graph.get()
        if graph is not None:
            graph._adopt(self)

    @property
    def outputs(self) -> Outputs:
        """References to this step's outputs: `step.outputs["auc"]` → `steps.<id>.outputs.auc`."""
        return Outputs(self.id)

    def to(self, target: FlowLike, *, when: Condition | None = None) -> Flow:
        """Connects this step to `target`, guarded by the condition `when` if given."""
        flow = _as_flow(target)
        for head in flow.heads:
            self._connect(head, condition=str(when) if when is not None else "", otherwise=False)
        return Flow((self,), flow.tails, flow._members)

    def branch(self, *, xor: bool = False) -> Branch:
        """Starts conditional edges: `a.branch(xor=True).when("cond", b).otherwise(c)`.

        Args:
            xor: Take only the first edge whose condition holds (else the `otherwise` edge);
                when False every edge whose condition holds is taken. Adding an
                `otherwise` edge makes the split XOR either way.
        """
        if xor:
            self.split = "xor"
        return Branch(self)

    def _connect(self, target: Step, *, condition: str, otherwise: bool) -> None:
        self.next.append(Transition(target, condition, otherwise))
        if self._graph is not None and target._graph is None:
            self._graph._adopt(target)
        elif target._graph is not None and self._graph is None:
            target._graph._adopt(self)

    def _fill_container(self, out: workflow_pb2.Step, where: str) -> None:
        """Containers override this to write their sub-message."""

    def to_proto(self, where: str = "step") -> workflow_pb2.Step:
        """Returns the `kaon.v1.Step` message. `where` prefixes encoding errors."""
        out = workflow_pb2.Step(
            id=self.id,
            description=self.description,
            type=self.type,
            params=params_to_proto(self.params, f"{where}.params"),
            constraints=[
                c.to_proto(f"{where}.constraints[{i}]") for i, c in enumerate(self.constraints)
            ],
            env=self.env,
            inputs=[a.to_proto() for a in self.input_artifacts],
            outputs=[a.to_proto() for a in self.output_artifacts],
            next=[t.to_proto() for t in self.next],
            ignore_failure=self.ignore_failure,
            tags=self.tags,
        )
        if self.config:
            out.config.CopyFrom(to_struct(self.config, f"{where}.config"))
        self._fill_container(out, where)
        if self.resources is not None:
            out.resources.CopyFrom(self.resources.to_proto())
            out.resources.SetInParent()
        if self.retry is not None:
            out.retry.CopyFrom(self.retry.to_proto(f"{where}.retry"))
            out.retry.SetInParent()
        if self.timeout is not None:
            out.timeout.CopyFrom(to_duration(self.timeout, f"{where}.timeout"))
        if self.heartbeat_timeout is not None:
            out.heartbeat_timeout.CopyFrom(
                to_duration(self.heartbeat_timeout, f"{where}.heartbeat_timeout")
            )
        if self.split is not None:
            out.split = enum_value(  # type: ignore[assignment]
                "SPLIT_MODE_", dict(workflow_pb2.SplitMode.items()), self.split, f"{where}.split"
            )
        if self.join is not None:
            out.join = enum_value(  # type: ignore[assignment]
                "JOIN_MODE_", dict(workflow_pb2.JoinMode.items()), self.join, f"{where}.join"
            )
        if self.skip_if_outputs_exist is not None:
            out.skip_if_outputs_exist = enum_value(  # type: ignore[assignment]
                "SKIP_POLICY_",
                dict(workflow_pb2.SkipPolicy.items()),
                self.skip_if_outputs_exist,
                f"{where}.skip_if_outputs_exist",
            )
        return out

    def __repr__(self) -> str:
        return f"Step(id={self.id!r}, type={self.type!r})"


class Branch(Flow):
    """Conditional edges out of one step; a flow whose tails are the branch targets."""

    def __init__(self, source: Step) -> None:
        super().__init__((source,), (source,))
        self._source = source
        self._targets: list[Flow] = []

    def when(self, condition: Condition, target: FlowLike) -> Branch:
        """Adds an edge to `target` taken when the CEL `condition` holds."""
        return self._add(target, condition=str(condition), otherwise=False)

    def otherwise(self, target: FlowLike) -> Branch:
        """Adds the edge taken when no other condition holds; makes the split XOR.

        An `otherwise` edge only means something when one edge is chosen, so
        `a.branch().when(c, b).otherwise(d)` is the same as `a.branch(xor=True)...`
        (the TypeScript DSL does the same).
        """
        self._source.split = "xor"
        return self._add(target, condition="", otherwise=True)

    def _add(self, target: FlowLike, *, condition: str, otherwise: bool) -> Branch:
        flow = _as_flow(target)
        for head in flow.heads:
            self._source._connect(head, condition=condition, otherwise=otherwise)
        self._targets.append(flow)
        self.tails = tuple(t for f in self._targets for t in f.tails)
        self._members = tuple(m for f in self._targets for m in f._members)
        return self


def sequence(*flows: FlowLike) -> Flow:
    """Chains flows one after another: `sequence(a, b, c)` is `a >> b >> c`."""
    if not flows:
        raise TypeError("sequence() needs at least one step")
    result = _as_flow(flows[0])
    for flow in flows[1:]:
        result = result >> flow
    return result


def parallel(*flows: FlowLike) -> Flow:
    """Puts flows side by side: after a step they fan out, before one they join."""
    parts = [_as_flow(f) for f in flows]
    heads = [h for p in parts for h in p.heads]
    tails = [t for p in parts for t in p.tails]
    members = [m for p in parts for m in (*p.heads, *p._members)]
    return Flow(heads, tails, members)
