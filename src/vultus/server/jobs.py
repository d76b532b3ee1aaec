"""Server-side ingest jobs: one runner per app that takes them first-in first-out.

The engine lets one writer at a time into a data directory and refuses a second at once
(:class:`~vultus.errors.DataDirLockedError`, raised before anything is written). Jobs
therefore never run side by side: each waits in the queue (status ``queued``) until the
runner takes it, and when another process or request holds the writer lock the runner
waits and tries the same job again rather than failing it. A job fails only for a reason
of its own photos; its uploaded files are removed when it ends either way.

Jobs run below the server's own priority (``JOB_NICENESS``): the runner thread, and the
worker processes it starts, which inherit it. On a busy machine the scheduler then gives
the cores to searches first, and an ingest takes what they leave; alone, it runs at full
speed.

At most ``MAX_QUEUED`` jobs wait at a time (uploads wait unencrypted on disk with their
job): one more is refused with :class:`QueueFull`, which the routes answer 503. Anything a
job raises, even a ``BaseException``, fails that job alone; the runner goes on to the next.
"""

from __future__ import annotations

import os
import queue
import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

from ..engine import Engine
from ..errors import DataDirLockedError

__all__ = ["JobRunner", "JOB_NICENESS", "MAX_JOBS_KEPT", "MAX_QUEUED", "QueueFull", "RETRY_SECONDS"]

#: Finished ingest jobs remembered for polling; older ones are forgotten.
MAX_JOBS_KEPT = 200
#: Most jobs waiting for the runner (the one it is running or retrying not counted).
MAX_QUEUED = 20
#: How long the runner waits between tries while another writer holds the data directory,
#: at first and at most (it doubles in between).
RETRY_SECONDS = (0.2, 5.0)
#: How much lower than the server's own the jobs' scheduling priority is (a nice value: 10
#: gives a thread about a tenth of a core that searches also want).
JOB_NICENESS = 10


class QueueFull(Exception):
    """``limit`` jobs are already waiting; the caller should try again later."""

    def __init__(self, limit: int):
        super().__init__(f"{limit} ingest jobs are already waiting")
        self.limit = limit


class JobRunner:
    """Runs ingest jobs on one engine, one at a time, in the order they were submitted."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.jobs: dict[str, dict[str, Any]] = {}
        self._queue: "queue.Queue[tuple[dict[str, Any], Callable[[], Any], Path | None]]" = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def submit(self, *, actor: str, paths: list[str], source: str, cleanup: Path | None,
               rename: tuple[str, str] | None = None, root: str | None = None) -> dict[str, Any]:
        """Queue an ingest of ``paths`` into ``source`` as ``actor``; returns the job to poll.

        With ``root``, files whose real path is outside it are refused (the ingest root).
        Raises :class:`QueueFull` when ``MAX_QUEUED`` jobs are waiting already (nothing is
        queued then, and ``cleanup`` stays the caller's).
        """
        job: dict[str, Any] = {"id": uuid.uuid4().hex[:12], "status": "queued", "position": None, "waiting": None,
                               "done": 0, "total": None, "faces": 0, "summary": None, "error": None}

        def progress(done: int, total: int, faces: int) -> None:
            # Called only once the engine holds the writer lock: the job has started.
            job.update(status="running", position=None, waiting=None, done=done, total=total, faces=faces)

        def work() -> Any:
            with self.engine.acting_as(actor):
                return self.engine.ingest(paths, source=source, progress=progress, rename=rename, root=root).as_dict()

        with self._lock:
            if self._queue.qsize() >= MAX_QUEUED:
                raise QueueFull(MAX_QUEUED)
            self._forget_old()
            self.jobs[job["id"]] = job
            job["position"] = self._queue.qsize() + 1
            self._queue.put((job, work, cleanup))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="vultus-ingest-jobs", daemon=True)
                self._thread.start()
        return self.view(job)

    def get(self, job_id: str) -> dict[str, Any] | None:
        """The job's current state, or None when it is unknown (or long finished)."""
        job = self.jobs.get(job_id)
        return None if job is None else self.view(job)

    @staticmethod
    def view(job: dict[str, Any]) -> dict[str, Any]:
        """A copy of the job for a client (its keys never change, so copying while it runs is safe)."""
        return dict(job)

    def _forget_old(self) -> None:
        finished = [key for key, value in self.jobs.items() if value["status"] in ("done", "failed")]
        for key in finished[: max(0, len(self.jobs) - MAX_JOBS_KEPT)]:
            del self.jobs[key]  # the oldest finished jobs go first; queued and running ones stay

    def _run(self) -> None:
        _lower_own_priority(JOB_NICENESS)
        while True:
            job, work, cleanup = self._queue.get()
            try:
                self._run_one(job, work)
            finally:
                if cleanup is not None:
                    shutil.rmtree(cleanup, ignore_errors=True)
                with self._lock:
                    for waiting in list(self.jobs.values()):
                        if waiting["status"] == "queued" and waiting["position"]:
                            waiting["position"] = max(1, waiting["position"] - 1)

    def _run_one(self, job: dict[str, Any], work: Callable[[], Any]) -> None:
        delay, most = RETRY_SECONDS
        while True:
            try:
                # The lock is refused before anything is written, so the job stays "queued"
                # until the engine lets it in; its progress() then marks it running.
                job["summary"] = work()
                job.update(status="done", position=None, waiting=None)
                return
            except DataDirLockedError as exc:
                job.update(status="queued", position=1, waiting=str(exc))
                time.sleep(delay)
                delay = min(most, delay * 2)
            except BaseException as exc:  # noqa: BLE001 - reported through the job; the runner must go on
                job.update(status="failed", position=None, waiting=None, error={"code": type(exc).__name__, "message": str(exc)})
                return


def _lower_own_priority(niceness: int) -> None:
    """Lower the calling thread's scheduling priority by ``niceness`` (Linux: per thread).

    Processes and threads it starts afterwards inherit it. Where threads cannot be given a
    priority of their own, nothing changes (a whole-process nice would slow searches too).
    """
    native_id = threading.get_native_id()
    if not hasattr(os, "setpriority") or not os.path.isdir(f"/proc/self/task/{native_id}"):
        return
    try:
        current = os.getpriority(os.PRIO_PROCESS, native_id)
        os.setpriority(os.PRIO_PROCESS, native_id, min(19, current + niceness))
    except OSError:
        pass  # not allowed here: jobs run at the server's priority
