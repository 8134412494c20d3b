"""Source-control metadata of the checkout a deploy comes from (commit, branch, dirty, author).

Best effort: no git, no checkout or a slow git all mean "no SCM info", never an error.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from kaon.v1 import common_pb2


def _git(cwd: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def scm_info(cwd: str | Path | None = None) -> common_pb2.ScmInfo | None:
    """The checkout's metadata, or None when `cwd` (default: the current dir) is not in one."""
    where = Path(cwd) if cwd is not None else Path.cwd()
    commit = _git(where, "rev-parse", "HEAD")
    if not commit:
        return None
    branch = _git(where, "rev-parse", "--abbrev-ref", "HEAD") or ""
    status = _git(where, "status", "--porcelain", "--untracked-files=no")
    author = _git(where, "log", "-1", "--format=%an <%ae>") or ""
    remote = _git(where, "remote", "get-url", "origin") or ""
    return common_pb2.ScmInfo(
        commit=commit,
        branch="" if branch == "HEAD" else branch,
        dirty=bool(status),
        author=author,
        repository=remote,
    )
