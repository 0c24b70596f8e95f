"""Many conversions on any ``concurrent.futures.Executor``: local processes, or a cluster via Dask.

Each file is one task that either publishes complete outputs or none (see
:mod:`atomic`), and reports back a :class:`ConversionResult` instead of
raising, so one bad file never stops the others. Work is shipped to workers
as plain paths and options: workers read and write the shared filesystem.
"""

from __future__ import annotations

import os
import signal
import sys
import urllib.parse
from collections.abc import Iterable, Iterator
from concurrent.futures import Executor, Future
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

from ..facts.errors import PtychoPINNError, RunError
from ..facts.quantities import ExportMeta
from ..safeio.atomic import describe_os_error
from ..safeio.cancellation import request_interrupt
from .export import ExportOptions, export_product

if TYPE_CHECKING:  # the process pool module (multiprocessing, sockets) is imported when a pool is made
    from concurrent.futures import ProcessPoolExecutor


@dataclass(frozen=True)
class ConversionResult:
    """One file's outcome: ``error`` is ``None`` on success, else one line naming the problem."""

    input_npz: Path
    output_product: Path | None
    output_diffraction: Path | None
    summary: str
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class Job:
    """One conversion: where from, where to."""

    input_npz: Path
    output_product: Path | None
    output_diffraction: Path | None = None


def plan_jobs(
    inputs: Iterable[str | os.PathLike[str]],
    output_dir: str | os.PathLike[str],
    *,
    write_diffraction: bool = False,
) -> list[Job]:
    """``<stem>.h5`` (and ``<stem>.diffraction.h5``) in ``output_dir`` for every input.

    Raises ``ValueError`` when two inputs share a stem, since their outputs would collide.
    """
    paths = [Path(p) for p in inputs]
    stems = [p.stem for p in paths]
    if len(set(stems)) != len(stems):
        raise ValueError('several inputs share a file name; their outputs would collide')
    out = Path(output_dir)
    return [
        Job(p, out / f'{p.stem}.h5', out / f'{p.stem}.diffraction.h5' if write_diffraction else None)
        for p in paths
    ]


def convert_one(job: Job, meta: ExportMeta | None, options: ExportOptions) -> ConversionResult:
    """Run one job and never raise for a bad file (a worker's entry point)."""
    try:
        report = export_product(
            job.input_npz,
            job.output_product,
            meta,
            ExportOptions.build(options, {'diffraction_output': job.output_diffraction, 'progress': None}),
        )
    except PtychoPINNError as exc:
        return ConversionResult(job.input_npz, job.output_product, job.output_diffraction, '', str(exc))
    except OSError as exc:
        error = f'{exc.filename or job.input_npz}: {describe_os_error(exc)}'
        return ConversionResult(job.input_npz, job.output_product, job.output_diffraction, '', error)
    except Exception as exc:  # noqa: BLE001 - a batch boundary: one file's bug must not stop the rest
        error = f'internal error: {type(exc).__name__}: {exc}'
        return ConversionResult(job.input_npz, job.output_product, job.output_diffraction, '', error)
    return ConversionResult(job.input_npz, job.output_product, job.output_diffraction, report.summary())


def convert_many(
    inputs: Iterable[str | os.PathLike[str]],
    output_dir: str | os.PathLike[str],
    *,
    executor: Executor | None = None,
    meta: ExportMeta | None = None,
    write_diffraction: bool = False,
    **options: Any,
) -> list[ConversionResult]:
    """Convert every input NPZ into ``output_dir/<stem>.h5``; one result per input, in order.

    Parameters
    ----------
    inputs: PtychoPINN NPZ files (distinct stems).
    output_dir: existing folder for the products (shared by all workers).
    executor: any ``concurrent.futures.Executor``; default: a process pool on every
        core. A ``dask.distributed`` client's ``client.get_executor()`` works unchanged.
    meta: experiment metadata for every file (:class:`ExportMeta`).
    write_diffraction: also write ``<stem>.diffraction.h5`` (Ptychodus's diffraction file).
    options: :class:`ExportOptions` fields (``overwrite``, ``domain``, ``compression`` ...).

    A file that fails gives a result with a one-line ``error``; the others go on.
    Interrupting the caller cancels what has not started; what is running either
    publishes complete outputs or none.
    """
    jobs = plan_jobs(inputs, output_dir, write_diffraction=write_diffraction)
    opts = ExportOptions.build(None, options)
    if not jobs:
        return []
    with _default_executor(executor, len(jobs)) as pool:
        futures: list[Future[ConversionResult]] = [pool.submit(convert_one, job, meta, opts) for job in jobs]
        try:
            return [future.result() for future in futures]
        except BaseException as exc:
            for future in futures:
                future.cancel()
            if _is_process_pool(pool):
                _stop_workers(pool, getattr(exc, 'signum', signal.SIGINT))
            raise


@contextmanager
def _default_executor(executor: Executor | None, jobs: int) -> Iterator[Executor]:
    if executor is not None:
        yield executor
        return
    with local_pool(max(1, min(jobs, os.cpu_count() or 1))) as pool:
        yield pool


def _is_process_pool(pool: Executor) -> TypeGuard[ProcessPoolExecutor]:
    # a process pool exists only if its module was imported (by us or by the caller)
    process = sys.modules.get('concurrent.futures.process')
    return process is not None and isinstance(pool, process.ProcessPoolExecutor)


def _stop_workers(pool: ProcessPoolExecutor, signum: int) -> None:
    """Pass an interrupt on to local workers: they remove their temporary files and stop.

    A process pool hands out one task more than it has workers, and a running
    task cannot be cancelled; without this, an interrupt sent to the caller
    alone (``kill PID``) would wait for those conversions to finish.
    """
    processes = list(getattr(pool, '_processes', {}).values())  # no public API lists them
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive() and process.pid is not None:
            try:
                os.kill(process.pid, signum)
            except ProcessLookupError:
                pass
    for process in processes:
        process.join(timeout=30)


def _worker_signals() -> None:
    """Workers turn SIGINT/SIGTERM into a clean stop: temporary outputs are removed."""
    signal.signal(signal.SIGINT, request_interrupt)
    signal.signal(signal.SIGTERM, request_interrupt)


def local_pool(workers: int) -> ProcessPoolExecutor:
    """The process pool the CLI's ``--jobs`` uses (workers stop cleanly on signals)."""
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(max_workers=workers, initializer=_worker_signals)


class SerialExecutor(Executor):
    """Runs each task in the calling process when it is submitted (``--jobs 1``)."""

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:  # noqa: BLE001 - handed to the caller through the future
            future.set_exception(exc)
        return future


@contextmanager
def dask_executor(address: str, timeout_s: float = 10.0) -> Iterator[Executor]:
    """The executor of a ``dask.distributed`` client connected to ``address``."""
    try:
        from dask.distributed import Client
    except ImportError as exc:
        raise RunError(None, "--dask-scheduler needs Dask: pip install 'ptychopinn-ptychodus[dask]'") from exc
    _check_reachable(address, timeout_s)
    try:
        client = Client(address, timeout=timeout_s)
    except (OSError, TimeoutError, ValueError) as exc:
        raise RunError(None, f'cannot reach the Dask scheduler at {address}: {exc}') from exc
    try:
        yield client.get_executor()
    finally:
        client.close()


def _check_reachable(address: str, timeout_s: float) -> None:
    """Fail at once on a refused ``tcp://host:port`` (Dask itself retries until its timeout)."""
    parsed = urllib.parse.urlsplit(address if '://' in address else f'tcp://{address}')
    if parsed.scheme != 'tcp' or parsed.hostname is None or parsed.port is None:
        return  # other transports: let Dask decide
    import socket

    try:
        with socket.create_connection((parsed.hostname, parsed.port), timeout=min(timeout_s, 5.0)):
            pass
    except OSError as exc:
        raise RunError(None, f'cannot reach the Dask scheduler at {address}: {exc.strerror or exc}') from exc


def batch_executor(stack: ExitStack, *, dask_scheduler: str | None, jobs: int, num_jobs: int) -> Executor:
    """The executor a batch command asked for: a Dask cluster, a local process pool, or one job at a time.

    Parameters
    ----------
    stack
        Owns the executor: closing it shuts the pool down or disconnects from Dask.
    dask_scheduler
        Address of a running Dask scheduler (``--dask-scheduler``), or None.
    jobs
        Local worker processes asked for (``--jobs``); 1 runs the jobs in turn here.
    num_jobs
        How many jobs there are (no more workers than jobs are started).
    """
    if dask_scheduler:
        return stack.enter_context(dask_executor(dask_scheduler))
    if jobs > 1:
        return stack.enter_context(local_pool(min(jobs, num_jobs)))
    return SerialExecutor()
