"""PtychoPINN dataset -> Ptychodus product HDF5 (and Ptychodus's assembled-diffraction HDF5)."""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .._version import __version__
from ..facts.errors import InvalidInputError
from ..facts.geometry import (
    ObjectGrid,
    PositionConvention,
    fraction_inside,
    placed_grid,
    placeholder_object_shape,
)
from ..facts.quantities import QUANTITIES, ExportMeta, in_place
from ..facts.stack import Domain, Layout, blocks_for, bundle_dtype
from ..npz.archive import MemberInfo, NpzArchive
from ..npz.dataset import (
    COMMENTS_KEY,
    CONVENTION_KEY,
    DOMAIN_KEY,
    NAME_KEY,
    PositionChoice,
    PtychoPINNDataset,
    open_dataset,
)
from ..npz.store import ArrayStore
from ..product.chunks import DEFAULT_COMPRESSION, Compression, write_pattern_stack
from ..product.layout import Product, create_h5, write_diffraction_layout, write_product, write_raw_bundle
from ..safeio.atomic import atomic_outputs, check_destination, check_distinct, check_size_limit
from ..safeio.blocks import CORRUPT_ERRORS, read_into
from .pairing import PairingOptions, attach_object
from .resolve import ResolvedMeta, resolve_meta

logger = logging.getLogger(__name__)
#: Patterns are converted in blocks of about this size.
BLOCK_BYTES = 16 << 20
#: ``progress(total)`` is called once the number of patterns is known and returns ``update(n)``.
ProgressFactory = Callable[[int], Callable[[int], None]]


@dataclass(frozen=True)
class ExportOptions:
    """How to convert, beyond the experiment's metadata.

    Parameters
    ----------
    include_raw: bundle the stack and positions in ``/raw_data``. ``None`` (default)
        bundles whatever there is; ``True`` also warns when there is no stack.
    diffraction_output: also write Ptychodus's assembled-diffraction HDF5 here.
    overwrite: replace existing outputs (never partially: outputs are published atomically).
    domain: what the stack holds (``'amplitude'``/``'intensity'``); ``None`` decides and logs.
    positions: ``'actual'`` (``xcoords``) or ``'nominal'`` (``xcoords_start``).
    layout: pattern axis (``'NHW'``, ``'HWN'``, ``'NHW1'``); ``None`` matches it to the positions.
    position_convention: ``'ptychopinn'`` or ``'identity'`` (see :mod:`geometry`); ``None``:
        the file's own ``position_convention`` key, else ``'ptychopinn'``.
    compression, compression_level: HDF5 filter for pattern stacks (gzip level 4 by default).
    progress: a :data:`ProgressFactory` (the CLI's progress bar), or ``None``.
    dry_run: validate and report without writing anything (the CLI's ``--inspect``).
    block_bytes: size of the blocks patterns are converted in (bounds memory).
    object_from: take the object from this reconstruction NPZ (PtychoPINN's ``recon.npz``,
        ``reconstructions.npz``, tike/pty-chi outputs), placed on the dataset's grid
        (see :mod:`.pairing`); positions, probe and stack stay the dataset's.
    object_key: its array (``'YY_pred'``, or ``'amp,phase'``); ``None`` picks a known key.
    object_placement: ``'stitched'``, ``'tike'``, ``'ptychi'`` or ``'dataset'``; ``None`` decides.
    stitch_crop_size: ``M`` PtychoPINN stitched with (``--stitch-crop-size``, default 20).
    tike_extra_padding: the tike script's ``--extra-padding`` (default 64).
    fsync: have the outputs on disk before they are published (the CLI's ``--fsync``;
        see :mod:`ptychopinn_ptychodus.safeio.atomic`: off, the publish is still atomic).
    """

    include_raw: bool | None = None
    diffraction_output: str | os.PathLike[str] | None = None
    overwrite: bool = False
    domain: Domain | str | None = None
    positions: PositionChoice = 'actual'
    layout: Layout | str | None = None
    position_convention: PositionConvention | str | None = None
    compression: Compression = DEFAULT_COMPRESSION
    compression_level: int | None = None
    progress: ProgressFactory | None = None
    dry_run: bool = False
    block_bytes: int = BLOCK_BYTES
    object_from: str | os.PathLike[str] | None = None
    object_key: str | None = None
    object_placement: str | None = None
    stitch_crop_size: int | None = None
    tike_extra_padding: int | None = None
    fsync: bool = False

    @classmethod
    def build(cls, options: ExportOptions | None, overrides: dict[str, Any]) -> ExportOptions:
        """``options`` with keyword overrides; an unknown keyword fails clearly."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise TypeError(
                f'unknown export option(s) {", ".join(unknown)}; known: {", ".join(sorted(known))}'
            )
        base = options or cls()
        return cls(**{**{f.name: getattr(base, f.name) for f in fields(cls)}, **overrides})


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
    position_convention: str = ''
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        parts = [
            f'{self.input_path.name}: {self.num_positions} positions',
            f'object {self.object_shape}',
            f'probe {self.probe_shape}',
            self.diffraction,
        ]
        if self.fraction_on_object is not None:
            parts.append(f'{100 * self.fraction_on_object:.1f}% of positions over the object')
        return ', '.join(parts)


def export_product(
    input_npz: str | os.PathLike[str],
    output_product: str | os.PathLike[str] | None,
    meta: ExportMeta | None = None,
    options: ExportOptions | None = None,
    **option_values: Any,
) -> ExportReport:
    """Convert a PtychoPINN NPZ into a Ptychodus product (and/or diffraction file).

    Parameters
    ----------
    input_npz: the PtychoPINN dataset.
    output_product: product HDF5 to write, or ``None`` (only a diffraction file, or a dry run).
    meta: what is known about the experiment (:class:`ExportMeta`); the rest is
        taken from the file's own keys or defaulted with a warning.
    options: an :class:`ExportOptions`; any of its fields may also be given as keywords.
    """
    opts = ExportOptions.build(options, option_values)
    sources = (Path(input_npz),) if opts.object_from is None else (Path(input_npz), Path(opts.object_from))
    check_distinct((output_product, opts.diffraction_output), inputs=sources)
    with open_dataset(
        input_npz,
        domain=opts.domain,
        positions=opts.positions,
        position_convention=opts.position_convention,
        layout=opts.layout,
        require_probe=output_product is not None,
    ) as dataset:
        if opts.diffraction_output is not None and dataset.diffraction is None:
            raise InvalidInputError(
                dataset.path,
                'has no diffraction stack (diffraction or diff3d), so no diffraction file can be written: '
                'drop --output-diffraction (a reconstruction-only file still gives a product)',
            )
        if opts.object_from is not None:
            attach_object(dataset, pairing_options(opts))
        return export_dataset(dataset, output_product, meta or ExportMeta(), opts)


def pairing_options(opts: ExportOptions) -> PairingOptions:
    """The pairing part of export options (``object_from`` must be set)."""
    assert opts.object_from is not None
    return PairingOptions.parse(
        opts.object_from,
        key=opts.object_key,
        placement=opts.object_placement,
        stitch_crop_px=opts.stitch_crop_size,
        tike_extra_px=opts.tike_extra_padding,
    )


def export_dataset(
    dataset: PtychoPINNDataset,
    output_product: str | os.PathLike[str] | None,
    meta: ExportMeta,
    opts: ExportOptions,
) -> ExportReport:
    """Write the outputs of an open dataset (from a file or from memory)."""
    check_distinct((output_product, opts.diffraction_output), inputs=(dataset.path,))
    if not opts.dry_run:
        for dest in (output_product, opts.diffraction_output):
            if dest is not None:
                check_destination(dest, overwrite=opts.overwrite)
    resolved = resolve_meta(dataset, meta, need_detector=opts.diffraction_output is not None)
    bundle = opts.include_raw is not False
    if bundle and dataset.diffraction is None and output_product is not None:
        dataset.note('no diffraction stack in the input; /raw_data holds positions, probe and object only')
    product = assemble_product(dataset, resolved) if dataset.probe is not None else None
    report = _report(dataset, output_product, opts, resolved, product)
    if opts.dry_run:
        return report  # --inspect: a probe/pattern size mismatch is only a warning (a dataset note)
    if output_product is not None:
        dataset.require_matching_probe()  # Ptychodus would reconstruct with this probe and these patterns
    _check_sizes(dataset, output_product, opts, product, bundle)
    info = dataset.diffraction
    stacks = (output_product is not None and bundle) + (opts.diffraction_output is not None)
    update = opts.progress(info.num_patterns * stacks) if opts.progress and info and stacks else None
    dests = [dest for dest in (output_product, opts.diffraction_output) if dest is not None]
    # published together or not at all
    with atomic_outputs(dests, overwrite=opts.overwrite, fsync=opts.fsync) as temps:
        if output_product is not None:
            assert product is not None
            _write_product_file(temps[0], dataset, product, bundle=bundle, opts=opts, progress=update)
        if opts.diffraction_output is not None:
            _write_diffraction_file(temps[-1], dataset, resolved, opts=opts, progress=update)
    return report


def _report(
    dataset: PtychoPINNDataset,
    output_product: str | os.PathLike[str] | None,
    opts: ExportOptions,
    resolved: ResolvedMeta,
    product: Product | None,
) -> ExportReport:
    info = dataset.diffraction
    return ExportReport(
        input_path=dataset.path,
        product_path=None if output_product is None else Path(output_product),
        diffraction_path=None if opts.diffraction_output is None else Path(opts.diffraction_output),
        num_positions=dataset.num_positions,
        object_shape=() if product is None else product.object.shape,
        probe_shape=() if dataset.probe is None else dataset.probe.shape,
        diffraction='no diffraction stack' if info is None else info.describe(),
        defaulted=resolved.defaulted,
        notes=dataset.notes,
        position_convention=dataset.describe_convention(),
        fraction_on_object=None
        if product is None
        else float(product.extra_attrs['ptychopinn_fraction_on_object']),
    )


def _check_sizes(
    dataset: PtychoPINNDataset,
    output_product: str | os.PathLike[str] | None,
    opts: ExportOptions,
    product: Product | None,
    bundle: bool,
) -> None:
    """Refuse up front when the file-size limit is smaller than an output could be."""
    info = dataset.diffraction
    stack_bytes = 0 if info is None else 8 * info.num_patterns * info.height * info.width
    if output_product is not None and product is not None:
        positions = product.position_x_m.nbytes * 8  # metres, pixels, nominal pixels, indexes...
        fixed = product.probe.nbytes + product.object.nbytes + positions + (64 << 10)
        check_size_limit(output_product, fixed + (stack_bytes if bundle else 0))
    if opts.diffraction_output is not None:
        check_size_limit(opts.diffraction_output, stack_bytes + (64 << 10))


def assemble_product(dataset: PtychoPINNDataset, resolved: ResolvedMeta) -> Product:
    """The product a PtychoPINN dataset stands for.

    Shared by the exporter and the Ptychodus plugin, so both place positions
    identically: indexes 0..M-1 (never ``scan_index``, which names the scan a
    point belongs to), metres from object pixels by :class:`geometry.ObjectGrid`
    around the explicit object centre, so Ptychodus never has to guess it.
    """
    assert dataset.probe is not None
    obj, frame = _object_and_grid(dataset, resolved)
    mapping = dataset.mapping()
    x_obj, y_obj = mapping.to_object_pixels(dataset.x_px, dataset.y_px)
    x_m, y_m = frame.pixels_to_metres(x_obj, y_obj)
    grid, placed_attrs = frame, {}
    placed = dataset.placed_object
    if placed is not None:  # an output's object, on the dataset's grid; positions stay the dataset's
        obj = placed.array
        grid = placed_grid(frame, obj.shape[-2:], placed.origin_x_px, placed.origin_y_px)
        x_obj, y_obj = x_obj - placed.origin_x_px, y_obj - placed.origin_y_px
        placed_attrs = {
            'ptychopinn_object_source_file': placed.source,
            'ptychopinn_object_source_key': placed.key,
            'ptychopinn_object_placement': placed.rule,
            'ptychopinn_object_origin_px': np.asarray([placed.origin_x_px, placed.origin_y_px]),
        }
    share = _positions_on_object(dataset, obj, x_obj, y_obj)
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
            'ptychopinn_positions': dataset.position_choice,
            'ptychopinn_defaulted': json.dumps(resolved.defaulted),
            'ptychopinn_fraction_on_object': share,
            'ptychopinn_position_convention': mapping.convention.value,
            'ptychopinn_position_offset_px': np.asarray([mapping.offset_x_px, mapping.offset_y_px]),
            **placed_attrs,
        },
    )


def _object_and_grid(dataset: PtychoPINNDataset, resolved: ResolvedMeta) -> tuple[np.ndarray, ObjectGrid]:
    obj = dataset.object_guess
    if obj is None:
        assert dataset.probe is not None
        shape = placeholder_object_shape(dataset.x_px, dataset.y_px, dataset.probe.shape[-2:])
        obj = np.ones(shape, dtype=dataset.probe.dtype)
        if dataset.placed_object is None:  # else only the frame the placed object is laid on
            dataset.note(
                f'objectGuess missing; writing an all-ones {shape} placeholder with origin at pixel 0'
            )
    return obj, resolved.grid(obj.shape[-2], obj.shape[-1])


def _positions_on_object(
    dataset: PtychoPINNDataset, obj: np.ndarray, x_obj: np.ndarray, y_obj: np.ndarray
) -> float:
    share = fraction_inside(x_obj, y_obj, (obj.shape[-2], obj.shape[-1]))
    if share < 1.0:
        dataset.note(f'{100 * (1 - share):.1f}% of the scan positions lie outside the object array')
    return share


def _write_product_file(
    tmp: Path,
    dataset: PtychoPINNDataset,
    product: Product,
    *,
    bundle: bool,
    opts: ExportOptions,
    progress: Callable[[int], None] | None,
) -> None:
    with create_h5(tmp) as h5:
        write_product(h5, product)
        if not bundle:
            return
        positions = dataset.positions
        extras = {
            key: value
            for key, value in (
                ('xcoords_start', positions.x_start),
                ('ycoords_start', positions.y_start),
                ('bad_pixels', dataset.bad_pixels),
            )
            if value is not None
        }
        group = write_raw_bundle(
            h5,
            xcoords=positions.x_actual if positions.x_actual is not None else dataset.x_px,
            ycoords=positions.y_actual if positions.y_actual is not None else dataset.y_px,
            scan_index=dataset.scan_index,
            extras=extras,
            metadata=dataset.metadata,
        )
        assert dataset.probe is not None
        if dataset.probe_source_shape != dataset.probe.shape:
            group.attrs['probeGuess_original_shape'] = np.asarray(dataset.probe_source_shape)
        if dataset.diffraction is not None:
            _write_bundled_stack(group, dataset, opts, progress)
        carry_unknown_arrays(group, dataset.store, opts.block_bytes)


#: Keys the exporter interprets (and writes back itself); everything else is carried verbatim.
INTERPRETED_KEYS = frozenset(
    {'xcoords', 'ycoords', 'xcoords_start', 'ycoords_start', 'scan_index', 'bad_pixels', 'probeGuess',
     'objectGuess', 'diffraction', 'diff3d', '_metadata', DOMAIN_KEY, NAME_KEY, COMMENTS_KEY, CONVENTION_KEY}
    | {quantity.name for quantity in QUANTITIES}
)


def carry_unknown_arrays(group: h5py.Group, store: ArrayStore, block_bytes: int) -> list[str]:
    """Copy every array we do not interpret into ``/raw_data`` as it is (dtype, shape, bytes).

    Lets NPZ -> product -> NPZ give back ``Y``, ``label``, ``ground_truth_patches``...
    Arrays larger than one block are copied row block by row block into a chunked
    dataset, so memory stays bounded. Numbers/booleans keep their HDF5 type; other
    dtypes (strings, datetimes) are stored as their bytes (``uint8``, one more axis)
    with ``numpy_dtype`` recording what they were. Object arrays are never unpickled:
    skipped with a warning naming the key. The carried keys are listed in the group's
    ``carried_keys`` attribute (JSON), so a reader tells them from ours.
    """
    carried: list[str] = []
    for key in sorted(store.members):
        if key in INTERPRETED_KEYS or key in group:
            continue
        info = store.info(key)
        if info.is_object:
            logger.warning(
                '%s: array %r holds Python objects; not carried (never unpickled)',
                store.path.name,
                key,
            )
            continue
        if info.dtype.kind in 'biufc':
            _carry_numbers(group, store, info, block_bytes)
        else:
            value = np.array(store.read(key), order='C')  # (ascontiguousarray makes 0-d arrays 1-d)
            raw = value.reshape(-1).view(np.uint8).reshape(*value.shape, value.dtype.itemsize)
            dset = group.create_dataset(key, data=raw)
            dset.attrs['numpy_dtype'] = value.dtype.str
        carried.append(key)
    group.attrs['carried_keys'] = json.dumps(carried)
    return carried


def _carry_numbers(group: h5py.Group, store: ArrayStore, info: MemberInfo, block_bytes: int) -> None:
    per_row = max(1, math.prod(info.shape[1:]) * info.dtype.itemsize)
    archive = store if isinstance(store, NpzArchive) else None  # arrays in memory are copied at once
    if archive is None or info.fortran_order or not info.shape or info.nbytes <= block_bytes:
        group.create_dataset(info.key, data=np.asarray(store.read(info.key)))
        return
    rows = max(1, block_bytes // per_row)
    dset = group.create_dataset(info.key, shape=info.shape, dtype=info.dtype, chunks=True)
    try:
        with archive.open_data(info.key) as stream:
            for start in range(0, info.shape[0], rows):
                block = np.empty((min(rows, info.shape[0] - start), *info.shape[1:]), dtype=info.dtype)
                read_into(stream, block)
                dset[start : start + len(block)] = block
    except CORRUPT_ERRORS as exc:
        problem = f'array {info.key!r} cannot be read (corrupt archive?): {exc}'
        raise InvalidInputError(store.path, problem) from exc


def _write_bundled_stack(
    group: h5py.Group, dataset: PtychoPINNDataset, opts: ExportOptions, progress: Callable[[int], None] | None
) -> None:
    """``/raw_data/diffraction``: the stack as given (its domain and dtype), in canonical NHW order.

    Amplitudes stay amplitudes, photon counts stay integer counts: nothing is
    lost and nothing is bigger than the source. ``measurement_domain`` says which.
    """
    info = dataset.diffraction
    assert info is not None
    dtype = bundle_dtype(info.dtype, info.domain)
    stack = write_pattern_stack(
        group,
        'diffraction',
        info.nhw_shape,
        dtype,
        dataset.iter_pattern_blocks(blocks_for(info, opts.block_bytes), domain=info.domain, dtype=dtype),
        compression=opts.compression,
        level=opts.compression_level,
        progress=progress,
        writeback=opts.fsync,
    )
    stack.attrs.update(
        {
            'axis_canonical': 'NHW',
            'original_axis_order': info.layout.value,
            'original_shape': np.asarray(info.source_shape),
            'measurement_domain': info.domain.value,
            'source_key': info.key,
            'source_domain': info.domain.value,
            'source_dtype': info.dtype.str,
            'domain_reason': info.domain_reason,
        }
    )


def _write_diffraction_file(
    tmp: Path,
    dataset: PtychoPINNDataset,
    resolved: ResolvedMeta,
    *,
    opts: ExportOptions,
    progress: Callable[[int], None] | None,
) -> None:
    info = dataset.diffraction
    assert info is not None
    bad = dataset.bad_pixels
    if bad is None:
        bad = np.zeros((info.height, info.width), dtype=bool)
    with create_h5(tmp) as h5:
        write_diffraction_layout(h5, num_patterns=info.num_patterns, bad_pixels=bad)
        stack = write_pattern_stack(
            h5,
            'patterns',
            info.nhw_shape,
            info.output_dtype(Domain.INTENSITY),
            dataset.iter_pattern_blocks(blocks_for(info, opts.block_bytes), domain=Domain.INTENSITY),
            compression=opts.compression,
            level=opts.compression_level,
            progress=progress,
            writeback=opts.fsync,
        )
        for quantity in in_place('patterns'):
            for attr in quantity.attrs:
                stack.attrs[attr] = resolved.values[quantity.name]
        stack.attrs['measurement_domain'] = Domain.INTENSITY.value
        stack.attrs['source_domain'] = info.domain.value
        stack.attrs['domain_reason'] = info.domain_reason
