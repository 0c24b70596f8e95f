"""NPZ -> Ptychodus product (and assembled diffraction), and product -> NPZ.

This is the programmatic API the seed describes (``ExportMeta``, an export and
an import function), built only on numpy and h5py so it runs where Ptychodus
is not installed.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, ClassVar

import h5py
import numpy as np

from . import __version__
from .atomic import atomic_output, check_destination, check_size_limit
from .errors import InvalidInputError
from .geometry import ObjectGrid, derive_detector_pixel_m, fraction_inside, placeholder_object_shape
from .npz_archive import StreamedArray, write_npz
from .npz_format import (
    COMMENTS_KEY,
    DOMAIN_KEY,
    GEOMETRY_KEYS,
    NAME_KEY,
    Domain,
    Layout,
    PositionChoice,
    PtychoPINNDataset,
    blocks_for,
    open_dataset,
)
from .product_h5 import (
    DEFAULT_COMPRESSION,
    Compression,
    Product,
    ProductMetadata,
    RawBundle,
    create_h5,
    read_product,
    write_diffraction_layout,
    write_pattern_stack,
    write_product,
    write_raw_bundle,
)

logger = logging.getLogger(__name__)

#: Stand-ins for physics the PtychoPINN format does not record. Every use is
#: warned about and written into the product's comments. Energy and distance
#: match Ptychodus's own defaults for SLAC NPZ files; the pixel size is the
#: PtychoPINN guide's default.
DEFAULTS: dict[str, float] = {
    'object_pixel_width_m': 5e-8,
    'object_pixel_height_m': 5e-8,
    'photon_energy_eV': 8000.0,
    'detector_distance_m': 0.75,
    'detector_pixel_width_m': 75e-6,
    'detector_pixel_height_m': 75e-6,
}
#: Quantities that are simply "not measured" when absent (Ptychodus uses 0 too).
ZERO_DEFAULTS = (
    'exposure_time_s',
    'probe_photon_count',
    'mass_attenuation_m2_per_kg',
    'tomography_angle_deg',
    'object_center_x_m',
    'object_center_y_m',
)
NOTE_PREFIX = '[ptychopinn-ptychodus]'
#: Patterns are converted in blocks of about this size.
BLOCK_BYTES = 16 << 20


@dataclass(frozen=True)
class ExportMeta:
    """What the user knows about the experiment; ``None`` means "not given"."""

    name: str | None = None
    comments: str | None = None
    detector_distance_m: float | None = None
    photon_energy_eV: float | None = None  # noqa: N815
    exposure_time_s: float | None = None
    probe_photon_count: float | None = None
    mass_attenuation_m2_per_kg: float | None = None
    tomography_angle_deg: float | None = None
    object_pixel_width_m: float | None = None
    object_pixel_height_m: float | None = None
    probe_pixel_width_m: float | None = None
    probe_pixel_height_m: float | None = None
    object_center_x_m: float | None = None
    object_center_y_m: float | None = None
    detector_pixel_width_m: float | None = None
    detector_pixel_height_m: float | None = None

    ALIASES: ClassVar[dict[str, tuple[str, ...]]] = {
        'object_pixel_size_m': ('object_pixel_width_m', 'object_pixel_height_m'),
        'probe_pixel_size_m': ('probe_pixel_width_m', 'probe_pixel_height_m'),
        'detector_pixel_size_m': ('detector_pixel_width_m', 'detector_pixel_height_m'),
        'probe_energy_eV': ('photon_energy_eV',),
        'mass_attenuation_m2_kg': ('mass_attenuation_m2_per_kg',),
        'detector_object_distance_m': ('detector_distance_m',),
    }

    @classmethod
    def from_mapping(cls, values: dict[str, Any], *, source: str = 'metadata') -> ExportMeta:
        """Build from a JSON-like mapping (field names or the aliases above)."""
        known = {f.name for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in values.items():
            targets = cls.ALIASES.get(key, (key,))
            if targets[0] not in known:
                raise InvalidInputError(source, f'unknown metadata key {key!r}')
            for target in targets:
                kwargs[target] = _check_value(source, key, value, text=target in ('name', 'comments'))
        return cls(**kwargs)

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> ExportMeta:
        try:
            text = Path(path).read_text(encoding='utf-8')
            values = json.loads(text)
        except OSError as exc:
            raise InvalidInputError(path, f'cannot read metadata file: {exc.strerror or exc}') from exc
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidInputError(path, f'not valid JSON: {exc}') from exc
        if not isinstance(values, dict):
            raise InvalidInputError(path, 'metadata JSON must be an object')
        return cls.from_mapping(values, source=str(path))

    def overlay(self, other: ExportMeta) -> ExportMeta:
        """Values of ``other`` where given, else ours."""
        updates = {k: v for k, v in asdict(other).items() if v is not None}
        return replace(self, **updates)


def _check_value(source: str, key: str, value: Any, *, text: bool) -> Any:
    if text:
        if not isinstance(value, str):
            raise InvalidInputError(source, f'{key} must be a string')
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise InvalidInputError(source, f'{key} must be a finite number, got {value!r}')
    return float(value)


@dataclass
class ResolvedMeta:
    """Every value decided, with a record of which ones are stand-ins."""

    values: dict[str, float]
    name: str
    comments: str
    defaulted: list[str] = field(default_factory=list)

    def grid(self, height: int, width: int) -> ObjectGrid:
        v = self.values
        return ObjectGrid(
            width_px=width,
            height_px=height,
            pixel_width_m=v['object_pixel_width_m'],
            pixel_height_m=v['object_pixel_height_m'],
            center_x_m=v['object_center_x_m'],
            center_y_m=v['object_center_y_m'],
        )

    def product_metadata(self, notes: list[str]) -> ProductMetadata:
        comments = self.comments
        if notes:
            lines = '\n'.join(f'{NOTE_PREFIX} {note}' for note in notes)
            comments = f'{comments}\n{lines}' if comments else lines
        v = self.values
        return ProductMetadata(
            name=self.name,
            comments=comments,
            detector_distance_m=v['detector_distance_m'],
            photon_energy_eV=v['photon_energy_eV'],
            probe_photon_count=v['probe_photon_count'],
            exposure_time_s=v['exposure_time_s'],
            mass_attenuation_m2_per_kg=v['mass_attenuation_m2_per_kg'],
            tomography_angle_deg=v['tomography_angle_deg'],
        )


def resolve_meta(
    dataset: PtychoPINNDataset, meta: ExportMeta, *, need_detector: bool = False
) -> ResolvedMeta:
    """Explicit values win, then the file's own keys, then documented defaults."""
    given = {k: v for k, v in asdict(meta).items() if v is not None}
    values: dict[str, float] = {}
    defaulted: list[str] = []
    for key in (*GEOMETRY_KEYS, 'object_center_x_m', 'object_center_y_m'):
        if key in given:
            values[key] = float(given[key])
        elif key in dataset.stored_values:
            values[key] = dataset.stored_values[key]
    for axis in ('width', 'height'):
        probe_key, object_key = f'probe_pixel_{axis}_m', f'object_pixel_{axis}_m'
        if object_key not in values:
            values[object_key] = DEFAULTS[object_key]
            defaulted.append(object_key)
        if probe_key not in values:
            values[probe_key] = values[object_key]
        elif values[probe_key] != values[object_key]:
            dataset.note(
                f'{probe_key}={values[probe_key]:g} differs from {object_key}='
                f'{values[object_key]:g}; PtychoPINN probes are sampled on the object grid'
            )
    for key in ('photon_energy_eV', 'detector_distance_m'):
        if key not in values:
            values[key] = DEFAULTS[key]
            defaulted.append(key)
    for key in ZERO_DEFAULTS:
        values.setdefault(key, 0.0)
    for key in ('object_pixel_width_m', 'object_pixel_height_m', 'probe_pixel_width_m',
                'probe_pixel_height_m', 'photon_energy_eV'):
        if values[key] <= 0:
            raise InvalidInputError(dataset.path, f'{key} must be positive, got {values[key]:g}')
    info = dataset.diffraction
    for axis in ('width', 'height'):
        # Far-field sampling ties the detector pixel to the object pixel; deriving it
        # (even from stand-in values) keeps Ptychodus at the product's object pixel size.
        key = f'detector_pixel_{axis}_m'
        if key in values or info is None:
            continue
        from_defaults = any(
            k in defaulted for k in ('photon_energy_eV', 'detector_distance_m', f'object_pixel_{axis}_m')
        )
        if values['detector_distance_m'] > 0:
            values[key] = derive_detector_pixel_m(
                values['photon_energy_eV'],
                values['detector_distance_m'],
                info.width if axis == 'width' else info.height,
                values[f'object_pixel_{axis}_m'],
            )
            if not from_defaults:
                dataset.note(f'{key}={values[key]:.6g} derived from energy, distance and object pixel')
        else:
            values[key] = DEFAULTS[key]
        if need_detector and (from_defaults or values['detector_distance_m'] <= 0):
            defaulted.append(key)
    for key in defaulted:
        dataset.note(f'{key} unknown; using default {values[key]:g} (pass it explicitly)')
    name = given.get('name') or dataset.stored_name or dataset.path.stem
    comments = given.get('comments')
    if comments is None:
        comments = dataset.stored_comments or ''
    return ResolvedMeta(values=values, name=name, comments=comments, defaulted=defaulted)


@dataclass
class ExportReport:
    """What an export did, for the CLI summary and for tests."""

    input_path: Path
    product_path: Path | None
    diffraction_path: Path | None
    num_positions: int
    object_shape: tuple[int, ...]
    probe_shape: tuple[int, ...]
    diffraction: str
    defaulted: list[str]
    notes: list[str]
    fraction_on_object: float | None

    def summary(self) -> str:
        parts = [
            f'{self.input_path.name}: {self.num_positions} positions',
            f'object {self.object_shape}', f'probe {self.probe_shape}', self.diffraction,
        ]
        if self.fraction_on_object is not None:
            parts.append(f'{100 * self.fraction_on_object:.1f}% of positions over the object')
        return ', '.join(parts)


def _object_and_grid(dataset: PtychoPINNDataset, resolved: ResolvedMeta) -> tuple[np.ndarray, ObjectGrid]:
    obj = dataset.object_guess
    if obj is None:
        assert dataset.probe is not None
        shape = placeholder_object_shape(dataset.x_px, dataset.y_px, dataset.probe.shape[-2:])
        dtype = dataset.probe.dtype
        obj = np.ones(shape, dtype=dtype)
        dataset.note(f'objectGuess missing; writing an all-ones {shape} placeholder with origin at pixel 0')
    return obj, resolved.grid(obj.shape[-2], obj.shape[-1])


def _positions_on_object(dataset: PtychoPINNDataset, obj: np.ndarray) -> float:
    share = fraction_inside(dataset.x_px, dataset.y_px, (obj.shape[-2], obj.shape[-1]))
    if share < 1.0:
        dataset.note(f'{100 * (1 - share):.1f}% of the scan positions lie outside the object array')
    return share


def describe_diffraction(dataset: PtychoPINNDataset) -> str:
    info = dataset.diffraction
    if info is None:
        return 'no diffraction stack'
    return (
        f'{info.key} {info.source_shape} {info.dtype} as {info.layout.value}, '
        f'{info.domain.value} ({info.domain_reason})'
    )


def export_product(
    input_npz: str | os.PathLike[str],
    output_product: str | os.PathLike[str] | None,
    meta: ExportMeta | None = None,
    *,
    include_raw: bool | None = None,
    diffraction_output: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    domain: Domain | str | None = None,
    positions: PositionChoice = 'actual',
    layout: Layout | str | None = None,
    compression: Compression = DEFAULT_COMPRESSION,
    compression_level: int | None = None,
    progress: Callable[[int], Callable[[int], None]] | None = None,
    dry_run: bool = False,
    block_bytes: int = BLOCK_BYTES,
) -> ExportReport:
    """Convert a PtychoPINN NPZ into a Ptychodus product (and/or diffraction file).

    ``include_raw=None`` means "bundle the diffraction if there is any": a
    dataset without patterns then only earns a warning, while an explicit
    ``True`` makes a missing stack an error. ``dry_run`` validates and reports
    without writing anything (the CLI's ``--inspect``).
    """
    meta = meta or ExportMeta()
    if not dry_run:
        for dest in (output_product, diffraction_output):
            if dest is not None:
                check_destination(dest, overwrite=overwrite)
    with open_dataset(
        input_npz, domain=domain, positions=positions, layout=layout,
        require_probe=output_product is not None,
        require_diffraction=bool(include_raw) or diffraction_output is not None,
    ) as dataset:
        resolved = resolve_meta(dataset, meta, need_detector=diffraction_output is not None)
        bundle = include_raw if include_raw is not None else True
        if bundle and dataset.diffraction is None and output_product is not None:
            dataset.note('no diffraction stack in the input; /raw_data holds positions only')
        product = assemble_product(dataset, resolved) if dataset.probe is not None else None
        share = None if product is None else float(product.extra_attrs['ptychopinn_fraction_on_object'])
        report = ExportReport(
            input_path=dataset.path,
            product_path=None if output_product is None else Path(output_product),
            diffraction_path=None if diffraction_output is None else Path(diffraction_output),
            num_positions=dataset.num_positions,
            object_shape=() if product is None else product.object.shape,
            probe_shape=() if dataset.probe is None else dataset.probe.shape,
            diffraction=describe_diffraction(dataset),
            defaulted=resolved.defaulted,
            notes=dataset.notes,
            fraction_on_object=share,
        )
        if dry_run:
            return report
        info = dataset.diffraction
        stack_bytes = 0 if info is None else 8 * info.num_patterns * info.height * info.width
        if output_product is not None and product is not None:
            check_size_limit(output_product, _product_bytes(product) + (stack_bytes if bundle else 0))
        if diffraction_output is not None:
            check_size_limit(diffraction_output, stack_bytes + (64 << 10))
        stacks = (output_product is not None and bundle) + (diffraction_output is not None)
        update = progress(info.num_patterns * stacks) if progress and info and stacks else None
        with ExitStack() as outputs:
            if output_product is not None:
                assert product is not None
                tmp = outputs.enter_context(atomic_output(output_product, overwrite=overwrite))
                _write_product_file(
                    tmp, dataset, product, bundle=bundle,
                    compression=compression, level=compression_level, progress=update,
                    block_bytes=block_bytes,
                )
            if diffraction_output is not None:
                tmp = outputs.enter_context(atomic_output(diffraction_output, overwrite=overwrite))
                _write_diffraction_file(
                    tmp, dataset, resolved, compression=compression,
                    level=compression_level, progress=update, block_bytes=block_bytes,
                )
    return report


def assemble_product(dataset: PtychoPINNDataset, resolved: ResolvedMeta) -> Product:
    """The product a PtychoPINN dataset stands for (SPEC section 2 geometry).

    Shared by the exporter and the Ptychodus plugin, so both place positions
    identically: indexes 0..M-1 (never ``scan_index``), metres by the
    ``(W - 1) / 2`` convention around the explicit object centre.
    """
    assert dataset.probe is not None
    obj, grid = _object_and_grid(dataset, resolved)
    share = _positions_on_object(dataset, obj)
    x_m, y_m = grid.pixels_to_metres(dataset.x_px, dataset.y_px)
    v = resolved.values
    return Product(
        metadata=resolved.product_metadata(dataset.notes),
        probe=dataset.probe,
        probe_pixel_width_m=v['probe_pixel_width_m'],
        probe_pixel_height_m=v['probe_pixel_height_m'],
        object=obj,
        grid=grid,
        position_indexes=np.arange(dataset.num_positions, dtype=np.int64),
        position_x_m=x_m,
        position_y_m=y_m,
        extra_attrs={
            'ptychopinn_ptychodus_version': __version__,
            'ptychopinn_source_file': dataset.path.name,
            'ptychopinn_positions': dataset.positions,
            'ptychopinn_defaulted': json.dumps(resolved.defaulted),
            'ptychopinn_fraction_on_object': share,
        },
    )


def _product_bytes(product: Product) -> int:
    """An upper bound of a product file's size without the pattern stack."""
    positions = product.position_x_m.nbytes * 8  # metres, pixels, nominal pixels, indexes...
    return product.probe.nbytes + product.object.nbytes + positions + (64 << 10)


def _write_product_file(
    tmp: Path,
    dataset: PtychoPINNDataset,
    product: Product,
    *,
    bundle: bool,
    compression: Compression,
    level: int | None,
    progress: Callable[[int], None] | None,
    block_bytes: int,
) -> None:
    assert dataset.probe is not None
    with create_h5(tmp) as h5:
        write_product(h5, product)
        if not bundle:
            return
        extras = {
            key: value
            for key, value in (
                ('xcoords_start', dataset.xcoords_start),
                ('ycoords_start', dataset.ycoords_start),
                ('bad_pixels', dataset.bad_pixels),
            )
            if value is not None
        }
        xcoords = dataset.xcoords_actual if dataset.xcoords_actual is not None else dataset.x_px
        ycoords = dataset.ycoords_actual if dataset.ycoords_actual is not None else dataset.y_px
        group = write_raw_bundle(
            h5, xcoords=xcoords, ycoords=ycoords, scan_index=dataset.scan_index,
            extras=extras, metadata=dataset.metadata,
        )
        if dataset.probe_source_shape != dataset.probe.shape:
            group.attrs['probeGuess_original_shape'] = np.asarray(dataset.probe_source_shape)
        info = dataset.diffraction
        if info is None:
            return
        amp_dtype = _bundle_dtype(info.dtype, info.domain)
        stack = write_pattern_stack(
            group, 'diffraction', info.nhw_shape, amp_dtype,
            dataset.iter_pattern_blocks(
                blocks_for(info, block_bytes), domain=Domain.AMPLITUDE, dtype=amp_dtype
            ),
            compression=compression, level=level, progress=progress,
        )
        stack.attrs.update({
            'axis_canonical': 'NHW',
            'original_axis_order': info.layout.value,
            'original_shape': np.asarray(info.source_shape),
            'measurement_domain': Domain.AMPLITUDE.value,
            'source_key': info.key,
            'source_domain': info.domain.value,
            'source_dtype': info.dtype.str,
            'domain_reason': info.domain_reason,
        })


def _bundle_dtype(source: np.dtype[Any], domain: Domain) -> np.dtype[Any]:
    """Amplitude dtype from which the source values come back exactly.

    Amplitudes are stored as they are; integer counts survive float32 square
    roots (recovered by rounding); float32 intensities need float64 roots.
    """
    if domain == Domain.AMPLITUDE:
        return source if source.kind == 'f' else np.dtype(np.float32)
    if source.kind == 'f':
        return np.dtype(np.float64)
    return np.dtype(np.float64 if source.itemsize > 2 else np.float32)


def _write_diffraction_file(
    tmp: Path,
    dataset: PtychoPINNDataset,
    resolved: ResolvedMeta,
    *,
    compression: Compression,
    level: int | None,
    progress: Callable[[int], None] | None,
    block_bytes: int,
) -> None:
    info = dataset.diffraction
    assert info is not None
    bad = dataset.bad_pixels
    if bad is None:
        bad = np.zeros((info.height, info.width), dtype=bool)
    out_dtype = info.output_dtype(Domain.INTENSITY)
    with create_h5(tmp) as h5:
        write_diffraction_layout(h5, num_patterns=info.num_patterns, bad_pixels=bad)
        stack = write_pattern_stack(
            h5, 'patterns', info.nhw_shape, out_dtype,
            dataset.iter_pattern_blocks(blocks_for(info, block_bytes), domain=Domain.INTENSITY),
            compression=compression, level=level, progress=progress,
        )
        stack.attrs['detector_pixel_width_m'] = resolved.values['detector_pixel_width_m']
        stack.attrs['detector_pixel_height_m'] = resolved.values['detector_pixel_height_m']
        stack.attrs['measurement_domain'] = Domain.INTENSITY.value
        stack.attrs['source_domain'] = info.domain.value
        stack.attrs['domain_reason'] = info.domain_reason


# ---------------------------------------------------------------------------
# product -> NPZ
# ---------------------------------------------------------------------------


@dataclass
class ImportReport:
    product_path: Path
    npz_path: Path
    num_positions: int
    keys: list[str]
    notes: list[str]

    def summary(self) -> str:
        keys = ', '.join(self.keys)
        names = f'{self.product_path.name} -> {self.npz_path.name}'
        return f'{names}: {self.num_positions} positions, keys {keys}'


def import_product(
    product_path: str | os.PathLike[str],
    output_npz: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    tolerance_px: float = 1e-6,
    check_terminates: bool = False,
) -> ImportReport:
    """Turn a product HDF5 (with or without ``/raw_data``) back into a PtychoPINN NPZ.

    Positions come back as object pixels through the same convention; when the
    bundle's exact pixel coordinates agree with the product's positions to
    ``tolerance_px`` they are used verbatim, so a round trip is bit-exact.
    ``check_terminates`` guards against corrupt files that hang libhdf5 (the CLI sets it).
    """
    check_destination(output_npz, overwrite=overwrite)
    product, bundle, h5 = read_product(Path(product_path), check_terminates=check_terminates)
    path = Path(product_path)
    with h5:
        raw = h5.get('raw_data')
        shape_attr = raw.attrs.get('probeGuess_original_shape') if isinstance(raw, h5py.Group) else None
        arrays, notes = npz_arrays_from_product(
            product,
            bundle,
            positions_kind=str(h5.attrs.get('ptychopinn_positions', 'actual')),
            probe_shape=None if shape_attr is None else tuple(int(n) for n in shape_attr),
            tolerance_px=tolerance_px,
        )
        with atomic_output(output_npz, overwrite=overwrite) as tmp:
            write_npz(tmp, arrays)
    for note in notes:
        logger.warning('%s: %s', path.name, note)
    return ImportReport(path, Path(output_npz), len(product.position_x_m), list(arrays), notes)


def npz_arrays_from_product(
    product: Product,
    bundle: RawBundle | None = None,
    *,
    positions_kind: str = 'actual',
    probe_shape: tuple[int, ...] | None = None,
    tolerance_px: float = 1e-6,
) -> tuple[dict[str, np.ndarray | StreamedArray], list[str]]:
    """PtychoPINN arrays (plus our geometry keys) for a product; shared with the plugin writer."""
    notes: list[str] = []
    order = np.argsort(product.position_indexes, kind='stable')
    x_px, y_px = product.grid.metres_to_pixels(product.position_x_m[order], product.position_y_m[order])
    arrays: dict[str, np.ndarray | StreamedArray] = {}
    x_exact: np.ndarray | None = None
    y_exact: np.ndarray | None = None
    if bundle is not None:
        if positions_kind == 'nominal':
            x_exact = bundle.extras.get('xcoords_start')
            y_exact = bundle.extras.get('ycoords_start')
        else:
            x_exact, y_exact = bundle.xcoords, bundle.ycoords
    if (
        x_exact is not None and y_exact is not None and x_exact.shape == x_px.shape
        and np.max(np.abs(x_exact - x_px), initial=0) <= tolerance_px
        and np.max(np.abs(y_exact - y_px), initial=0) <= tolerance_px
    ):
        x_px, y_px = x_exact, y_exact
    elif bundle is not None:
        notes.append('positions differ from /raw_data; using the product positions')
    if bundle is not None and positions_kind == 'nominal' and bundle.xcoords.shape == x_px.shape:
        arrays['xcoords'], arrays['ycoords'] = bundle.xcoords, bundle.ycoords
        arrays['xcoords_start'], arrays['ycoords_start'] = x_px, y_px
    else:
        arrays['xcoords'], arrays['ycoords'] = x_px, y_px
        starts = bundle.extras if bundle is not None else {}
        same_len = all(key in starts and starts[key].shape == x_px.shape
                       for key in ('xcoords_start', 'ycoords_start'))
        arrays['xcoords_start'] = starts['xcoords_start'] if same_len else x_px
        arrays['ycoords_start'] = starts['ycoords_start'] if same_len else y_px

    arrays['probeGuess'] = _probe_for_npz(product.probe, probe_shape, notes)
    obj = product.object
    if obj.ndim == 3:
        if obj.shape[0] > 1:
            notes.append(f'object has {obj.shape[0]} layers; PtychoPINN keeps layer 0 only')
        obj = obj[0]
    arrays['objectGuess'] = obj
    if bundle is not None and bundle.scan_index is not None and len(bundle.scan_index) == len(x_px):
        arrays['scan_index'] = bundle.scan_index
    else:
        arrays['scan_index'] = np.zeros(len(x_px), dtype=np.int64)
    if bundle is not None and 'bad_pixels' in bundle.extras:
        arrays['bad_pixels'] = bundle.extras['bad_pixels']
    if bundle is not None and bundle.diffraction is not None:
        key, stream = _restore_stack(bundle)
        arrays[key] = stream
        arrays[DOMAIN_KEY] = np.asarray(str(bundle.attrs.get('source_domain', 'amplitude')))
    if bundle is not None and bundle.metadata_json is not None:
        arrays['_metadata'] = np.asarray(bundle.metadata_json)
    arrays.update(_geometry_arrays(product))
    return arrays, notes


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


def _restore_stack(bundle: RawBundle) -> tuple[str, StreamedArray]:
    """The bundle's amplitudes back in the source key, domain and dtype."""
    dset: h5py.Dataset = bundle.diffraction
    attrs = bundle.attrs
    key = str(attrs.get('source_key', 'diffraction'))
    if key not in ('diffraction', 'diff3d'):
        key = 'diffraction'
    source_domain = str(attrs.get('source_domain', 'amplitude'))
    try:
        dtype = np.dtype(str(attrs.get('source_dtype', dset.dtype.str)))
    except TypeError:
        dtype = dset.dtype
    if dtype.kind not in 'iuf':
        dtype = dset.dtype
    rows = max(1, (64 << 20) // max(1, int(np.prod(dset.shape[1:])) * dset.dtype.itemsize))

    def blocks() -> Any:
        for start in range(0, dset.shape[0], rows):
            try:
                block = dset[start : start + rows]
            except (OSError, RuntimeError, ValueError) as exc:
                problem = f'cannot read /raw_data/diffraction: {exc}'
                raise InvalidInputError(dset.file.filename, problem) from exc
            if source_domain == Domain.INTENSITY.value:
                block = np.square(block.astype(np.float64))
                if dtype.kind in 'iu':
                    block = np.rint(block)
            yield start, block.astype(dtype)

    return key, StreamedArray(shape=tuple(dset.shape), dtype=dtype, blocks=blocks())


def _geometry_arrays(product: Product) -> dict[str, np.ndarray]:
    grid, meta = product.grid, product.metadata
    values = {
        'object_pixel_width_m': grid.pixel_width_m,
        'object_pixel_height_m': grid.pixel_height_m,
        'object_center_x_m': grid.center_x_m,
        'object_center_y_m': grid.center_y_m,
        'probe_pixel_width_m': product.probe_pixel_width_m,
        'probe_pixel_height_m': product.probe_pixel_height_m,
        'photon_energy_eV': meta.photon_energy_eV,
        'detector_distance_m': meta.detector_distance_m,
        'exposure_time_s': meta.exposure_time_s,
        'probe_photon_count': meta.probe_photon_count,
        'mass_attenuation_m2_per_kg': meta.mass_attenuation_m2_per_kg,
        'tomography_angle_deg': meta.tomography_angle_deg,
    }
    out = {key: np.asarray(value, dtype=np.float64) for key, value in values.items()}
    out[NAME_KEY] = np.asarray(meta.name)
    out[COMMENTS_KEY] = np.asarray(_strip_notes(meta.comments))
    return out


def _strip_notes(comments: str) -> str:
    return '\n'.join(line for line in comments.splitlines() if not line.startswith(NOTE_PREFIX))
