"""Fixtures for the converter tests; plain helper functions are in ``helpers.py``.

Everything is generated in ``tmp_path``; real data is read (never copied into the
repository) from ``../shared/data``, the folder next to this repository's
checkout. Products are always checked with Ptychodus's own readers
(``ptychodus.api.io``), not with our code.
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import CLI, CONSOLE_SCRIPT, SMALL, cli_env

from ptychopinn_ptychodus.cli.sample import write_sample

#: The real files next to the checkout (``../shared/data``); ``PTYCHOPINN_SHARED_DATA`` points
#: elsewhere (the sdist check runs the suite from an unpacked sdist in a temporary folder).
SHARED_DATA = Path(os.environ.get('PTYCHOPINN_SHARED_DATA', Path(__file__).resolve().parents[2] / 'shared' / 'data'))


@pytest.fixture(autouse=True)
def restore_cli_logging() -> Iterator[None]:
    """``cli.main()`` run in-process reconfigures the package logger (handler bound to the
    then-current stderr, no propagation, --quiet level); put it back so later tests'
    ``caplog`` and stderr are unaffected."""
    package = logging.getLogger('ptychopinn_ptychodus')
    saved = (package.handlers[:], package.propagate, package.level)
    try:
        yield
    finally:
        package.handlers[:], package.propagate = saved[0], saved[1]
        package.setLevel(saved[2])


@pytest.fixture
def sample_npz(tmp_path: Path) -> Callable[..., tuple[Path, dict[str, np.ndarray]]]:
    """Factory: ``sample_npz(name='sample.npz', key=..., layout=..., counts=..., compress=..., **simulate_opts)``.

    Writes a simulated PtychoPINN NPZ (``SMALL`` unless told otherwise) into
    ``tmp_path`` and returns ``(path, arrays)``, where ``arrays`` are exactly what
    was written (diffraction in its stored layout).
    """

    def make(name: str = 'sample.npz', **options: Any) -> tuple[Path, dict[str, np.ndarray]]:
        path = tmp_path / name
        arrays = write_sample(path, **{**SMALL, **options})
        return path, arrays

    return make


@pytest.fixture
def npz_from_arrays(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``npz_from_arrays('name.npz', compress=False, **arrays)`` via ``numpy.savez``."""

    def make(name: str, *, compress: bool = False, **arrays: Any) -> Path:
        path = tmp_path / name
        (np.savez_compressed if compress else np.savez)(path, **arrays)
        assert path.exists()
        return path

    return make


@pytest.fixture
def run_cli(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the converter in a subprocess from ``tmp_path`` (so nothing lands in the repo).

    ``run_cli(*args, script=False, timeout=60, preexec_fn=None)``: ``python -m
    ptychopinn_ptychodus`` by default, the installed console script next to
    ``sys.executable`` with ``script=True``.
    """

    def run(*args: str | os.PathLike[str], script: bool = False, timeout: float = 60,
            preexec_fn: Callable[[], None] | None = None) -> subprocess.CompletedProcess[str]:
        if script:
            assert CONSOLE_SCRIPT.exists(), f'console script {CONSOLE_SCRIPT} is not installed'
        command = [str(CONSOLE_SCRIPT)] if script else CLI
        return subprocess.run(
            [*command, *(str(a) for a in args)], cwd=tmp_path, capture_output=True, text=True,
            timeout=timeout, preexec_fn=preexec_fn, env=cli_env(),
        )

    return run


@pytest.fixture(scope='session')
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f'the ../shared/data folder is missing ({SHARED_DATA}); real-data tests need it')
    return SHARED_DATA


@pytest.fixture
def core() -> Iterator[Any]:
    """Ptychodus's ``ModelCore``, with the diffraction crop off (patterns come back whole)."""
    from ptychodus.model import ModelCore

    with ModelCore() as model:
        model.diffraction_core.diffraction_settings.crop_enabled.set_value(False)
        yield model


@pytest.fixture(scope='module')
def registry() -> Any:
    """Ptychodus's ``PluginRegistry.load_plugins()``, once per module."""
    from ptychodus.api.plugins import PluginRegistry

    return PluginRegistry.load_plugins()
