"""Cooperative cancellation: signals become :class:`Interrupted` at safe points.

The CLI's signal handler raises at once, but an exception raised inside a
finalizer is swallowed by Python; so every long loop and the final publish of
an output also look at the pending-signal record kept here.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Interrupted(BaseException):  # noqa: N818 - a signal, like KeyboardInterrupt
    """A signal asked the conversion to stop; a BaseException so every clean-up runs."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signum)


#: Signals received and not yet acted on.
_pending_signals: list[int] = []


def request_interrupt(signum: int, frame: object = None) -> None:
    """The signal handler (CLI and worker processes): remember the signal, then raise."""
    _pending_signals.append(signum)
    raise Interrupted(signum)


def raise_if_interrupted() -> None:
    """Raise :class:`Interrupted` if a signal arrived that nobody acted on yet."""
    if _pending_signals:
        raise Interrupted(_pending_signals[0])


def clear_interrupts() -> None:
    _pending_signals.clear()


@contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGINT/SIGTERM back for a few statements that must not be split; deliver them after.

    Python runs signal handlers between bytecodes of the main thread; blocking
    the signals at the OS level keeps them pending until the block ends.
    """
    if not hasattr(signal, 'pthread_sigmask') or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
