"""Jupyter renderings: a workflow as an indented graph list, a run as a status table."""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kaon._api import Run
    from kaon._dsl.graph import Graph, Step
    from kaon._dsl.workflow import Workflow

_STATUS_COLOURS = {
    "SUCCEEDED": "#2e7d32",
    "FAILED": "#c62828",
    "TIMED_OUT": "#c62828",
    "RUNNING": "#1565c0",
    "ACTIVATED": "#1e88e5",
    "QUEUED": "#6d4c41",
    "STOPPED": "#757575",
    "SKIPPED": "#9e9e9e",
    "RETRYING": "#ef6c00",
}


def _edge_label(step: Step) -> str:
    parts = []
    for t in step.next:
        guard = " [otherwise]" if t.otherwise else (f" [{t.condition}]" if t.condition else "")
        parts.append(f"{escape(t.target.id)}{escape(guard)}")
    return " → " + ", ".join(parts) if parts else ""


def _graph_items(graph: Graph) -> str:
    items = []
    for step in graph.steps:
        body = getattr(step, "body", None)
        inner = f"<ul>{_graph_items(body)}</ul>" if body is not None else ""
        items.append(
            f"<li><code>{escape(step.id)}</code> <small>({escape(step.type)})</small>"
            f"{_edge_label(step)}{inner}</li>"
        )
    return "".join(items)


def workflow_html(wf: Workflow) -> str:
    """The workflow's steps and edges as nested HTML lists."""
    desc = f"<div>{escape(wf.description)}</div>" if wf.description else ""
    return (
        f"<div class='kaon-workflow'><b>workflow {escape(wf.id)}</b>{desc}"
        f"<ul>{_graph_items(wf)}</ul></div>"
    )


def status_badge(status: str) -> str:
    """A coloured status name."""
    colour = _STATUS_COLOURS.get(status, "#424242")
    return f"<span style='color:{colour};font-weight:bold'>{escape(status)}</span>"


def run_html(run: Run) -> str:
    """The run header and one row per step instance."""
    rows = []
    for step in run.steps():
        progress = f"{step.progress:.0f}%" if step.progress >= 0 else ""
        rows.append(
            f"<tr><td><code>{escape(step.path)}</code></td><td>{escape(step.type)}</td>"
            f"<td>{status_badge(step.status)}</td><td>{progress}</td>"
            f"<td>{escape(step.message or step.reason)}</td></tr>"
        )
    outputs = "".join(
        f"<tr><td><code>{escape(k)}</code></td><td>{escape(repr(v))}</td></tr>"
        for k, v in run.outputs.items()
    )
    out_table = f"<table><tr><th>output</th><th>value</th></tr>{outputs}</table>" if outputs else ""
    return (
        f"<div class='kaon-run'><b>run {escape(run.id)}</b> of "
        f"<code>{escape(run.workflow_id)}</code> v{run.version}: {status_badge(run.status)}"
        f"<table><tr><th>step</th><th>type</th><th>status</th><th>progress</th>"
        f"<th>message</th></tr>{''.join(rows)}</table>{out_table}</div>"
    )
