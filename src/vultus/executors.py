"""Where ingest's photo analysis runs: the local process pool, or the tasks of a Ray cluster.

Both give what :mod:`vultus.ingest` needs of an executor: a context manager whose
``submit(fn, item)`` returns a :class:`concurrent.futures.Future` of ``fn(item)``, run in a
worker that ``initializer(*args)`` set up once. Only the analysis (decode, detect, embed)
runs there; the store is written by the process that runs the ingest, one photo at a time
as results come back, so skipping what is stored already and recovering from a crash are
the same whichever executor ran it.

On Ray, each task is retried (``RAY_RETRIES`` times) when its worker or node dies (then the
ingest stops as when a pool worker dies: :class:`RayTaskLost`, a BrokenProcessPool), and every
node must be able to read the media: the task gets the photo's bytes, or for a video its path,
which must be the same path on every node (a shared filesystem).
"""

from __future__ import annotations

from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Protocol

from .errors import ExecutorError
from .workers import worker_pool

__all__ = ["EXECUTORS", "Executor", "open_executor", "RAY_RETRIES", "RayTaskLost"]

#: The executors ``--executor`` / ``VULTUS_INGEST_EXECUTOR`` may name.
EXECUTORS = ("pool", "ray")

#: How often Ray runs a task again after its worker or node died (a failed photo is not retried:
#: its problem comes back as its message).
RAY_RETRIES = 3


class Executor(Protocol):
    """Runs ``fn(item)`` somewhere and gives a future of its result."""

    def submit(self, fn: Callable[[Any], Any], item: Any) -> Future: ...


@contextmanager
def open_executor(name: str, *, workers: int, initializer: Callable[..., None], args: tuple[Any, ...],
                  ray_address: str | None = None) -> Iterator[Executor]:
    """The executor ``name`` (``pool`` or ``ray``) with ``workers`` parallel tasks, each worker set up by ``initializer(*args)``."""
    if name == "pool":
        with worker_pool(workers, initializer, args) as pool:
            yield pool
    elif name == "ray":
        with _ray_executor(workers, initializer, args, ray_address) as executor:
            yield executor
    else:
        raise ExecutorError(f"Unknown ingest executor {name!r}: choose one of {', '.join(EXECUTORS)} "
                            "(--executor or VULTUS_INGEST_EXECUTOR).")


_RAY_SETUP: tuple | None = None  # in a Ray worker: the (initializer, args) it has run


def _ray_task(initializer: Callable[..., None], args: tuple[Any, ...], fn: Callable[[Any], Any], item: Any) -> Any:
    # A Ray worker process runs many tasks: its models are built at its first task only.
    global _RAY_SETUP
    if _RAY_SETUP is None:
        initializer(*args)
        _RAY_SETUP = (initializer, args)
    return fn(item)


#: Seconds to wait for a named Ray head to accept a connection before saying it is not there
#: (ray.init alone retries for minutes).
CONNECT_TIMEOUT = 10


def _reachable(address: str) -> None:
    """Refuse a Ray address that is malformed or whose head does not accept connections."""
    import socket

    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ExecutorError(f"The Ray address {address!r} is not HOST:PORT (the head's GCS port, e.g. 10.0.0.5:6379); "
                            "fix --ray-address (VULTUS_RAY_ADDRESS).")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT).close()
    except OSError as exc:
        raise ExecutorError(f"No Ray head answers at {address} ({exc.strerror or exc}); start it "
                            "(scripts/services.sh start ray for a local one) or fix --ray-address "
                            "(VULTUS_RAY_ADDRESS), or ingest with --executor pool.") from exc


class RayTaskLost(BrokenProcessPool):
    """A Ray task's worker or node died at every try: what a dead pool worker is to ingest
    (which reports it as :class:`~vultus.errors.WorkerCrashedError`)."""


class _RayExecutor:
    def __init__(self, ray: Any, initializer: Callable[..., None], args: tuple[Any, ...]):
        self._remote = ray.remote(num_cpus=1, max_retries=RAY_RETRIES)(_ray_task)
        # The set-up arguments travel once to the cluster's object store, not with every task.
        self._setup = (ray.put(initializer), ray.put(args))
        from ray.exceptions import RayTaskError, RayError

        self._lost, self._raised = RayError, RayTaskError

    def submit(self, fn: Callable[[Any], Any], item: Any) -> Future:
        ray_future = self._remote.remote(*self._setup, fn, item).future()
        result: Future = Future()

        def settle(done: Future) -> None:
            if not result.set_running_or_notify_cancel():
                return  # cancelled by the caller (an ingest stopping): nobody waits for it
            error = done.exception()
            if error is None:
                result.set_result(done.result())
            elif isinstance(error, self._lost) and not isinstance(error, self._raised):
                # Ray's own failures (worker crashed, node died, object lost), once its retries are spent;
                # an exception the task itself raised passes as it is.
                lost = RayTaskLost(f"A Ray task was lost {RAY_RETRIES + 1} tries in a row "
                                   f"({type(error).__name__}: {str(error).strip().splitlines()[0][:200]})")
                result.set_exception(lost)
            else:
                result.set_exception(error)

        ray_future.add_done_callback(settle)
        return result


@contextmanager
def _ray_executor(workers: int, initializer: Callable[..., None], args: tuple[Any, ...],
                  address: str | None) -> Iterator[_RayExecutor]:
    try:
        import ray
    except ImportError as exc:
        raise ExecutorError("The Ray executor needs Ray: pip install 'vultus[services]' (or ray), "
                            "or ingest with --executor pool.") from exc
    started_here = not ray.is_initialized()
    if started_here:
        if address:
            _reachable(address)
        try:
            if address:
                ray.init(address=address, logging_level="ERROR", log_to_driver=False)
            else:  # no cluster named: a local one, for this ingest only
                ray.init(num_cpus=max(1, workers), logging_level="ERROR", log_to_driver=False,
                         include_dashboard=False)
        except Exception as exc:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, ...
            where = f"the Ray cluster at {address}" if address else "a local Ray instance"
            raise ExecutorError(f"Could not reach {where} ({type(exc).__name__}: {exc}); check --ray-address "
                                "(VULTUS_RAY_ADDRESS) and that its head is up, or ingest with --executor pool.") from exc
    try:
        yield _RayExecutor(ray, initializer, args)
    finally:
        if started_here:
            ray.shutdown()
