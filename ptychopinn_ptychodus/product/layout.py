"""The Ptychodus product HDF5 (and Ptychodus's assembled-diffraction HDF5), with h5py only.

Layout as Ptychodus 1.7 reads it, plus the legacy attribute spellings that
Ptychodus <= 1.6 reads (both come from the quantity table), plus PtychoPINN's
``/raw_data`` bundle, which every Ptychodus version ignores.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import numpy.typing as npt

from ..facts.errors import InvalidInputError
from ..facts.geometry import ObjectGrid
from ..facts.quantities import BY_NAME, Place, in_place
from ..safeio.atomic import make_fresh
from ..safeio.untrusted import check_untrusted_h5

RAW_GROUP = 'raw_data'
#: What h5py raises on damaged files.
H5_ERRORS = (OSError, RuntimeError, ValueError, KeyError, TypeError)



@dataclass(frozen=True)
class ProductMetadata:
    """Name, comments and the product's root quantities (by canonical name)."""

    name: str = ''
    comments: str = ''
    values: dict[str, float] = field(default_factory=dict)

    def value(self, name: str) -> float:
        return self.values.get(name, 0.0)

@dataclass
class Product:
    """What a product file holds, in the PtychoPINN-facing shapes."""

    metadata: ProductMetadata
    probe: npt.NDArray[Any]
    probe_pixel_width_m: float
    probe_pixel_height_m: float
    object: npt.NDArray[Any]
    grid: ObjectGrid
    position_indexes: npt.NDArray[np.int64]
    position_x_m: npt.NDArray[np.float64]
    position_y_m: npt.NDArray[np.float64]
    layer_spacing_m: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(0, dtype=np.float64))
    extra_attrs: dict[str, Any] = field(default_factory=dict)
    #: What reading assumed for something the file left out (logged by the caller).
    notes: list[str] = field(default_factory=list)

    def quantity(self, name: str) -> float:
        """Any quantity of the table that a product carries, by canonical name."""
        place = BY_NAME[name].place
        if place == 'root':
            return self.metadata.value(name)
        return float(
            {
                'object_pixel_width_m': self.grid.pixel_width_m,
                'object_pixel_height_m': self.grid.pixel_height_m,
                'object_center_x_m': self.grid.center_x_m,
                'object_center_y_m': self.grid.center_y_m,
                'probe_pixel_width_m': self.probe_pixel_width_m,
                'probe_pixel_height_m': self.probe_pixel_height_m,
            }[name]
        )


@dataclass
class RawBundle:
    """The ``/raw_data`` group, read back (the stack stays lazy)."""

    xcoords: npt.NDArray[np.float64]
    ycoords: npt.NDArray[np.float64]
    scan_index: npt.NDArray[Any] | None
    diffraction: h5py.Dataset | None
    extras: dict[str, npt.NDArray[Any]] = field(default_factory=dict)
    metadata_json: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    probe_shape: tuple[int, ...] | None = None
    #: Source arrays we did not interpret, carried verbatim (``carried_keys``), still lazy.
    carried: dict[str, h5py.Dataset] = field(default_factory=dict)


def create_h5(path: Path) -> h5py.File:
    """A new HDF5 file whose metadata cache stays small.

    libhdf5 grows its metadata cache (up to 32 MB) with the chunk index of a
    large stack; our writes only ever append, so 4 MB keeps peak memory flat
    however many chunks a stack has. ``path`` is replaced (see :func:`make_fresh`).
    """
    h5 = h5py.File(make_fresh(path), 'x')
    config = h5.id.get_mdc_config()
    config.set_initial_size = True
    config.initial_size = 2 << 20
    config.max_size = 4 << 20
    config.min_size = 1 << 20
    h5.id.set_mdc_config(config)
    return h5


def _write_quantities(obj: h5py.HLObject, place: Place, value: Any) -> None:
    for quantity in in_place(place):
        for attr in quantity.attrs:
            obj.attrs[attr] = float(value(quantity.name))


def write_product(h5: h5py.File, product: Product) -> None:
    """Root attributes and datasets of a product (``/raw_data`` is written separately)."""
    attrs = h5.attrs
    attrs['name'] = product.metadata.name
    attrs['comments'] = product.metadata.comments
    _write_quantities(h5, 'root', product.quantity)
    attrs['focus_object_distance_m'] = 0.0
    attrs['tilt_angle_deg'] = 0.0
    attrs['far_field'] = True
    for key, value in product.extra_attrs.items():
        attrs[key] = value
    _write_quantities(h5.create_dataset('probe', data=product.probe), 'probe', product.quantity)
    _write_quantities(h5.create_dataset('object', data=product.object), 'object', product.quantity)
    h5.create_dataset('object_layer_spacing_m', data=np.asarray(product.layer_spacing_m, np.float64))
    h5.create_dataset('probe_position_indexes', data=np.asarray(product.position_indexes, np.int64))
    h5.create_dataset('probe_position_x_m', data=np.asarray(product.position_x_m, np.float64))
    h5.create_dataset('probe_position_y_m', data=np.asarray(product.position_y_m, np.float64))
    h5.create_dataset('loss_epochs', data=np.zeros(0, dtype=np.int64))
    h5.create_dataset('loss_values', data=np.zeros(0, dtype=np.float64))


def write_raw_bundle(
    h5: h5py.File,
    *,
    xcoords: npt.NDArray[np.float64],
    ycoords: npt.NDArray[np.float64],
    scan_index: npt.NDArray[Any] | None,
    extras: dict[str, npt.NDArray[Any]],
    metadata: dict[str, Any] | None,
) -> h5py.Group:
    """``/raw_data`` minus the diffraction stack (see :func:`chunk_writer.write_pattern_stack`)."""
    group = h5.create_group(RAW_GROUP)
    group.create_dataset('xcoords', data=xcoords)
    group.create_dataset('ycoords', data=ycoords)
    group.create_dataset(
        'scan_index', data=np.zeros(len(xcoords), np.int64) if scan_index is None else scan_index
    )
    for key, value in extras.items():
        group.create_dataset(key, data=value)
    group['probeGuess'] = h5['probe']  # hard links: one copy on disk
    group['objectGuess'] = h5['object']
    if metadata is not None:
        group.create_dataset('_metadata', data=json.dumps(metadata), dtype=h5py.string_dtype())
    return group


def write_diffraction_layout(h5: h5py.File, *, num_patterns: int, bad_pixels: npt.NDArray[np.bool_]) -> None:
    """Indexes and bad pixels of Ptychodus's assembled-diffraction file."""
    h5.create_dataset('indexes', data=np.arange(num_patterns, dtype=np.int64))
    h5.create_dataset('bad_pixels', data=bad_pixels.astype(bool))


# ---------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------


def open_h5(path: str | Path, *, check_terminates: bool = False) -> h5py.File:
    """Open an untrusted HDF5 file read-only, or fail with one line naming it.

    ``check_terminates`` first walks the metadata in a watchdog child process
    (see :func:`untrusted.check_hdf5_terminates`); use it for files from
    elsewhere in single-threaded programs such as the CLI.
    """
    path = Path(path)
    check_untrusted_h5(path, check_terminates=check_terminates)
    try:
        return h5py.File(path, 'r')
    except (OSError, RuntimeError, ValueError) as exc:
        raise InvalidInputError(path, f'not a readable HDF5 file: {exc}') from exc


def read_product(
    path: str | Path, *, check_terminates: bool = False
) -> tuple[Product, RawBundle | None, h5py.File]:
    """Open a product; the caller closes the returned file (raw patterns stay lazy)."""
    h5 = open_h5(path, check_terminates=check_terminates)
    try:
        reader = _Reader(Path(path), h5)
        product = reader.product()
        return product, reader.bundle(), h5
    except BaseException:
        h5.close()
        raise


class _Reader:
    """Reads one open product; every h5py failure becomes one line naming the file."""

    def __init__(self, path: Path, h5: h5py.File) -> None:
        self.path = path
        self.h5 = h5

    def fail(self, problem: str) -> InvalidInputError:
        return InvalidInputError(self.path, problem)

    def item(self, name: str, group: h5py.Group | None = None) -> h5py.Dataset | None:
        try:
            found = (self.h5 if group is None else group).get(name)
        except H5_ERRORS as exc:
            raise self.fail(f'not a valid Ptychodus product: cannot read {name!r}: {exc}') from exc
        return found if isinstance(found, h5py.Dataset) else None

    def dataset(self, name: str, group: h5py.Group | None = None) -> np.ndarray:
        item = self.item(name, group)
        if item is None and group is None and self.item('patterns') is not None:
            # Ptychodus's assembled-diffraction HDF5 (/patterns, /bad_pixels), not a product
            raise self.fail(
                'is a Ptychodus diffraction file (/patterns), not a product (no probe, object or '
                'positions): open it in Ptychodus as a diffraction dataset, or pass a product HDF5'
            )
        if item is None:
            raise self.fail(f'product has no dataset {name!r}')
        try:
            return np.asarray(item[()])
        except H5_ERRORS as exc:
            raise self.fail(f'not a valid Ptychodus product: cannot read {name!r}: {exc}') from exc

    def attr(self, obj: h5py.HLObject, names: tuple[str, ...], default: float | None = None) -> float:
        """The first of ``names`` present on ``obj`` as a float, else ``default``."""
        try:
            for name in names:
                if name in obj.attrs:
                    return float(obj.attrs[name])
        except H5_ERRORS as exc:
            raise self.fail(f'not a valid Ptychodus product: attribute {names[0]!r}: {exc}') from exc
        if default is None:
            raise self.fail(f'product lacks attribute {names[0]!r}')
        return default

    def text(self, name: str) -> str:
        try:
            return _text(self.h5.attrs.get(name, ''))
        except H5_ERRORS as exc:
            raise self.fail(f'not a valid Ptychodus product: attribute {name!r}: {exc}') from exc

    def quantity(self, obj: h5py.HLObject, name: str, default: float | None = None) -> float:
        return self.attr(obj, BY_NAME[name].attrs, default)

    def product(self) -> Product:
        values = {q.name: self.quantity(self.h5, q.name, 0.0) for q in in_place('root')}
        meta = ProductMetadata(name=self.text('name'), comments=self.text('comments'), values=values)
        obj, obj_ds = self.dataset('object'), self.item('object')
        probe, probe_ds = self.dataset('probe'), self.item('probe')
        if obj.ndim not in (2, 3) or probe.ndim not in (2, 3, 4):
            raise self.fail(f'object {obj.shape} or probe {probe.shape} has an unexpected shape')
        try:
            grid = ObjectGrid(
                width_px=int(obj.shape[-1]),
                height_px=int(obj.shape[-2]),
                pixel_width_m=self.quantity(obj_ds, 'object_pixel_width_m'),
                pixel_height_m=self.quantity(obj_ds, 'object_pixel_height_m'),
                center_x_m=self.quantity(obj_ds, 'object_center_x_m'),
                center_y_m=self.quantity(obj_ds, 'object_center_y_m'),
            )
        except ValueError as exc:  # ObjectGrid's own checks (never our errors: those are raised above)
            raise self.fail(f'not a valid Ptychodus product: {exc}') from exc
        notes: list[str] = []
        x_m = self.dataset('probe_position_x_m').astype(np.float64)
        if self.item('probe_position_indexes') is None:
            # PtychoPINN's ptycho/interop/ptychovit/convert.py writes _para.hdf5 without indexes:
            # positions are in pattern order (Ptychodus pairs them with patterns by index value).
            indexes = np.arange(len(x_m), dtype=np.int64)
            notes.append('product has no probe_position_indexes: positions taken in order, 0..M-1')
        else:
            indexes = self.dataset('probe_position_indexes')
        product = Product(
            metadata=meta,
            probe=probe,
            probe_pixel_width_m=self.quantity(probe_ds, 'probe_pixel_width_m', grid.pixel_width_m),
            probe_pixel_height_m=self.quantity(probe_ds, 'probe_pixel_height_m', grid.pixel_height_m),
            object=obj,
            grid=grid,
            position_indexes=indexes,
            position_x_m=x_m,
            position_y_m=self.dataset('probe_position_y_m').astype(np.float64),
            layer_spacing_m=self.dataset('object_layer_spacing_m')
            if self.item('object_layer_spacing_m') is not None
            else np.zeros(0),
            extra_attrs=self.extra_attrs(),
            notes=notes,
        )
        lengths = {len(product.position_indexes), len(product.position_x_m), len(product.position_y_m)}
        if len(lengths) != 1 or product.position_x_m.ndim != 1:
            raise self.fail('probe position arrays have different lengths')
        return product

    def extra_attrs(self) -> dict[str, Any]:
        """Root attributes that say who wrote the file (ours, or PtychoPINN's exporter)."""
        try:
            return {
                key: value
                for key, value in self.h5.attrs.items()
                if key.startswith('ptychopinn_') or key in ('bundle_version', 'contains_raw_data')
            }
        except H5_ERRORS as exc:
            raise self.fail(f'not a valid Ptychodus product: root attributes: {exc}') from exc

    def bundle(self) -> RawBundle | None:
        try:
            group = self.h5.get(RAW_GROUP)
        except H5_ERRORS as exc:
            raise self.fail(f'cannot read /{RAW_GROUP}: {exc}') from exc
        if not isinstance(group, h5py.Group):
            return None
        diffraction = self.item('diffraction', group)
        extras = {
            key: self.dataset(key, group)
            for key in ('xcoords_start', 'ycoords_start', 'bad_pixels')
            if self.item(key, group) is not None
        }
        metadata = self.item('_metadata', group)
        try:
            attrs = dict(diffraction.attrs) if diffraction is not None else {}
            shape = group.attrs.get('probeGuess_original_shape')
            carried_keys = json.loads(_text(group.attrs.get('carried_keys', '[]')))
        except (*H5_ERRORS, json.JSONDecodeError) as exc:
            raise self.fail(f'cannot read /{RAW_GROUP} attributes: {exc}') from exc
        carried = {
            str(key): item
            for key in (carried_keys if isinstance(carried_keys, list) else [])
            if isinstance(item := self.item(str(key), group), h5py.Dataset)
        }
        if diffraction is not None:
            self.check_stack(diffraction, attrs)
        return RawBundle(
            xcoords=self.dataset('xcoords', group).astype(np.float64).reshape(-1),
            ycoords=self.dataset('ycoords', group).astype(np.float64).reshape(-1),
            scan_index=self.dataset('scan_index', group)
            if self.item('scan_index', group) is not None
            else None,
            diffraction=diffraction,
            extras=extras,
            metadata_json=_text(self.dataset('_metadata', group)) if metadata is not None else None,
            attrs=attrs,
            probe_shape=None if shape is None else tuple(int(n) for n in np.asarray(shape).reshape(-1)),
            carried=carried,
        )


    def check_stack(self, dset: h5py.Dataset, attrs: dict[str, Any]) -> None:
        """What a bundled stack that says nothing about itself holds (PtychoPINN's exporter).

        ``ptycho/io/ptychodus_product_io.py`` stores ``RawData.diff3d`` as given: an
        integer stack there is photon counts (it writes no domain attribute), and a
        4-D stack is (M, N, N, 1) (read as its first channel, see :func:`bundle_rows`).
        """
        if dset.dtype.kind in 'iu' and 'measurement_domain' not in attrs:
            attrs['measurement_domain'] = 'intensity'
            attrs.setdefault('source_domain', 'intensity')
            attrs.setdefault('domain_reason', f'integer dtype {dset.dtype} means photon counts')


def bundle_rows(
    dset: h5py.Dataset, start: int, stop: int, region: tuple[slice, slice] | None = None
) -> np.ndarray:
    """Rows ``start:stop`` of a bundled stack as (M, N, N), cropped; (M, N, N, 1) loses its channel."""
    rows, cols = region if region is not None else (slice(None), slice(None))
    if dset.ndim == 4:
        return np.asarray(dset[start:stop, rows, cols, 0])
    return np.asarray(dset[start:stop, rows, cols])


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode('utf-8', errors='replace')
    if isinstance(value, np.ndarray) and value.shape == ():
        return _text(value[()])
    return str(value)
