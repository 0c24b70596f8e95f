"""Ptychodus product HDF5 -> PtychoPINN arrays (NPZ), and the bundled stack as Ptychodus reads it.

Positions come back as object pixels through the same convention the
exporter used; when the bundle's exact pixel coordinates agree with the
product's positions they are used verbatim, so a round trip is bit-exact.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..facts.errors import InvalidInputError
from ..facts.geometry import DEFAULT_CONVENTION, PositionConvention, PositionMapping
from ..facts.quantities import QUANTITIES
from ..facts.stack import Domain, convert_domain, to_source_values
from ..npz.archive import StreamedArray, metadata_array, write_npz
from ..npz.dataset import COMMENTS_KEY, CONVENTION_KEY, DOMAIN_KEY, NAME_KEY, OUR_METADATA_KEY
from ..product.layout import H5_ERRORS, RAW_GROUP, Product, RawBundle, bundle_rows, open_h5, read_product
from ..safeio.atomic import atomic_output, check_destination
from .resolve import strip_notes

logger = logging.getLogger(__name__)
#: Rows read at once when restoring a bundled stack.
RESTORE_BLOCK_BYTES = 64 << 20
Arrays = dict[str, np.ndarray | StreamedArray]


@dataclass
class ImportReport:
    product_path: Path
    npz_path: Path
    num_positions: int
    keys: list[str]
    notes: list[str]

    def summary(self) -> str:
        keys = ', '.join(self.keys)
        return (
            f'{self.product_path.name} -> {self.npz_path.name}: {self.num_positions} positions, keys {keys}'
        )


def import_product(
    product_path: str | os.PathLike[str],
    output_npz: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    tolerance_px: float = 1e-6,
    check_terminates: bool = False,
    position_convention: PositionConvention | str | None = None,
    fsync: bool = False,
) -> ImportReport:
    """Turn a product HDF5 (with or without ``/raw_data``) back into a PtychoPINN NPZ.

    Parameters
    ----------
    product_path: the product HDF5 (ours, Ptychodus's, or PtychoPINN exporter's).
    output_npz: the NPZ to write (atomically).
    overwrite: replace an existing ``output_npz``.
    tolerance_px: how closely ``/raw_data`` pixel coordinates must agree with the
        product's positions to be used verbatim.
    check_terminates: first walk the file's metadata in a watchdog child (the CLI sets it).
    position_convention: how to write ``xcoords`` (see :mod:`geometry`); ``None``: as the
        product's source had them (recorded by our exporter), else ``'ptychopinn'``.
    fsync: have the NPZ on disk before it is published (see :mod:`..safeio.atomic`).
    """
    check_destination(output_npz, overwrite=overwrite)
    path = Path(product_path)
    product, bundle, h5 = read_product(path, check_terminates=check_terminates)
    with h5:
        notes = normalize_product(product, bundle)
        arrays, more = npz_arrays_from_product(
            product,
            bundle,
            positions_kind=str(product.extra_attrs.get('ptychopinn_positions', 'actual')),
            tolerance_px=tolerance_px,
            convention=position_convention,
        )
        notes += more
        with atomic_output(output_npz, overwrite=overwrite, fsync=fsync) as tmp:
            write_npz(tmp, arrays)
    for note in notes:
        logger.warning('%s: %s', path.name, note)
    return ImportReport(path, Path(output_npz), len(product.position_x_m), list(arrays), notes)


def npz_arrays_from_product(
    product: Product,
    bundle: RawBundle | None = None,
    *,
    positions_kind: str = 'actual',
    tolerance_px: float = 1e-6,
    convention: PositionConvention | str | None = None,
) -> tuple[Arrays, list[str]]:
    """PtychoPINN arrays (plus our geometry keys) for a product; shared with the plugin writer."""
    notes: list[str] = []
    mapping = product_mapping(product, convention)
    positions = _positions(product, bundle, mapping, positions_kind, tolerance_px, notes)
    arrays: Arrays = dict(positions)
    probe_shape = bundle.probe_shape if bundle is not None else None
    arrays['probeGuess'] = _probe_for_npz(product.probe, probe_shape, notes)
    arrays['objectGuess'] = _object_for_npz(product.object, notes)
    num = len(positions['xcoords'])
    if bundle is not None and bundle.scan_index is not None and len(bundle.scan_index) == num:
        arrays['scan_index'] = bundle.scan_index
    else:
        arrays['scan_index'] = np.zeros(num, dtype=np.int64)
    ours: dict[str, Any] = {}
    if bundle is not None:
        arrays.update(_bundle_arrays(bundle, ours))
    ours.update(quantity_values(product))
    ours[CONVENTION_KEY] = mapping.convention.value
    source_meta = arrays.pop('_metadata', None)
    arrays['_metadata'] = metadata_with_ours(None if source_meta is None else str(source_meta), ours)
    return arrays, notes


def metadata_with_ours(source_json: str | None, ours: dict[str, Any]) -> np.ndarray:
    """PtychoPINN's ``_metadata`` (a pickled one-string object array) carrying our keys in our namespace.

    Our keys live under :data:`OUR_METADATA_KEY` rather than at the top level of
    the NPZ, because PtychoPINN's tools (``scripts/tools/split_dataset_tool.py``
    and friends) index ``shape[0]`` of every top-level array. The source's own
    metadata, if any, is kept as it was around our key.
    """
    metadata: dict[str, Any] = {}
    if source_json is not None:
        try:
            parsed = json.loads(source_json)
        except json.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict):
            metadata = parsed
    metadata[OUR_METADATA_KEY] = ours
    return metadata_array(json.dumps(metadata))


def product_mapping(product: Product, convention: PositionConvention | str | None = None) -> PositionMapping:
    """A product's pixel mapping: explicit, else as our exporter recorded it, else PtychoPINN's."""
    recorded = product.extra_attrs.get('ptychopinn_position_convention')
    chosen = convention or (str(recorded) if recorded is not None else DEFAULT_CONVENTION)
    if chosen not in PositionConvention.__members__.values():
        chosen = DEFAULT_CONVENTION
    height, width = product.probe.shape[-2:]
    return PositionMapping(int(width), int(height), PositionConvention(chosen))


def is_ptychopinn_export(product: Product) -> bool:
    """Written by PtychoPINN's own exporter (its root attributes, none of ours)."""
    attrs = product.extra_attrs
    return 'bundle_version' in attrs and 'ptychopinn_ptychodus_version' not in attrs


def normalize_product(product: Product, bundle: RawBundle | None) -> list[str]:
    """Repair, in place, what other writers leave for the reader to get wrong; returns notes.

    PtychoPINN's exporter writes ``x_m = xcoords * pixel`` (not centred on the
    object) and ``scan_index`` as position indexes: its positions are rebuilt
    from the bundle's pixel coordinates, with indexes ``0..M-1``. Indexes that
    are not a permutation of ``0..M-1`` (duplicates, gaps) are renumbered in
    file order, since Ptychodus pairs positions with patterns by index value.
    """
    notes: list[str] = list(product.notes)
    num = len(product.position_x_m)
    if is_ptychopinn_export(product):
        if bundle is not None and bundle.xcoords.shape == (num,) and bundle.ycoords.shape == (num,):
            mapping = product_mapping(product, DEFAULT_CONVENTION)
            x_obj, y_obj = mapping.to_object_pixels(bundle.xcoords, bundle.ycoords)
            product.position_x_m, product.position_y_m = product.grid.pixels_to_metres(x_obj, y_obj)
            product.position_indexes = np.arange(num, dtype=np.int64)
            notes.append(
                "written by PtychoPINN's exporter, whose metre positions are not centred on the object: "
                'positions taken from /raw_data pixel coordinates, indexes 0..M-1'
            )
        else:
            notes.append(
                "written by PtychoPINN's exporter, whose metre positions are not centred on the object, "
                'and without /raw_data coordinates: positions used as written (probably misplaced)'
            )
    indexes = np.asarray(product.position_indexes)
    if not np.array_equal(np.sort(indexes), np.arange(num)):
        product.position_indexes = np.arange(num, dtype=np.int64)
        notes.append(f'position indexes are not 0..{num - 1} (duplicates or gaps); renumbered in file order')
    return notes


def _positions(
    product: Product,
    bundle: RawBundle | None,
    mapping: PositionMapping,
    kind: str,
    tolerance_px: float,
    notes: list[str],
) -> dict[str, np.ndarray]:
    """``xcoords``/``ycoords`` and their ``_start`` twins, exact from the bundle when it agrees."""
    order = np.argsort(product.position_indexes, kind='stable')
    x_obj, y_obj = product.grid.metres_to_pixels(product.position_x_m[order], product.position_y_m[order])
    x_px, y_px = mapping.to_file_coordinates(x_obj, y_obj)
    if bundle is None:
        return {'xcoords': x_px, 'ycoords': y_px, 'xcoords_start': x_px, 'ycoords_start': y_px}
    starts = bundle.extras
    x_exact, y_exact = (
        (starts.get('xcoords_start'), starts.get('ycoords_start'))
        if kind == 'nominal'
        else (bundle.xcoords, bundle.ycoords)
    )
    if _agree(x_exact, x_px, tolerance_px) and _agree(y_exact, y_px, tolerance_px):
        assert x_exact is not None and y_exact is not None
        x_px, y_px = x_exact, y_exact
    else:
        notes.append('positions differ from /raw_data; using the product positions')
    if kind == 'nominal' and bundle.xcoords.shape == x_px.shape:
        return {
            'xcoords': bundle.xcoords,
            'ycoords': bundle.ycoords,
            'xcoords_start': x_px,
            'ycoords_start': y_px,
        }
    same_len = all(
        key in starts and starts[key].shape == x_px.shape for key in ('xcoords_start', 'ycoords_start')
    )
    return {
        'xcoords': x_px,
        'ycoords': y_px,
        'xcoords_start': starts['xcoords_start'] if same_len else x_px,
        'ycoords_start': starts['ycoords_start'] if same_len else y_px,
    }


def _agree(exact: np.ndarray | None, mapped: np.ndarray, tolerance_px: float) -> bool:
    return (
        exact is not None
        and exact.shape == mapped.shape
        and float(np.max(np.abs(exact - mapped), initial=0)) <= tolerance_px
    )


def _bundle_arrays(bundle: RawBundle, ours: dict[str, Any]) -> Arrays:
    arrays: Arrays = {}
    if 'bad_pixels' in bundle.extras:
        arrays['bad_pixels'] = bundle.extras['bad_pixels']
    if bundle.diffraction is not None:
        key, stream = restore_stack(bundle)
        arrays[key] = stream
        ours[DOMAIN_KEY] = _source_dtype(bundle)[1].value
    if bundle.metadata_json is not None:
        arrays['_metadata'] = np.asarray(bundle.metadata_json)
    for key, dset in bundle.carried.items():
        arrays.setdefault(key, carried_array(dset))
    return arrays


def carried_array(dset: h5py.Dataset) -> np.ndarray | StreamedArray:
    """A source array the exporter carried verbatim, as it was; large ones stream in row blocks."""
    try:
        recorded = dset.attrs.get('numpy_dtype')
        if recorded is not None:  # strings, datetimes...: stored as their bytes
            dtype = np.dtype(_plain_text(recorded))
            return np.frombuffer(np.asarray(dset[()]).tobytes(), dtype=dtype).reshape(dset.shape[:-1])
        if dset.ndim == 0 or dset.nbytes <= RESTORE_BLOCK_BYTES:
            return np.asarray(dset[()])
    except (*H5_ERRORS, ArithmeticError) as exc:
        raise InvalidInputError(dset.file.filename, f'cannot read {dset.name}: {exc}') from exc
    rows = max(1, RESTORE_BLOCK_BYTES // max(1, int(np.prod(dset.shape[1:])) * dset.dtype.itemsize))

    def blocks() -> Iterator[tuple[int, np.ndarray]]:
        for start in range(0, dset.shape[0], rows):
            try:
                yield start, np.asarray(dset[start : start + rows])
            except H5_ERRORS as exc:
                raise InvalidInputError(dset.file.filename, f'cannot read {dset.name}: {exc}') from exc

    return StreamedArray(shape=tuple(dset.shape), dtype=dset.dtype, blocks=blocks())


def _probe_for_npz(probe: np.ndarray, original: tuple[int, ...] | None, notes: list[str]) -> np.ndarray:
    """PtychoPINN's probe: its original shape if recorded, else 2D when single-mode."""
    if original is not None and int(np.prod(original)) == probe.size:
        return probe.reshape(original)
    if probe.ndim == 4 and probe.shape[0] > 1:
        notes.append(f'probe has {probe.shape[0]} OPR components; PtychoPINN keeps the first')
        probe = probe[:1]
    while probe.ndim > 2 and probe.shape[0] == 1:
        probe = probe[0]
    return probe


def _object_for_npz(obj: np.ndarray, notes: list[str]) -> np.ndarray:
    if obj.ndim == 3:
        if obj.shape[0] > 1:
            notes.append(f'object has {obj.shape[0]} layers; PtychoPINN keeps layer 0 only')
        obj = obj[0]
    return obj


def _source_dtype(bundle: RawBundle) -> tuple[str, Domain, np.dtype[Any]]:
    """The key, domain and dtype the bundled stack came from (recorded by our exporter)."""
    assert bundle.diffraction is not None
    attrs = bundle.attrs
    key = str(attrs.get('source_key', 'diffraction'))
    key = key if key in ('diffraction', 'diff3d') else 'diffraction'
    try:
        dtype = np.dtype(str(attrs.get('source_dtype', bundle.diffraction.dtype.str)))
    except TypeError:
        dtype = bundle.diffraction.dtype
    if dtype.kind not in 'iuf':
        dtype = bundle.diffraction.dtype
    return key, _domain(attrs, 'source_domain', _stored_domain(bundle.attrs)), dtype


def _stored_domain(attrs: dict[str, Any]) -> Domain:
    """What the bundled numbers are; amplitude when unsaid (PtychoPINN's exporter, our 0.1.0)."""
    return _domain(attrs, 'measurement_domain', Domain.AMPLITUDE)


def _domain(attrs: dict[str, Any], name: str, default: Domain) -> Domain:
    value = _plain_text(attrs.get(name, default.value))
    return Domain(value) if value in Domain.__members__.values() else default


def _plain_text(value: Any) -> str:
    return value.decode('utf-8', errors='replace') if isinstance(value, bytes) else str(value)


def restore_stack(bundle: RawBundle) -> tuple[str, StreamedArray]:
    """The bundled stack back in the source key, domain and dtype, block by block."""
    key, source_domain, dtype = _source_dtype(bundle)
    stored_domain = _stored_domain(bundle.attrs)
    dset: h5py.Dataset = bundle.diffraction
    per_row = max(1, int(np.prod(dset.shape[1:])) * dset.dtype.itemsize)
    rows = max(1, RESTORE_BLOCK_BYTES // per_row)

    def blocks() -> Iterator[tuple[int, np.ndarray]]:
        for start in range(0, dset.shape[0], rows):
            stored = read_rows(dset, start, start + rows)
            yield start, to_source_values(stored, stored_domain, source_domain, dtype)

    return key, StreamedArray(shape=tuple(dset.shape[:3]), dtype=dtype, blocks=blocks())


def bundled_amplitudes(bundle: RawBundle) -> np.ndarray:
    """The whole bundled stack as float32 NHW amplitude (PtychoPINN's ``RawData.diff3d``)."""
    assert bundle.diffraction is not None
    stored = read_rows(bundle.diffraction, 0, bundle.diffraction.shape[0])
    return convert_domain(stored, _stored_domain(bundle.attrs), Domain.AMPLITUDE, np.dtype(np.float32))


def read_rows(
    dset: h5py.Dataset, start: int, stop: int, region: tuple[slice, slice] | None = None
) -> np.ndarray:
    """Rows of a bundled stack (optionally cropped); h5py failures name the file."""
    try:
        return bundle_rows(dset, start, stop, region)
    except H5_ERRORS as exc:
        raise InvalidInputError(dset.file.filename, f'cannot read /{RAW_GROUP}/diffraction: {exc}') from exc


def quantity_values(product: Product) -> dict[str, Any]:
    """Our metadata for every quantity a product carries, plus its name and comments.

    A quantity that must be positive but is not (a product without photon
    energy stores 0) is left out, so converting our NPZ forward again asks for it instead of
    refusing a recorded 0 (the forward converter then warns that it is unknown).
    """
    out: dict[str, Any] = {}
    for q in QUANTITIES:
        if q.place == 'patterns':
            continue
        value = float(product.quantity(q.name))
        if value > 0 or not q.positive:
            out[q.name] = value
    out[NAME_KEY] = product.metadata.name
    out[COMMENTS_KEY] = strip_notes(product.metadata.comments)
    return out


def quantity_arrays(product: Product) -> dict[str, np.ndarray]:
    """:func:`quantity_values` as 0.2.0 wrote them: one 0-d array each (kept for the API)."""
    return {key: np.asarray(value) for key, value in quantity_values(product).items()}


def load_product_file(path: Path, *, check_terminates: bool = True) -> Product:
    """A product file's probe, object and positions (the plugin's ``.h5`` product reader)."""
    product, bundle, h5 = read_product(path, check_terminates=check_terminates)
    with h5:
        for note in normalize_product(product, bundle):
            logger.warning('%s: %s', path.name, note)
    return product


# ---------------------------------------------------------------------------
# the bundled stack as Ptychodus diffraction data
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BundledStack:
    """What a Ptychodus diffraction reader needs to know about ``/raw_data/diffraction``."""

    path: Path
    num_patterns: int
    height: int
    width: int
    dtype: np.dtype[Any]  # of the intensities delivered
    stored_domain: Domain
    source_domain: Domain
    attrs: dict[str, Any]
    stored_dtype: str
    bad_pixels: np.ndarray | None
    detector_distance_m: float | None
    photon_energy_eV: float | None
    position_convention: str


def describe_bundled_stack(path: Path, *, check_terminates: bool = True) -> BundledStack:
    """Inspect a converted product's bundled stack (the plugin's ``.h5`` diffraction reader)."""
    product, bundle, h5 = read_product(path, check_terminates=check_terminates)
    with h5:
        dset = None if bundle is None else bundle.diffraction
        # (M, N, N, 1): PtychoPINN's exporter stores a 4-D RawData.diff3d as given
        four_d = dset is not None and dset.ndim == 4 and dset.shape[3] == 1
        if bundle is None or dset is None or (dset.ndim != 3 and not four_d):
            raise InvalidInputError(path, f'has no /{RAW_GROUP}/diffraction (M, N, N) stack')
        num, height, width = (int(n) for n in dset.shape[:3])
        _, source_domain, _ = _source_dtype(bundle)
        stored_domain = _stored_domain(bundle.attrs)
        if stored_domain == Domain.INTENSITY and dset.dtype.kind in 'iuf':
            delivered = dset.dtype  # counts stay integer counts
        else:
            delivered = np.dtype(np.float64 if dset.dtype == np.float64 else np.float32)
        bad = bundle.extras.get('bad_pixels')
        return BundledStack(
            path=path,
            num_patterns=num,
            height=height,
            width=width,
            dtype=delivered,
            stored_domain=stored_domain,
            source_domain=source_domain,
            attrs=dict(bundle.attrs),
            stored_dtype=str(dset.dtype),
            bad_pixels=None if bad is None else bad.astype(bool),
            detector_distance_m=product.metadata.values.get('detector_distance_m'),
            photon_energy_eV=product.metadata.values.get('photon_energy_eV'),
            position_convention=product_mapping(product).describe(),
        )


def read_bundled_intensities(stack: BundledStack, region: tuple[slice, slice] | None = None) -> np.ndarray:
    """All bundled patterns as intensities (cropped first); counts come back as whole numbers."""
    h5 = open_h5(stack.path)
    with h5:
        dset = h5.get(f'{RAW_GROUP}/diffraction')
        if not isinstance(dset, h5py.Dataset):
            raise InvalidInputError(stack.path, f'has no /{RAW_GROUP}/diffraction stack')
        stored = read_rows(dset, 0, stack.num_patterns, region)
    if stack.stored_domain == Domain.INTENSITY:
        return stored.astype(stack.dtype, copy=False)
    intensity = np.square(stored.astype(stack.dtype))
    if stack.source_domain == Domain.INTENSITY:  # counts bundled as amplitudes (version 0.1.0)
        np.rint(intensity, out=intensity)
    return intensity
