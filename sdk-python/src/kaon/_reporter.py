"""The in-job reporter: batches report items and sends them with JobService.Report from a
background thread, so `kaon.job.progress(...)` in a hot loop costs a list append.

Batches go out when they reach `max_batch` items or `interval` seconds after their first
item, and at interpreter exit. Each batch carries a sequence number, so a batch re-sent after
a lost response is applied once: core keeps a per-attempt high-water mark and acknowledges
and ignores a batch numbered at or below it. Numbering starts at GetContext's
`applied_sequence + 1` (asked when the first batch goes out), so a second reporter of the
same attempt (a child process, `kaon job output`) continues the count; the TypeScript SDK
does the same. While core is briefly away (UNAVAILABLE) a call is retried with backoff for
up to `retry_for` seconds. An item core refuses (over a per-step limit, a bad value) is
dropped with a line on stderr, and the rest of its batch is sent again.
"""

from __future__ import annotations

import atexit
import re
import sys
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import grpc

from kaon._client import RawClient
from kaon._errors import InvalidArgumentError, KaonError
from kaon.v1 import job_service_pb2, run_pb2

Resp = TypeVar("Resp")

_TRANSIENT = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


class Reporter:
    """Sends report items in batches; thread-safe."""

    def __init__(
        self,
        raw: RawClient,
        *,
        max_batch: int = 200,
        interval: float = 0.5,
        retry_for: float = 120.0,
    ) -> None:
        self._raw = raw
        self._max_batch = max_batch
        self._interval = interval
        self._retry_for = retry_for
        self._items: list[run_pb2.ReportItem] = []
        self._first_at = 0.0
        self._sending = False
        self._closed = False
        self._gave_up = False
        self._next_sequence: int | None = None
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name="kaon-reporter", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def add(self, item: run_pb2.ReportItem) -> None:
        """Queues one item."""
        with self._cond:
            if self._closed:
                raise KaonError("kaon.job: the reporter is closed (the process is exiting)")
            if not self._items:
                self._first_at = time.monotonic()
            self._items.append(item)
            if len(self._items) >= self._max_batch or len(self._items) == 1:
                self._cond.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Sends everything queued; returns False if `timeout` passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._first_at = -1e9  # makes the pending batch due now
            self._cond.notify_all()
            while self._items or self._sending:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def close(self) -> None:
        """Flushes (bounded by the retry window) and stops the background thread."""
        with self._cond:
            if self._closed:
                return
        self.flush(self._retry_for + 5)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._closed and not self._items:
                        return
                    if self._items:
                        due = self._first_at + self._interval - time.monotonic()
                        if due <= 0 or len(self._items) >= self._max_batch or self._closed:
                            break
                        self._cond.wait(due)
                    else:
                        self._cond.wait()
                batch = self._items[: self._max_batch]
                del self._items[: self._max_batch]
                if self._items:
                    self._first_at = time.monotonic() - self._interval  # rest is due too
                self._sending = True
            try:
                self._send(batch)
            finally:
                with self._cond:
                    self._sending = False
                    self._cond.notify_all()

    def _sequence(self) -> int:
        """The next batch number; the first time, where core's count for this attempt stands."""
        if self._next_sequence is None:
            context = self._call(
                self._raw.jobs.GetContext,
                job_service_pb2.GetContextRequest(),
                "read the job context",
            )
            self._next_sequence = context.applied_sequence + 1
        return self._next_sequence

    def _call(self, method: Callable[..., Resp], request: object, what: str) -> Resp:
        """Calls `method`, retrying while core is away (UNAVAILABLE, deadline) for `retry_for`."""
        deadline = time.monotonic() + self._retry_for
        backoff = 0.2
        while True:
            try:
                return method(request, timeout=10, metadata=self._raw._metadata)
            except grpc.RpcError as error:
                code = error.code() if hasattr(error, "code") else None
                if code in _TRANSIENT and time.monotonic() + backoff < deadline:
                    time.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                raise self._raw._error(error, what, False) from None

    def _send(self, batch: list[run_pb2.ReportItem]) -> None:
        while batch and not self._gave_up:
            try:
                sequence = self._sequence()
                request = job_service_pb2.ReportRequest(sequence=sequence, items=batch)
                response = self._call(self._raw.jobs.Report, request, "send job reports")
            except InvalidArgumentError as error:
                # Core checks a batch whole and applies none of it when one item breaks a rule
                # (a limit, a bad value), naming it `items[i]`: drop that item, send the rest
                # under the same sequence number (a refused batch does not use it up).
                bad = _offending_item(error, len(batch))
                if bad is None:
                    print(f"kaon.job: {len(batch)} report(s) lost: {error}", file=sys.stderr)
                    return
                print(f"kaon.job: a report was refused and dropped: {error}", file=sys.stderr)
                batch = batch[:bad] + batch[bad + 1 :]
                continue
            except KaonError as error:
                if error.code == grpc.StatusCode.UNAUTHENTICATED:
                    self._gave_up = True  # the attempt has ended; nothing later can get through
                print(f"kaon.job: {len(batch)} report(s) lost: {error}", file=sys.stderr)
                return
            self._next_sequence = max(sequence, response.applied_sequence) + 1
            return


def _offending_item(error: InvalidArgumentError, count: int) -> int | None:
    """The index core named in `items[i]`, if it names one of this batch's items."""
    for violation in error.violations:
        match = re.match(r"items\[(\d+)\]", violation.field)
        if match and int(match.group(1)) < count:
            return int(match.group(1))
    return None
