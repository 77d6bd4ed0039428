"""One thread that runs every ``Counter.handle`` call, in order, off the UI thread.

Teleservice calls can take seconds (bounded by the adapter's timeout); running them here keeps the
UI drawing frames. Events are serialised because the counter is not thread-safe. Results go back to
the UI thread through ``post`` (``Clock.schedule_once`` in the app, a direct call in tests).
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

Post = Callable[[Callable[[], None]], None]


class CounterWorker:
    def __init__(self, post: Post, name: str = "counter-worker") -> None:
        self._post = post
        self._name = name
        self._jobs: queue.Queue[tuple[Callable[[], Any], Callable[[Any], None], Callable[[BaseException], None]] | None]
        self._jobs = queue.Queue()
        self._thread: threading.Thread | None = None
        self._pending = 0
        self._lock = threading.Lock()

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Finish the job in hand, drop nothing already queued, then end the thread."""
        if self._thread is None:
            return
        self._jobs.put(None)
        self._thread.join(timeout)
        self._thread = None

    @property
    def idle(self) -> bool:
        with self._lock:
            return self._pending == 0

    def submit(
        self,
        job: Callable[[], Any],
        done: Callable[[Any], None],
        failed: Callable[[BaseException], None] | None = None,
    ) -> None:
        """Run ``job`` on the worker thread; ``done(result)`` (or ``failed(error)``) on the UI thread."""
        with self._lock:
            self._pending += 1
        self._jobs.put((job, done, failed or _log_failure))

    def call(self, fn: Callable[[], Any], timeout: float = 60.0) -> Any:
        """Run ``fn`` on the worker thread and wait for its result (set-up and tear-down only).

        SQLite connections belong to the thread that opened them, so the store is opened, used and
        closed on the worker: the composition root builds the counter through this.
        """
        if self._thread is None:
            raise RuntimeError("the worker is not started")
        finished = threading.Event()
        box: dict[str, Any] = {}

        def job() -> None:
            try:
                box["result"] = fn()
            except BaseException as exc:
                box["error"] = exc
            finally:
                finished.set()

        self._jobs.put((job, _ignore, _ignore))
        with self._lock:
            self._pending += 1
        if not finished.wait(timeout):
            raise TimeoutError("the counter worker did not answer")
        if "error" in box:
            raise box["error"]
        return box.get("result")

    def _run(self) -> None:
        while True:
            item = self._jobs.get()
            if item is None:
                return
            job, done, failed = item
            try:
                result = job()
            except Exception as exc:  # the worker must outlive a bad job
                log.exception("counter job failed")
                self._finish(functools.partial(failed, exc))
                continue
            self._finish(functools.partial(done, result))

    def _finish(self, callback: Callable[[], None]) -> None:
        with self._lock:
            self._pending -= 1
        self._post(callback)


def _ignore(_: object) -> None:
    pass


def _log_failure(error: BaseException) -> None:
    log.error("counter job failed: %s", error)
