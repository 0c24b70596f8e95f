"""Named arrays with declared shapes (an NPZ archive, or arrays in memory), read with checks.

The small arrays of a dataset -- coordinates, probe, object -- are read whole,
validated (dtype, rank, finiteness) and normalised to the shapes the rest of the
package expects; every refusal names the store and the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from ..facts.errors import InvalidInputError
from ..facts.stack import DiffractionInfo
from .archive import MemberInfo, NpzArchive
from .patterns import NpzPatternReader, PatternReader

FloatArray = npt.NDArray[np.float64]


class ArrayStore(Protocol):
    """Named arrays with declared shapes: an :class:`NpzArchive` or arrays in memory."""

    path: Path
    members: dict[str, MemberInfo]

    def __contains__(self, key: object) -> bool: ...

    def info(self, key: str) -> MemberInfo: ...

    def read(self, key: str) -> np.ndarray: ...

    def read_metadata(self, key: str = '_metadata') -> dict[str, Any] | None: ...

    def pattern_reader(self, info: DiffractionInfo) -> PatternReader: ...

    def close(self) -> None: ...


class ArchiveStore(NpzArchive):
    """An NPZ archive as the store of a dataset: the archive opens members, the pattern reader streams them.

    The archive (below) only knows zip members and ``.npy`` headers; streaming a
    stack in blocks is the pattern reader's job (above it), so the two are joined
    here rather than the archive importing its own consumer.
    """

    def pattern_reader(self, info: DiffractionInfo) -> PatternReader:
        """Block access to the stack in member ``info.key``."""
        return NpzPatternReader(self, info)


def read_numeric(store: ArrayStore, key: str, *, kinds: str) -> np.ndarray:
    info = store.info(key)
    if info.is_object or info.dtype.kind not in kinds:
        raise InvalidInputError(store.path, f'{key} has dtype {info.dtype}, expected a numeric array')
    return store.read(key)


def read_coords(store: ArrayStore, key: str) -> FloatArray | None:
    if key not in store:
        return None
    arr = read_numeric(store, key, kinds='iuf')
    if arr.ndim == 2 and 1 in arr.shape:
        arr = arr.reshape(-1)
    if arr.ndim != 1:
        raise InvalidInputError(store.path, f'{key} must be one-dimensional, got shape {arr.shape}')
    arr = arr.astype(np.float64, copy=False)
    bad = ~np.isfinite(arr)
    if bad.any():
        raise InvalidInputError(
            store.path, f'{key} has {int(bad.sum())} non-finite values (first at {int(np.argmax(bad))})'
        )
    return arr


def read_complex(store: ArrayStore, key: str) -> np.ndarray:
    arr = read_numeric(store, key, kinds='iufc')
    if arr.dtype.kind != 'c':
        arr = arr.astype(np.complex64 if arr.dtype.itemsize <= 4 else np.complex128)
    if not np.isfinite(arr).all():
        raise InvalidInputError(store.path, f'{key} contains non-finite values')
    return arr


def read_probe(store: ArrayStore, required: bool) -> tuple[np.ndarray | None, tuple[int, ...] | None]:
    if 'probeGuess' not in store:
        if required:
            raise InvalidInputError(store.path, 'missing required key probeGuess')
        return None, None
    probe = read_complex(store, 'probeGuess')
    shape = probe.shape
    if probe.ndim == 3 and shape[2] == 1 and shape[0] == shape[1] and shape[0] > 1:
        probe = probe[:, :, 0]  # (N, N, 1): one mode stored channels-last
    elif probe.ndim == 4 and shape[0] == 1:
        probe = probe[0]  # Ptychodus-style (1, modes, N, N)
    if probe.ndim not in (2, 3) or min(probe.shape) < 1:
        raise InvalidInputError(
            store.path, f'probeGuess has shape {shape}; expected (N, N), (modes, N, N) or (N, N, 1)'
        )
    return probe, shape


def read_object(store: ArrayStore) -> np.ndarray | None:
    if 'objectGuess' not in store:
        return None
    obj = read_complex(store, 'objectGuess')
    if obj.ndim == 3 and obj.shape[0] == 1:
        obj = obj[0]
    elif obj.ndim == 3 and obj.shape[2] == 1:
        obj = obj[:, :, 0]
    if obj.ndim != 2 or min(obj.shape) < 1:
        raise InvalidInputError(store.path, f'objectGuess has shape {obj.shape}; expected (H, W)')
    return obj
