"""Packing a Python function as a step: its source for people, a cloudpickle for machines.

The payload is `(function, args, kwargs)` pickled with cloudpickle. Functions defined in a
notebook (`__main__`) are pickled by value by cloudpickle already; functions from a local,
uninstalled module are pickled by value too, because the compute side runs in its own working
directory where that module is not importable. Installed packages stay by reference.
"""

from __future__ import annotations

import base64
import inspect
import sys
import sysconfig
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cloudpickle

_INSTALLED_ROOTS = {
    Path(p).resolve()
    for key in ("stdlib", "platstdlib", "purelib", "platlib")
    if (p := sysconfig.get_paths().get(key))
}


def _is_installed(module_name: str) -> bool:
    module = sys.modules.get(module_name)
    file = getattr(module, "__file__", None)
    if module is None or file is None:
        return True  # builtins and namespace packages: leave them to import on the other side
    path = Path(file).resolve()
    return any(root == path or root in path.parents for root in _INSTALLED_ROOTS)


def pickle_call(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
    """Returns cloudpickle bytes of `(fn, args, kwargs)`.

    Raises:
        TypeError: naming the function when something it refers to cannot be pickled.
    """
    module_name = getattr(fn, "__module__", None) or "__main__"
    by_value = None
    if module_name != "__main__" and not _is_installed(module_name):
        by_value = sys.modules[module_name]
    if by_value is not None:
        cloudpickle.register_pickle_by_value(by_value)
    try:
        data: bytes = cloudpickle.dumps((fn, args, kwargs))
    except Exception as error:
        name = getattr(fn, "__qualname__", repr(fn))
        raise TypeError(
            f"function step {name}: cannot pickle the function or its arguments ({error}); "
            "pass plain data as arguments and create clients/connections inside the function"
        ) from error
    finally:
        if by_value is not None:
            cloudpickle.unregister_pickle_by_value(by_value)
    return data


def function_source(fn: Callable[..., Any]) -> str:
    """The function's source text, dedented; empty when Python cannot find it."""
    try:
        return textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError):
        return ""


def function_config(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> dict[str, Any]:
    """The `function` object of a python step's config (see docs/python.md, function steps)."""
    if not callable(fn):
        raise TypeError(f"function= must be callable, got {fn!r}")
    return {
        "name": getattr(fn, "__qualname__", getattr(fn, "__name__", "function")),
        "source": function_source(fn),
        "pickle_b64": base64.b64encode(pickle_call(fn, args, kwargs)).decode("ascii"),
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
    }
