"""Step constructors, one per step type core knows, and the three containers.

Config keys are what core's step types read (docs/step-types.md); a constructor only puts
in the keys the author gave, so the compiled config stays minimal and identical to what the
TypeScript DSL produces (test/vectors/README.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from kaon._dsl.function import function_config
from kaon._dsl.graph import CommonStepOptions, Flow, Graph, Step, StepOptions
from kaon._dsl.policies import ParamsLike, params_to_proto
from kaon._dsl.values import Expr, OutputRef, fill_list, to_plain
from kaon.v1 import workflow_pb2

if TYPE_CHECKING:
    from typing_extensions import Self, Unpack


def _given(**keys: Any) -> dict[str, Any]:
    return {k: v for k, v in keys.items() if v is not None}


def step(id: str, type: str, *, config: Mapping[str, Any] | None = None, **options: Any) -> Step:
    """A step of any type, for plugins the SDK has no constructor for.

    Args:
        id: Step id, unique within its graph.
        type: Step type name.
        config: The type's configuration (any JSON object).
        **options: Common step options (see `StepOptions`).
    """
    return Step(id, type, config, **options)


def command(
    id: str,
    *,
    argv: Sequence[str] | None = None,
    shell: str | None = None,
    cwd: str | None = None,
    **options: Unpack[StepOptions],
) -> Step:
    """Runs a program: `argv=["python", "train.py"]`, or a shell line `shell="make all"`."""
    config = _given(argv=list(argv) if argv is not None else None, shell=shell, cwd=cwd)
    return Step(id, "command", config, **options)


def python(
    id: str,
    *,
    script: str | None = None,
    path: str | None = None,
    module: str | None = None,
    function: Callable[..., Any] | None = None,
    args: Sequence[Any] | None = None,
    kwargs: Mapping[str, Any] | None = None,
    interpreter: str | None = None,
    venv: str | None = None,
    cwd: str | None = None,
    **options: Unpack[StepOptions],
) -> Step:
    """Runs Python: inline `script=` source, a script file `path=`, a `module=`, or a `function=`.

    A function (e.g. defined in a notebook cell) is shipped with its source and a cloudpickle
    of `(function, args, kwargs)`; on the compute side `python -m kaon._function_runner` calls
    it and its return value becomes the step's outputs (a dict: one output per key; anything
    else: the output `result`).

    Args:
        id: Step id.
        script: Python source to run.
        path: A script file to run (may hold `${ <CEL> }` templates).
        module: Module to run as `python -m <module>`; `args` become its argv.
        function: A callable to call with `args` and `kwargs`.
        args: Positional arguments of the function, or argv of the module.
        kwargs: Keyword arguments of the function.
        interpreter: Python executable on the compute side; default the server's.
        venv: A virtual environment to run in (alternative to `interpreter`).
        cwd: Working directory; default the attempt's own.
        **options: Common step options.
    """
    config: dict[str, Any]
    if function is not None:
        config = {"function": function_config(function, tuple(args or ()), dict(kwargs or {}))}
    else:
        if kwargs:
            raise TypeError(f"step {id!r}: kwargs= is only for function= steps")
        config = _given(
            script=script,
            path=path,
            module=module,
            args=to_plain(list(args), f"step {id!r} args") if args is not None else None,
        )
    config.update(_given(interpreter=interpreter, venv=venv, cwd=cwd))
    return Step(id, "python", config, **options)


def spark(
    id: str,
    *,
    app: str,
    main_class: str | None = None,
    args: Sequence[str] | None = None,
    conf: Mapping[str, str] | None = None,
    py_files: Sequence[str] | None = None,
    jars: Sequence[str] | None = None,
    driver_memory: str | None = None,
    executor_memory: str | None = None,
    master: str | None = None,
    version: str | None = None,
    name: str | None = None,
    **options: Unpack[StepOptions],
) -> Step:
    """Submits a Spark application with `spark-submit` from a chosen Spark version.

    Args:
        id: Step id.
        app: A Python file (.py), or a jar (.jar) with `main_class`.
        main_class: Main class of a jar application.
        args: Application arguments (templates).
        conf: Spark conf (`--conf k=v`); keys with an option of their own are refused by core.
        py_files: Extra Python files of a Python application.
        jars: Extra jars.
        driver_memory: e.g. "2g".
        executor_memory: e.g. "4g".
        master: Spark master URL; server default `local[2]`.
        version: One of the Spark versions configured on the server.
        name: Application name; default `<workflow>/<step path>`.
        **options: Common step options.
    """
    config = _given(
        app=app,
        main_class=main_class,
        args=list(args) if args is not None else None,
        conf=dict(conf) if conf is not None else None,
        py_files=list(py_files) if py_files is not None else None,
        jars=list(jars) if jars is not None else None,
        driver_memory=driver_memory,
        executor_memory=executor_memory,
        master=master,
        version=version,
        name=name,
    )
    return Step(id, "spark", config, **options)


def container(
    id: str,
    *,
    image: str,
    command: Sequence[str] | None = None,
    shell: str | None = None,
    mounts: Sequence[Mapping[str, Any]] | None = None,
    workdir: str | None = None,
    runtime: str | None = None,
    network: str | None = None,
    pull: str | None = None,
    init: bool | None = None,
    **options: Unpack[StepOptions],
) -> Step:
    """Runs a command in a container image (podman or docker on the agent).

    Args:
        id: Step id.
        image: Image reference, e.g. "python:3.11-slim".
        command: argv inside the container (no shell); default the image's entrypoint.
        shell: A script for `/bin/sh -c` instead of `command`.
        mounts: `{"source": ..., "target": ..., "read_only": bool}` bind mounts.
        workdir: Absolute working directory inside the container.
        runtime: "podman" or "docker"; default whichever is installed.
        network: "host" (default), "none" or "bridge".
        pull: "missing" (default), "always" or "never".
        init: Run an init process as PID 1.
        **options: Common step options.
    """
    config = _given(
        image=image,
        command=list(command) if command is not None else None,
        shell=shell,
        mounts=[dict(m) for m in mounts] if mounts is not None else None,
        workdir=workdir,
        runtime=runtime,
        network=network,
        pull=pull,
        init=init,
    )
    return Step(id, "container", config, **options)


def sql(
    id: str,
    *,
    query: str,
    connection: str | None = None,
    query_params: Mapping[str, Any] | Sequence[Any] | None = None,
    **options: Unpack[StepOptions],
) -> Step:
    """Runs a SQL statement on a named connection from the server's configuration.

    Args:
        id: Step id.
        query: The statement; `:name` placeholders take values from `query_params`.
        connection: A connection name configured on the server.
        query_params: Bound values (config key `params`; values may be templates).
        **options: Common step options.
    """
    config = _given(connection=connection, query=query, params=query_params)
    return Step(id, "sql", config, **options)


def http(
    id: str,
    *,
    url: str,
    method: str | None = None,
    headers: Mapping[str, str] | None = None,
    body: Any = None,
    expect_status: Sequence[int] | None = None,
    timeout_seconds: float | None = None,
    **options: Unpack[StepOptions],
) -> Step:
    """Calls an HTTP endpoint from core; fails unless the status is expected (default 2xx)."""
    config = _given(
        url=url,
        method=method,
        headers=dict(headers) if headers is not None else None,
        body=body,
        expect_status=list(expect_status) if expect_status is not None else None,
        timeout_seconds=timeout_seconds,
    )
    return Step(id, "http", config, **options)


def noop(id: str, **options: Unpack[StepOptions]) -> Step:
    """Does nothing; useful as a join or fan-out point."""
    return Step(id, "noop", None, **options)


def sleep(id: str, seconds: float, **options: Unpack[StepOptions]) -> Step:
    """Waits `seconds` inside core without a process."""
    return Step(id, "sleep", {"seconds": seconds}, **options)


BodyLike = Flow | Iterable[Flow] | None


class Container(Step):
    """A step holding a body graph; usable as `with foreach(...) as fe:` to fill the body."""

    def __init__(self, id: str, type: str, body: BodyLike, **options: Any) -> None:
        super().__init__(id, type, None, **options)
        self.body = Graph()
        if body is not None:
            self.body.add(*([body] if isinstance(body, Flow) else list(body)))

    def __enter__(self) -> Self:
        self.body._enter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.body._exit()

    def add(self, *items: Flow | Iterable[Flow]) -> None:
        """Adds steps to the body."""
        self.body.add(*items)


OverLike = Sequence[Any] | Expr | OutputRef | Mapping[str, "Sequence[Any] | Expr | OutputRef"]


class Foreach(Container):
    """Expands its body once per value (or per combination of values)."""

    def __init__(
        self,
        id: str,
        over: OverLike,
        concurrency: int,
        body: BodyLike,
        **options: Any,
    ) -> None:
        super().__init__(id, "foreach", body, **options)
        self.over = over
        self.concurrency = concurrency

    def _fill_container(self, out: workflow_pb2.Step, where: str) -> None:
        spec = out.foreach
        spec.SetInParent()
        spec.concurrency = self.concurrency
        if isinstance(self.over, Mapping):
            for name, axis in self.over.items():
                _fill_axis(spec.axes.add(name=name), axis, f"{where}.foreach.axes.{name}")
        else:
            _fill_axis(spec.axes.add(), self.over, f"{where}.foreach.axes[0]")
        spec.body.extend(self.body._compile_steps(f"{where}.foreach.body"))


def _fill_axis(axis: workflow_pb2.ForeachAxis, over: Any, where: str) -> None:
    if isinstance(over, (Expr, OutputRef)):
        axis.expr = str(over)
    elif isinstance(over, str):
        raise TypeError(
            f"{where}: over={over!r} is a string; wrap an expression in kaon.expr(...) "
            "or pass a list"
        )
    else:
        axis.values.SetInParent()
        fill_list(axis.values, to_plain(list(over), where))


class Loop(Container):
    """Repeats its body until a condition holds (or while one holds), up to a cap."""

    def __init__(
        self,
        id: str,
        until: str | Expr | OutputRef | None,
        while_: str | Expr | OutputRef | None,
        max_iterations: int,
        body: BodyLike,
        **options: Any,
    ) -> None:
        super().__init__(id, "loop", body, **options)
        self.until = until
        self.while_ = while_
        self.max_iterations = max_iterations

    def _fill_container(self, out: workflow_pb2.Step, where: str) -> None:
        spec = out.loop
        spec.SetInParent()
        spec.body.extend(self.body._compile_steps(f"{where}.loop.body"))
        if self.until is not None:
            spec.until = str(self.until)
        if self.while_ is not None:
            setattr(spec, "while", str(self.while_))
        spec.max_iterations = self.max_iterations


class Subworkflow(Step):
    """Starts another workflow's run and waits for it."""

    def __init__(
        self,
        id: str,
        workflow_id: str,
        version: int,
        child_params: ParamsLike,
        **options: Any,
    ) -> None:
        super().__init__(id, "subworkflow", None, **options)
        self.workflow_id = workflow_id
        self.version = version
        self.child_params = child_params

    def _fill_container(self, out: workflow_pb2.Step, where: str) -> None:
        spec = out.subworkflow
        spec.SetInParent()
        spec.workflow_id = self.workflow_id
        spec.version = self.version
        spec.params.extend(params_to_proto(self.child_params, f"{where}.subworkflow.params"))


def foreach(
    id: str,
    *,
    over: OverLike,
    concurrency: int = 0,
    body: BodyLike = None,
    **options: Unpack[StepOptions],
) -> Foreach:
    """Runs `body` once per value of `over`.

    Args:
        id: Step id.
        over: A list; `expr("...")` yielding a list; an upstream output
            (`wrangle.outputs["regions"]`); or `{axis: list | expr | output}` for the cross
            product of several axes. Body steps see `foreach.value`, `foreach.values.<axis>`
            and `foreach.index`.
        concurrency: Most iterations at once; 0 means no limit.
        body: The body steps (or a flow); alternatively fill it in a `with` block.
        **options: Common step options.
    """
    return Foreach(id, over, concurrency, body, **options)


def loop(
    id: str,
    *,
    until: str | Expr | OutputRef | None = None,
    while_: str | Expr | OutputRef | None = None,
    max_iterations: int = 0,
    body: BodyLike = None,
    **options: Unpack[StepOptions],
) -> Loop:
    """Repeats `body` until `until` holds (checked after each iteration).

    Args:
        id: Step id.
        until: CEL condition ending the loop; sees the body's latest outputs.
        while_: CEL condition checked before each iteration after the first.
        max_iterations: Hard cap (server requires 1-1000).
        body: The body steps (or a flow); alternatively fill it in a `with` block.
        **options: Common step options.
    """
    return Loop(id, until, while_, max_iterations, body, **options)


def subworkflow(
    id: str,
    workflow_id: str,
    *,
    version: int = 0,
    params: ParamsLike = None,
    **options: Unpack[CommonStepOptions],
) -> Subworkflow:
    """Starts `workflow_id` (its active version unless `version` is given) and waits for it.

    Args:
        id: Step id.
        workflow_id: The child workflow.
        version: Version number; 0 means the active version when the step starts.
        params: Params passed to the child run (expressions evaluate in this run's scope).
        **options: Common step options (their `params` are not allowed here: use `params`).
    """
    return Subworkflow(id, workflow_id, version, params, **options)
