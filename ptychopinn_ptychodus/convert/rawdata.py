"""PtychoPINN's in-memory API: ``export_product_from_rawdata`` and ``import_product_to_rawdata``.

PtychoPINN's training and inference code holds its data as ``ptycho.raw_data.RawData``
objects and calls these two functions (names and keywords as in PtychoPINN's
data-management guide). The export runs the very interpretation the NPZ path
runs, on the arrays in memory, so the product is the same as converting the
same arrays from a file. Importing never imports TensorFlow by itself:
``ptycho.raw_data`` (which does) is imported only when PtychoPINN is installed
and a real ``RawData`` is asked for.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..facts.errors import InvalidInputError
from ..facts.quantities import ExportMeta
from ..facts.stack import DiffractionInfo, Domain
from ..npz.archive import MemberInfo
from ..npz.dataset import ReadOptions, interpret
from ..npz.patterns import ArrayPatternReader, PatternReader
from ..npz.store import ArrayStore
from ..product.layout import read_product
from .export import ExportOptions, ExportReport, export_dataset
from .importer import (
    _source_dtype,
    bundled_amplitudes,
    normalize_product,
    npz_arrays_from_product,
    restore_stack,
)

logger = logging.getLogger(__name__)

#: ``RawData``'s array attributes, in its constructor's order.
RAWDATA_ARRAYS = (
    'xcoords',
    'ycoords',
    'xcoords_start',
    'ycoords_start',
    'diff3d',
    'probeGuess',
    'scan_index',
    'objectGuess',
    'Y',
    'norm_Y_I',
)
#: Ignored on export: model inputs that a product has no place for.
NOT_EXPORTED = ('Y', 'norm_Y_I', 'ground_truth_patches')


class MemoryStore:
    """Arrays already in memory, served like the members of an NPZ (no copies of the stack)."""

    def __init__(self, arrays: Mapping[str, np.ndarray], metadata: dict[str, Any] | None, label: str) -> None:
        self.path = Path(label)
        self._arrays = dict(arrays)
        self._metadata = metadata
        self.members = {
            key: MemberInfo(
                key=key,
                member=key,
                shape=tuple(int(n) for n in value.shape),
                dtype=value.dtype,
                fortran_order=False,
                compressed=False,
                header_bytes=0,
                member_bytes=value.nbytes,
            )
            for key, value in self._arrays.items()
        }

    def __contains__(self, key: object) -> bool:
        return key in self._arrays

    def info(self, key: str) -> MemberInfo:
        try:
            return self.members[key]
        except KeyError:
            raise InvalidInputError(self.path, f'has no array {key!r}') from None

    def read(self, key: str) -> np.ndarray:
        if self.info(key).is_object:
            raise InvalidInputError(self.path, f'array {key!r} holds Python objects, not numbers')
        return self._arrays[key]

    def read_metadata(self, key: str = '_metadata') -> dict[str, Any] | None:
        return self._metadata

    def pattern_reader(self, info: DiffractionInfo) -> PatternReader:
        return ArrayPatternReader(self._arrays[info.key], info)

    def close(self) -> None:
        self._arrays.clear()


def _store_from_raw(raw: Any, label: str) -> ArrayStore:
    """A store over a ``RawData``-like object or a mapping of arrays (a dict, an ``NpzFile``)."""
    metadata: Any = None
    arrays: dict[str, np.ndarray] = {}
    if isinstance(raw, Mapping):
        for key in raw:
            if key == '_metadata':
                metadata = _plain_metadata(raw, label)
                continue
            if key in NOT_EXPORTED:
                continue
            value = raw[key]
            if value is not None:
                arrays[str(key)] = np.asarray(value)
        if isinstance(raw.get('metadata'), dict):
            metadata = raw['metadata']
        arrays.pop('metadata', None)
    else:
        for key in RAWDATA_ARRAYS:
            value = getattr(raw, key, None)
            if value is not None and key not in NOT_EXPORTED:
                arrays[key] = np.asarray(value)
        metadata = getattr(raw, 'metadata', None)
        if not arrays:
            raise InvalidInputError(label, f"{type(raw).__name__} has none of RawData's arrays")
    if metadata is not None and not isinstance(metadata, dict):
        logger.warning('%s: metadata is a %s, not a dict; not bundled', label, type(metadata).__name__)
        metadata = None
    return MemoryStore(arrays, metadata, label)


def _plain_metadata(raw: Mapping[str, Any], label: str) -> dict[str, Any] | None:
    """A mapping's ``_metadata`` when it is a plain JSON string; pickled ones are never loaded."""
    try:
        value = raw['_metadata']
    except ValueError:  # numpy.load refuses the pickled object array: skip, never unpickle
        logger.warning('%s: _metadata is pickled; not bundled (never unpickled)', label)
        return None
    text = value.item() if isinstance(value, np.ndarray) and value.shape == () else value
    if not isinstance(text, str):
        logger.warning('%s: _metadata is not a JSON string; not bundled', label)
        return None
    return _json_object(text, Path(label))


def export_product_from_rawdata(
    raw: Any,
    out_path: str | os.PathLike[str],
    meta: ExportMeta | None = None,
    include_raw: bool = True,
    **options: Any,
) -> ExportReport:
    """Write a Ptychodus product from PtychoPINN data in memory.

    Parameters
    ----------
    raw: a ``ptycho.raw_data.RawData`` (or any object with its attributes:
        ``xcoords``, ``ycoords``, ``xcoords_start``, ``ycoords_start``, ``diff3d``,
        ``probeGuess``, ``objectGuess``, ``scan_index``, ``metadata``), or a mapping of
        arrays under the NPZ keys (a dict, or what ``numpy.load`` returns).
        ``diff3d`` is RawData's amplitude stack; its domain is decided as for files
        (pass ``domain='amplitude'`` to state it).
    out_path: the product HDF5. Its folder is created, and an existing file is
        **replaced** (both as PtychoPINN's own exporter does), atomically: never a
        half-written product.
    meta: an :class:`ExportMeta` (PtychoPINN's keyword names are accepted).
    include_raw: write the ``/raw_data`` bundle (stack, pixel coordinates, ``_metadata``).
    options: any :class:`ExportOptions` field (``domain``, ``layout``, ``position_convention``,
        ``compression``, ``overwrite=False`` to refuse replacing, ...).

    The stack is read block by block from ``raw``: at most one block (16 MB) is
    copied at a time.
    """
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)  # as PtychoPINN's exporter does
    opts = ExportOptions.build(None, {'overwrite': True, 'include_raw': include_raw, **options})
    read = ReadOptions.parse(
        out,
        domain=opts.domain,
        positions=opts.positions,
        layout=opts.layout,
        position_convention=opts.position_convention,
    )
    given = meta or ExportMeta()
    if given.name is None:
        given = ExportMeta(name=out.stem).overlay(given)
    with interpret(_store_from_raw(raw, f'{type(raw).__name__}:{out.name}'), read) as dataset:
        return export_dataset(dataset, out, given, opts)


@dataclass
class PtychoPINNRawData:
    """RawData's attributes without PtychoPINN (and without TensorFlow).

    Exactly the attribute names of ``ptycho.raw_data.RawData``; ``diff3d`` is the
    bundled stack as float32 NHW amplitude (``None`` without a bundled stack),
    ``metadata`` the bundled ``_metadata`` (``None`` if absent).
    """

    xcoords: npt.NDArray[np.float64]
    ycoords: npt.NDArray[np.float64]
    xcoords_start: npt.NDArray[np.float64]
    ycoords_start: npt.NDArray[np.float64]
    diff3d: npt.NDArray[np.float32] | None
    probeGuess: npt.NDArray[Any]  # noqa: N815
    scan_index: npt.NDArray[np.int64]
    objectGuess: npt.NDArray[Any] | None = None  # noqa: N815
    Y: npt.NDArray[Any] | None = None  # noqa: N815
    norm_Y_I: Any = None  # noqa: N815
    metadata: dict[str, Any] | None = field(default=None)


def import_product_to_rawdata(in_path: str | os.PathLike[str], *, plain: bool = False) -> Any:
    """Read a product HDF5 (ours, PtychoPINN's exporter's, or Ptychodus's) as ``RawData``.

    Parameters
    ----------
    in_path: the product file.
    plain: return a :class:`PtychoPINNRawData` even when PtychoPINN is installed.

    Returns ``ptycho.raw_data.RawData`` when PtychoPINN is importable and ``plain``
    is false (``ptycho.raw_data`` imports TensorFlow, so it is imported only then),
    otherwise a :class:`PtychoPINNRawData`. ``diff3d`` holds the bundled stack as
    float32 NHW amplitude (beyond PtychoPINN's own importer, which leaves it ``None``).
    """
    path = Path(in_path)
    product, bundle, h5 = read_product(path, check_terminates=False)
    with h5:
        notes = normalize_product(product, bundle)
        arrays, more = npz_arrays_from_product(product, bundle)
        for note in notes + more:
            logger.warning('%s: %s', path.name, note)
        metadata = None
        if bundle is not None and bundle.metadata_json is not None:
            metadata = _json_object(bundle.metadata_json, path)
        diff3d = None
        if bundle is not None and bundle.diffraction is not None:
            diff3d = _diff3d_as_declared(bundle, metadata, path)
    values: dict[str, Any] = {
        key: np.asarray(arrays[key])
        for key in (
            'xcoords',
            'ycoords',
            'xcoords_start',
            'ycoords_start',
            'probeGuess',
            'objectGuess',
            'scan_index',
        )
    }
    values['scan_index'] = values['scan_index'].astype(np.int64)
    probe = values['probeGuess']
    if probe.ndim > 2:  # ptycho.raw_data.RawData asserts a 2-D probeGuess
        flat = probe.reshape(-1, *probe.shape[-2:])
        if flat.shape[0] > 1:
            logger.warning('%s: probe has %d modes; probeGuess is the first, all are in .probe_modes',
                           path.name, flat.shape[0])
        values['probeGuess'] = flat[0]
        values['probe_modes'] = flat
    values.update(diff3d=diff3d, metadata=metadata)
    rawdata_cls = None if plain else _ptychopinn_rawdata_class()
    if rawdata_cls is None:
        return PtychoPINNRawData(**values)
    return _construct_rawdata(rawdata_cls, values)


def _diff3d_as_declared(bundle: Any, metadata: dict[str, Any] | None, path: Path) -> np.ndarray:
    """The bundled stack in the domain the source's metadata declares (counts stay counts).

    PtychoPINN's count datasets (``scripts/studies/make_synthetic_truth_datasets.py``)
    say ``measurement_domain='count_intensity'``; handing them amplitudes would make
    ``RawData.to_file`` write amplitudes where counts belong. Otherwise float32 amplitude.
    """
    declared = str((metadata or {}).get('measurement_domain', ''))
    if 'count' in declared or 'intensity' in declared:
        _, stream = restore_stack(bundle)
        out = np.empty(stream.shape, dtype=stream.dtype)
        for start, block in stream.blocks:
            out[start : start + block.shape[0]] = block
        _, source_domain, _ = _source_dtype(bundle)
        if source_domain is not Domain.INTENSITY:
            logger.warning('%s: metadata says %r but the stack came from %s values; diff3d is as it came',
                           path.name, declared, source_domain.value)
        return out
    return bundled_amplitudes(bundle)


def _json_object(text: str, path: Path) -> dict[str, Any] | None:
    import json

    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        logger.warning('%s: /raw_data/_metadata is not JSON; skipped', path.name)
        return None
    return value if isinstance(value, dict) else None


def _ptychopinn_rawdata_class() -> Any:
    """``ptycho.raw_data.RawData`` if PtychoPINN is installed, else ``None`` (nothing imported)."""
    if importlib.util.find_spec('ptycho') is None:
        return None
    try:
        module = importlib.import_module('ptycho.raw_data')
    except Exception as exc:  # noqa: BLE001 - another package named ``ptycho``, or TensorFlow broken
        logger.warning('ptycho.raw_data cannot be imported (%s: %s); returning PtychoPINNRawData instead',
                       type(exc).__name__, exc)
        return None
    return getattr(module, 'RawData', None)


def _construct_rawdata(cls: Any, values: dict[str, Any]) -> Any:
    """RawData's constructor differs between PtychoPINN versions: pass what it accepts."""
    accepted = inspect.signature(cls).parameters
    kwargs = {key: value for key, value in values.items() if key in accepted}
    raw = cls(**kwargs)
    for key, value in values.items():
        if key not in accepted:
            setattr(raw, key, value)
    return raw
