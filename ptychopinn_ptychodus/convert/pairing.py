"""A reconstruction written without positions, paired with the dataset it came from.

PtychoPINN's inference and comparison scripts write only an object
(``recon.npz`` ``YY_pred``, ``reconstructions.npz`` ``ptychopinn_complex``,
``tike_reconstruction.npz`` / ``ptychi_reconstruction.npz``
``reconstructed_object``). The positions, probe and stack come from the dataset;
the object is placed on the dataset's grid the way its writer laid it out
(:func:`geometry.placement_origin_px`, the one place that knows the rules).
The output file is read with our own NPZ reader: never unpickled.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..facts.errors import InvalidInputError
from ..facts.geometry import (
    DEFAULT_STITCH_CROP_PX,
    DEFAULT_TIKE_EXTRA_PX,
    ObjectPlacement,
    PlacedObject,
    placement_origin_px,
)
from ..npz.archive import NpzArchive
from ..npz.dataset import PtychoPINNDataset

#: Complex keys taken without ``--object-key``, in this order, with the placement their writer implies
#: (``None``: told apart by the file's other keys, see :func:`_default_placement`).
KNOWN_KEYS: tuple[tuple[str, ObjectPlacement | None], ...] = (
    ('YY_pred', ObjectPlacement.STITCHED),  # ptycho/workflows/grid_lines_workflow.py save_recon_artifact
    ('ptychopinn_complex', ObjectPlacement.STITCHED),  # scripts/compare_models.py reconstructions.npz
    ('reconstructed_object', None),  # run_tike_reconstruction.py / ptychi_reconstruct_tike.py
)
#: Amplitude/phase pairs, used when the complex array is absent (same placements).
AMP_PHASE_KEYS: tuple[tuple[str, str, ObjectPlacement], ...] = (
    ('amp', 'phase', ObjectPlacement.STITCHED),
    ('ptychopinn_amplitude', 'ptychopinn_phase', ObjectPlacement.STITCHED),
)
#: Keys whose writer (compare_models.py) stitched them like ``ptychopinn_complex``.
STITCHED_KEYS = frozenset({'baseline_complex', 'baseline_amplitude', 'ptychopinn_amplitude', 'amp'})


@dataclass(frozen=True)
class PairingOptions:
    """Where the object comes from and how it was laid out.

    Parameters
    ----------
    source: the reconstruction NPZ.
    key: the array to take (complex); ``None`` picks a known key (:data:`KNOWN_KEYS`),
        or an ``<amp>``/``<phase>`` pair; ``'AMP,PHASE'`` names a pair explicitly.
    placement: :class:`ObjectPlacement`; ``None`` decides from the key and the file.
    stitch_crop_px: ``M`` of PtychoPINN's ``reassemble_position`` (``--stitch-crop-size``, 20).
    tike_extra_px: ``--extra-padding`` of ``run_tike_reconstruction.py`` (64).
    """

    source: Path
    key: str | None = None
    placement: ObjectPlacement | None = None
    stitch_crop_px: int = DEFAULT_STITCH_CROP_PX
    tike_extra_px: int = DEFAULT_TIKE_EXTRA_PX

    @classmethod
    def parse(
        cls,
        source: str | os.PathLike[str],
        *,
        key: str | None = None,
        placement: str | None = None,
        stitch_crop_px: int | str | None = None,
        tike_extra_px: int | str | None = None,
        origin: str | os.PathLike[str] | None = None,
    ) -> PairingOptions:
        """Options from user-given values (CLI, sidecar, API); a bad one names ``origin`` (or ``source``)."""
        where = origin or source
        if placement is not None and placement not in {p.value for p in ObjectPlacement}:
            allowed = ', '.join(p.value for p in ObjectPlacement)
            raise InvalidInputError(where, f'object_placement={placement!r} is not one of {allowed}')
        sizes: dict[str, int] = {}
        for name, value, default in (
            ('stitch_crop_size', stitch_crop_px, DEFAULT_STITCH_CROP_PX),
            ('tike_extra_padding', tike_extra_px, DEFAULT_TIKE_EXTRA_PX),
        ):
            try:
                sizes[name] = default if value is None else int(value)
            except (TypeError, ValueError):
                raise InvalidInputError(where, f'{name}={value!r} is not a whole number') from None
            if sizes[name] < 0 or (name == 'stitch_crop_size' and sizes[name] < 2):
                raise InvalidInputError(where, f'{name}={value!r} is too small')
        return cls(
            source=Path(source),
            key=key or None,
            placement=None if placement is None else ObjectPlacement(placement),
            stitch_crop_px=sizes['stitch_crop_size'],
            tike_extra_px=sizes['tike_extra_padding'],
        )


def attach_object(dataset: PtychoPINNDataset, options: PairingOptions) -> PlacedObject:
    """Read the output's object, place it on ``dataset``'s grid and record it on the dataset."""
    with NpzArchive(options.source) as archive:
        obj, key, implied = _read_object(archive, options)
    placement = options.placement or implied
    if placement is None:
        raise InvalidInputError(
            options.source,
            f'cannot tell how {key!r} was laid out (not a known writer); choose --object-placement '
            f'({", ".join(p.value for p in ObjectPlacement)})',
        )
    x, y = _writer_positions(dataset)
    probe_hw = _probe_hw(dataset)
    if placement == ObjectPlacement.STITCHED and options.stitch_crop_px > min(probe_hw):
        raise InvalidInputError(
            options.source, f'stitch crop size {options.stitch_crop_px} exceeds the patch size {probe_hw}'
        )
    found = placement_origin_px(
        placement,
        x,
        y,
        probe_hw,
        (int(obj.shape[0]), int(obj.shape[1])),
        stitch_crop_px=options.stitch_crop_px,
        tike_extra_px=options.tike_extra_px,
    )
    if found.expected_shape is not None and tuple(obj.shape) != found.expected_shape:
        problem = _shape_problem(key, obj.shape, found.expected_shape, placement)
        raise InvalidInputError(options.source, problem)
    placed = PlacedObject(obj, found.origin_x_px, found.origin_y_px, options.source.name, key, found.rule)
    _require_coverage(dataset, placed, options.source)
    dataset.placed_object = placed
    dataset.note(placed.describe())
    return placed


def _shape_problem(
    key: str, shape: tuple[int, ...], expected: tuple[int, int], placement: ObjectPlacement
) -> str:
    hint = {
        ObjectPlacement.STITCHED: 'another --stitch-crop-size, or a dataset holding exactly the scan '
        'positions that were stitched',
        ObjectPlacement.TIKE: 'another --tike-extra-padding (--force-square/--min-canvas-size runs are '
        'not supported), or the dataset the reconstruction ran on',
        ObjectPlacement.PTYCHI: 'the dataset the reconstruction ran on',
        ObjectPlacement.DATASET: 'the dataset the object belongs to',
    }[placement]
    return (
        f'{key} is {shape[0]}x{shape[1]} but a {placement.value} object for this scan would be '
        f'{expected[0]}x{expected[1]}: not this dataset\'s reconstruction? (try {hint})'
    )


def _writer_positions(dataset: PtychoPINNDataset) -> tuple[np.ndarray, np.ndarray]:
    """The positions PtychoPINN's writers used: ``xcoords``/``ycoords`` (nominal only if that is all)."""
    positions = dataset.positions
    if not positions.present:
        raise InvalidInputError(dataset.path, 'has no scan positions to place a reconstruction with')
    if positions.x_actual is not None and positions.y_actual is not None:
        return positions.x_actual, positions.y_actual
    return dataset.x_px, dataset.y_px


def _probe_hw(dataset: PtychoPINNDataset) -> tuple[int, int]:
    if dataset.probe is not None:
        return int(dataset.probe.shape[-2]), int(dataset.probe.shape[-1])
    if dataset.diffraction is not None:
        return dataset.diffraction.height, dataset.diffraction.width
    raise InvalidInputError(dataset.path, 'has neither a probe nor patterns to tell the patch size')


def _require_coverage(dataset: PtychoPINNDataset, placed: PlacedObject, source: Path) -> None:
    """Refuse an object that does not hold every probe centre of the scan."""
    x_obj, y_obj = dataset.mapping().to_object_pixels(dataset.x_px, dataset.y_px)
    cols = x_obj - placed.origin_x_px
    rows = y_obj - placed.origin_y_px
    height, width = placed.array.shape
    outside = (cols < -0.5) | (cols > width - 0.5) | (rows < -0.5) | (rows > height - 0.5)
    if outside.any():
        raise InvalidInputError(
            source,
            f'{placed.key} ({height}x{width}) is smaller than the scan needs: {int(outside.sum())} of '
            f'{outside.size} probe positions of {dataset.path.name} fall outside it '
            f'when placed as {placed.rule}',
        )


def _read_object(
    archive: NpzArchive, options: PairingOptions
) -> tuple[np.ndarray, str, ObjectPlacement | None]:
    """The chosen array as a 2-D complex object, its key, and the placement its writer implies."""
    members = archive.keys()
    if options.key is not None:
        if ',' in options.key:
            amp_key, phase_key = (part.strip() for part in options.key.split(',', 1))
            obj = _amp_phase(archive, amp_key, phase_key)
            implied = ObjectPlacement.STITCHED if amp_key in STITCHED_KEYS else None
            return obj, f'{amp_key},{phase_key}', implied
        _require_key(archive, options.key)
        implied = dict(KNOWN_KEYS).get(options.key)
        if options.key in STITCHED_KEYS:
            implied = ObjectPlacement.STITCHED
        if options.key == 'reconstructed_object':
            implied = _default_placement(archive)
        return _complex(archive, options.key), options.key, implied
    for key, implied in KNOWN_KEYS:
        if key in archive and not archive.info(key).is_object:
            if implied is None:
                implied = _default_placement(archive)
            return _complex(archive, key), key, implied
    for amp_key, phase_key, implied in AMP_PHASE_KEYS:
        if amp_key in archive and phase_key in archive:
            return _amp_phase(archive, amp_key, phase_key), f'{amp_key},{phase_key}', implied
    candidates = [
        key for key in members
        if not archive.info(key).is_object and archive.info(key).dtype.kind == 'c'
        and len([n for n in archive.info(key).shape if n > 1]) == 2
    ]
    listing = ', '.join(members) or 'none'
    if len(candidates) == 1:
        return _complex(archive, candidates[0]), candidates[0], None
    if candidates:
        raise InvalidInputError(
            archive.path,
            f'more than one object in it ({", ".join(candidates)}); choose one with --object-key',
        )
    raise InvalidInputError(
        archive.path,
        f'holds no object (keys: {listing}); expected one of '
        f'{", ".join(k for k, _ in KNOWN_KEYS)} or a complex 2-D array (choose with --object-key)',
    )


def _default_placement(archive: NpzArchive) -> ObjectPlacement | None:
    """``reconstructed_object``: pty-chi's script adds ``algorithm='pty-chi'``; tike's adds ``metadata``."""
    if 'algorithm' in archive and archive.info('algorithm').dtype.kind == 'U':
        algorithm = str(archive.read('algorithm').reshape(()))
        if algorithm == 'pty-chi':
            return ObjectPlacement.PTYCHI
    if 'metadata' in archive and archive.info('metadata').is_object and 'algorithm' not in archive:
        return ObjectPlacement.TIKE  # run_tike_reconstruction.py: a pickled dict, never unpickled here
    return None


def _require_key(archive: NpzArchive, key: str) -> None:
    if key not in archive:
        raise InvalidInputError(
            archive.path, f'has no key {key!r} (keys: {", ".join(archive.keys()) or "none"})'
        )
    if archive.info(key).is_object:
        raise InvalidInputError(
            archive.path, f'{key} holds Python objects (None?), not an array; never unpickled'
        )


def _squeeze(archive: NpzArchive, key: str, value: np.ndarray) -> np.ndarray:
    """Singleton axes go ((1, H, W), (H, W, 1), (1, H, W, 1) -> (H, W)); anything else is refused."""
    squeezed = np.squeeze(value)
    if squeezed.ndim != 2:
        raise InvalidInputError(
            archive.path,
            f'{key} has shape {value.shape}: expected one 2-D object (singleton axes are dropped; '
            'several objects or slices are not supported)',
        )
    return squeezed


def _complex(archive: NpzArchive, key: str) -> np.ndarray:
    info = archive.info(key)
    if info.dtype.kind not in 'cf':
        raise InvalidInputError(archive.path, f'{key} has dtype {info.dtype}; expected a complex object')
    value = _squeeze(archive, key, archive.read(key))
    if value.dtype.kind == 'f':
        raise InvalidInputError(
            archive.path, f'{key} is real ({info.dtype}); give the complex array or an amplitude,phase pair'
        )
    out = np.ascontiguousarray(value, dtype=np.complex128 if value.dtype == np.complex128 else np.complex64)
    if not np.isfinite(out).all():
        raise InvalidInputError(archive.path, f'{key} holds NaN or infinite values')
    return out


def _amp_phase(archive: NpzArchive, amp_key: str, phase_key: str) -> np.ndarray:
    arrays = []
    for key in (amp_key, phase_key):
        _require_key(archive, key)
        if archive.info(key).dtype.kind not in 'iuf':
            problem = f'{key} has dtype {archive.info(key).dtype}; expected real numbers'
            raise InvalidInputError(archive.path, problem)
        arrays.append(_squeeze(archive, key, archive.read(key)).astype(np.float64))
    amp, phase = arrays
    if amp.shape != phase.shape:
        problem = f'{amp_key} {amp.shape} and {phase_key} {phase.shape} differ in shape'
        raise InvalidInputError(archive.path, problem)
    out = (amp * np.exp(1j * phase)).astype(np.complex64)
    if not np.isfinite(out).all():
        raise InvalidInputError(archive.path, f'{amp_key}/{phase_key} hold NaN or infinite values')
    return out
