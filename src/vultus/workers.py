"""Worker processes for photo analysis: a spawn pool whose workers build their models once and die with their parent.

Used by ingest (:mod:`vultus.ingest`), ``vultus eval`` and ``vultus calibrate``
(:mod:`vultus.calibration`). Each worker runs ``initializer(*args)`` once (typically: build a ``FaceAnalyzer`` into a
module global), gets its share of the cores for onnxruntime, and exits as soon as the
process that started it is gone, even after a ``kill -9`` of that process.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable

__all__ = ["worker_pool", "main_is_importable", "exit_with_parent", "PARENT_POLL"]

#: How often a worker checks that the process that started it is still alive, in seconds.
PARENT_POLL = 0.5


def worker_pool(workers: int, initializer: Callable[..., None], args: tuple[Any, ...] = ()) -> ProcessPoolExecutor:
    """A pool of ``workers`` spawned processes, each set up by ``initializer(*args)``.

    ``initializer`` and ``args`` must be picklable (a module-level function). Use the pool
    in a ``with`` block on one thread: on Linux a worker is killed when the thread that
    spawned it exits.
    """
    # spawn, not fork: the parent holds SQLite connections and library threads that a
    # forked child must not inherit.
    context = multiprocessing.get_context("spawn")
    threads = max(1, (os.cpu_count() or 1) // max(1, workers))
    return ProcessPoolExecutor(workers, mp_context=context, initializer=_initialize,
                               initargs=(os.getpid(), threads, initializer, args))


def _initialize(parent: int, threads: int, initializer: Callable[..., None], args: tuple[Any, ...]) -> None:
    exit_with_parent(parent)
    # Each worker's share of the cores for onnxruntime, so that N workers do not each run
    # a thread per core (set before any model loads in this fresh process, where
    # vultus.config reads it back as the ort_threads setting).
    os.environ.setdefault("VULTUS_ORT_THREADS", str(threads))
    initializer(*args)


def exit_with_parent(parent: int) -> None:
    """Make this worker process exit as soon as ``parent``, the process that started it, is gone.

    A kill -9 of the parent gives its workers no signal: without this they would live on,
    orphaned, each holding its models in memory. When the parent dies the worker is
    re-parented, so ``os.getppid()`` changes; comparing with the pid the parent passed
    (not one read here) also catches a parent that died before this worker started.
    """
    if sys.platform.startswith("linux"):
        # Immediate on Linux, even while this process is busy in native code (the kernel
        # sends it when the thread that spawned this process exits).
        try:
            import ctypes

            pr_set_pdeathsig = 1
            ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, 9)  # SIGKILL
        except (OSError, AttributeError):
            pass  # the poll below is enough

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL)
        os._exit(1)  # no cleanup to run: the parent that would read our results is gone

    threading.Thread(target=watch, name="vultus-parent-watch", daemon=True).start()


def main_is_importable() -> bool:
    """Whether spawned workers can import the calling program's main module.

    They import it again, as spawn does; a program read from standard input has no file to
    import, so its work must run in its own process instead of failing in every worker.
    """
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    return main_file is None or os.path.exists(main_file)
