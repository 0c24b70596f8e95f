"""Terminal plumbing of the command line: signals, log format, progress bar, memory tuning.

Kept apart from :mod:`cli` (which parses arguments and decides what to run) so
that each can be read on its own.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ..safeio.cancellation import Interrupted, clear_interrupts, request_interrupt

logger = logging.getLogger('ptychopinn_ptychodus')


@contextmanager
def signals_raise() -> Iterator[None]:
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    clear_interrupts()
    for sig in previous:
        signal.signal(sig, request_interrupt)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        clear_interrupts()


@contextmanager
def quiet_unraisable(debug: bool) -> Iterator[None]:
    """Exceptions Python cannot raise (finalizers, h5py deallocation) never print tracebacks."""
    previous = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        if debug:
            previous(unraisable)
        elif not isinstance(unraisable.exc_value, Interrupted):
            logger.debug('ignored in %r: %s', unraisable.object, unraisable.exc_value)

    sys.unraisablehook = hook
    try:
        yield
    finally:
        sys.unraisablehook = previous


class ProgressBar:
    """tqdm on a terminal (created once the number of patterns is known), else nothing."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.bar: Any = None
        self._redirect: Any = None

    def start(self, total: int) -> Callable[[int], None]:
        from tqdm import tqdm
        from tqdm.contrib.logging import logging_redirect_tqdm

        self.bar = tqdm(total=total, desc=self.label, unit='pattern', file=sys.stderr, leave=True)
        self._redirect = logging_redirect_tqdm(loggers=[logger])
        self._redirect.__enter__()
        return self.bar.update

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self._redirect.__exit__(None, None, None)
            self.bar = None


@contextmanager
def package_logging(args: argparse.Namespace) -> Iterator[None]:
    """Our log lines as ``LEVEL: message`` on stderr for this run; restored afterwards."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter('%(levelname)s: %(message)s'))
    saved = (logger.handlers[:], logger.propagate, logger.level)
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.ERROR if args.quiet else logging.DEBUG if args.debug else logging.WARNING)
    try:
        yield
    finally:
        logger.handlers[:], logger.propagate, level = saved
        logger.setLevel(level)


def pin_malloc_mmap_threshold() -> None:
    """Keep glibc serving the 16 MB pattern blocks with mmap, so they go back to the OS.

    glibc raises its mmap threshold after the first large free; later blocks then
    come from the heap, which fragments and grows with the stack size. A fixed
    threshold keeps peak memory flat however many patterns are converted.
    """
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass  # not glibc: nothing to tune
