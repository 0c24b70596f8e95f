"""``check``: what Ptychodus will see in a PtychoPINN NPZ or a product, and what is wrong with it.

Wrong geometry is silent everywhere else: a file whose positions follow the
identity convention, or a product whose metres are not centred on the object,
opens without a word and reconstructs misplaced. This module reads a file the
way our readers do (reusing their interpretation: :func:`open_with_sidecar`,
:func:`read_product`, :func:`normalize_product`, :func:`resolve_meta`), names
its producer from the keys and attributes that producer writes, and lists
findings -- each with a severity, what was found, why it matters and the fix.

Severities: ``info`` (a fact or a decision), ``warning`` (a stand-in default or
an approximation: the picture is right, a number may not be) and ``problem``
(Ptychodus or PtychoPINN will misread the file). A file is clean when it has no
problem. :func:`fix_file` writes a corrected copy where the fix is known.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..facts.errors import InvalidInputError, OutputError, PtychoPINNError
from ..facts.geometry import PositionConvention, PositionMapping
from ..facts.quantities import ExportMeta
from ..facts.stack import Domain, blocks_for, convert_domain
from ..npz.archive import StreamedArray, write_npz
from ..npz.dataset import (
    CONVENTION_KEY,
    DOMAIN_KEY,
    OUR_METADATA_KEY,
    PtychoPINNDataset,
    our_metadata,
)
from ..npz.store import ArchiveStore
from ..product.layout import Product, RawBundle, read_product
from ..safeio.atomic import atomic_output, check_destination
from . import placement
from .importer import is_ptychopinn_export, metadata_with_ours, normalize_product, read_rows
from .resolve import default_hint, resolve_meta
from .sidecar import find_sidecar, open_with_sidecar, sidecar_path

logger = logging.getLogger(__name__)

INFO, WARNING, PROBLEM = 'info', 'warning', 'problem'
#: Keys ``ptychodus.api.io.save_ptychopinn_training_data`` (Ptychodus 1.7.0) writes, and no others.
PTYCHODUS_EXPORT_KEYS = frozenset(
    {'xcoords', 'ycoords', 'xcoords_start', 'ycoords_start', 'diff3d', 'bad_pixels', 'probeGuess',
     'objectGuess', 'scan_index'}
)
#: Patterns handed to the placement test at most (evenly spaced over the scan).
PLACEMENT_PATTERNS = 256
#: Finding codes that :func:`fix_file` knows how to repair.
NPZ_FIXES = frozenset({'identity-positions', 'probe-3d', 'counts-as-amplitude-key', 'placement-disagrees'})
PRODUCT_FIXES = frozenset({'uncentred-metres', 'indexes-not-positions'})
PRODUCT_SUFFIXES = ('.h5', '.hdf5', '.hdf', '.ptychodus')
#: Pixel-size quantities reported (and which are defaults).
PIXEL_QUANTITIES = (
    'object_pixel_width_m', 'object_pixel_height_m', 'probe_pixel_width_m', 'probe_pixel_height_m',
    'detector_pixel_width_m', 'detector_pixel_height_m', 'photon_energy_eV', 'detector_distance_m',
)


@dataclass
class Finding:
    """One thing found: how bad, what, why it matters, and how to fix it (``None``: nothing to do)."""

    severity: str
    code: str
    what: str
    why: str = ''
    fix: str | None = None


@dataclass
class FileReport:
    """What Ptychodus will see in one file, and what is wrong with it."""

    path: str
    kind: str  # 'npz' | 'product' | 'unreadable'
    producer: str = 'unknown'
    producer_why: str = ''
    shapes: dict[str, list[int] | None] = field(default_factory=dict)
    facts: dict[str, str] = field(default_factory=dict)
    pixel_sizes: list[dict[str, Any]] = field(default_factory=list)
    on_object: float | None = None
    physics: dict[str, Any] | None = None
    findings: list[Finding] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not any(f.severity == PROBLEM for f in self.findings)

    @property
    def fixable(self) -> bool:
        """A problem :func:`fix_file` knows how to repair is among the findings."""
        known = NPZ_FIXES if self.kind == 'npz' else PRODUCT_FIXES
        return any(f.severity == PROBLEM and f.code in known for f in self.findings)

    def add(self, severity: str, code: str, what: str, why: str = '', fix: str | None = None) -> None:
        self.findings.append(Finding(severity, code, what, why, fix))

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out['clean'] = self.clean
        out['fixable'] = self.fixable
        return out


@contextmanager
def _quiet_package() -> Iterator[None]:
    """Our readers log every note as a warning; the report carries them, so do not print them twice."""
    package = logging.getLogger('ptychopinn_ptychodus')
    previous = package.level
    package.setLevel(logging.ERROR)
    try:
        yield
    finally:
        package.setLevel(previous)


def check_file(path: str | os.PathLike[str], *, check_terminates: bool = False,
               placement_test: bool = True) -> FileReport:
    """Read one file as our readers (and Ptychodus's own) would, and report.

    Parameters
    ----------
    path: a PtychoPINN ``.npz`` or a product HDF5 (ours, Ptychodus's, PtychoPINN exporter's).
    check_terminates: walk an HDF5 file's metadata in a watchdog child first (the CLI sets it).
    placement_test: run the physics placement test (convert/placement.py) where it applies.
    """
    file_path = Path(path)
    kind = 'product' if _looks_like_hdf5(file_path) else 'npz'
    report = FileReport(path=str(file_path), kind=kind)
    with _quiet_package():
        try:
            if kind == 'npz':
                _check_npz(file_path, report, placement_test)
            else:
                _check_product(file_path, report, check_terminates, placement_test)
        except PtychoPINNError as exc:
            report.kind = 'unreadable' if report.producer == 'unknown' else report.kind
            report.add(PROBLEM, 'unreadable', f'cannot be read: {exc.problem}',
                       'our readers (and so Ptychodus through our plugin) refuse it')
    return report


def _looks_like_hdf5(path: Path) -> bool:
    try:
        with path.open('rb') as handle:
            return handle.read(8) == b'\x89HDF\r\n\x1a\n'
    except OSError:
        return path.suffix.lower() in PRODUCT_SUFFIXES


# ---------------------------------------------------------------------------
# NPZ
# ---------------------------------------------------------------------------


def _npz_keys(path: Path) -> list[str]:
    with ArchiveStore(path) as store:
        return list(store.keys())


def _check_npz(path: Path, report: FileReport, placement_test: bool) -> None:
    keys = _npz_keys(path)
    if not ({'xcoords', 'ycoords', 'probeGuess', 'diffraction', 'diff3d'} & set(keys)):
        report.producer = 'not a PtychoPINN layout'
        report.producer_why = f'keys {", ".join(sorted(keys)) or "(none)"}'
        report.add(
            PROBLEM, 'not-ptychopinn',
            f'not a PtychoPINN layout (keys: {", ".join(sorted(keys)) or "none"})',
            'a PtychoPINN NPZ has diffraction or diff3d, probeGuess, objectGuess and xcoords/ycoords',
            'convert it with the tool that wrote it, or open it with a Ptychodus reader for its own format',
        )
        return
    sidecar = find_sidecar(path)
    # require_probe=True is how open_with_sidecar loads probe and object; only ask it when there is one
    dataset, meta = open_with_sidecar(path, require_probe='probeGuess' in keys)
    with dataset:
        if sidecar is not None:
            report.facts['sidecar'] = f'{sidecar.name} (reader options and metadata taken from it)'
        _npz_producer(dataset, keys, report)
        _npz_shapes(dataset, report)
        _npz_domain(dataset, report)
        _npz_convention(dataset, report)
        _npz_pixels(dataset, meta, report)
        _npz_pairing(dataset, report)
        _npz_on_object(dataset, report)
        if placement_test:
            _npz_placement(dataset, report)
        for note in dict.fromkeys(dataset.notes):  # the reader's own decisions, once each
            if 'unknown; using the default' not in note:  # reported with the pixel sizes
                report.add(INFO, 'reader-note', note)


def _is_ptychodus_export(dataset: PtychoPINNDataset, keys: list[str]) -> str | None:
    """Why this NPZ is ``save_ptychopinn_training_data``'s output, or ``None``."""
    if set(keys) != PTYCHODUS_EXPORT_KEYS:
        return None
    shape = dataset.probe_source_shape
    pos = dataset.positions
    same_start = (pos.x_start is not None and pos.y_start is not None and pos.x_actual is not None
                  and pos.y_actual is not None and np.array_equal(pos.x_start, pos.x_actual)
                  and np.array_equal(pos.y_start, pos.y_actual))
    zeros = dataset.scan_index is not None and not np.any(dataset.scan_index)
    if shape is None or len(shape) != 3 or not same_start or not zeros:
        return None
    return ('exactly the keys of ptychodus.api.io.save_ptychopinn_training_data, 3-D probeGuess '
            f'{tuple(shape)}, xcoords_start == xcoords, scan_index all 0, no _metadata')


def _npz_producer(dataset: PtychoPINNDataset, keys: list[str], report: FileReport) -> None:
    ours = our_metadata(dataset)
    ptychodus = _is_ptychodus_export(dataset, keys)
    if ours or any(key in keys for key in (CONVENTION_KEY, DOMAIN_KEY)):
        report.producer = 'ptychopinn-ptychodus'
        report.producer_why = (f'_metadata["{OUR_METADATA_KEY}"] holds our keys' if ours
                               else 'top-level keys of our 0.2.0 writer')
    elif ptychodus is not None:
        report.producer = "Ptychodus's own PtychoPINN export"
        report.producer_why = ptychodus
    elif all(key in keys for key in ('probeName', 'label')):
        report.producer = 'ptycho_torch datagen'
        report.producer_why = 'keys probeName and label (ptycho_torch/datagen/datagen.py)'
    elif dataset.diffraction is None:
        report.producer = 'PtychoPINN reconstruction (no diffraction stack)'
        report.producer_why = 'probeGuess/objectGuess and positions, no diffraction or diff3d'
    else:
        report.producer = 'PtychoPINN NPZ'
        report.producer_why = f'{dataset.diffraction.key}, probeGuess and xcoords/ycoords'


def _npz_shapes(dataset: PtychoPINNDataset, report: FileReport) -> None:
    info = dataset.diffraction
    report.shapes = {
        'diffraction': None if info is None else list(info.source_shape),
        'probe': None if dataset.probe_source_shape is None else list(dataset.probe_source_shape),
        'object': None if dataset.object_guess is None else list(dataset.object_guess.shape),
        'positions': [dataset.num_positions],
    }
    if info is not None:
        report.facts['diffraction'] = (f'{info.key} {info.source_shape} {info.dtype} read as '
                                       f'{info.layout.value}: {info.num_patterns} patterns of '
                                       f'{info.height}x{info.width}')
    else:
        report.add(INFO, 'no-stack', 'no diffraction stack: Ptychodus can open the probe, object and '
                   'positions, not reconstruct from this file alone')
    shape = dataset.probe_source_shape
    if dataset.probe is None:
        report.add(WARNING, 'no-probe', 'no probeGuess: the file opens as diffraction data only')
    elif shape is not None and len(shape) != 2:
        modes = dataset.probe.shape[0] if dataset.probe.ndim == 3 else 1
        what = f'probeGuess has shape {tuple(shape)} ({modes} mode{"s" if modes > 1 else ""})'
        report.add(PROBLEM, 'probe-3d', what,
                   "PtychoPINN's RawData asserts a 2-D probeGuess and refuses this file; Ptychodus "
                   'reads it through our plugin',
                   'check --fix OUT writes a 2-D probeGuess' + (' (the first mode)' if modes > 1 else ''))
    mismatch = dataset.probe_mismatch()
    if mismatch is not None:
        report.add(PROBLEM, 'probe-size', mismatch, 'Ptychodus cannot illuminate the patterns with it')
    if dataset.object_guess is None:
        report.add(INFO, 'no-object', 'no objectGuess: our reader gives Ptychodus an all-ones object '
                   'covering every probe window, origin at pixel 0')
    elif placement._is_constant(dataset.object_guess):
        report.add(INFO, 'placeholder-object',
                   'objectGuess is constant (a placeholder, not a reconstruction)')


def _npz_domain(dataset: PtychoPINNDataset, report: FileReport) -> None:
    info = dataset.diffraction
    if info is None:
        return
    report.facts['domain'] = f'{info.domain.value} ({info.domain_reason})'
    declared = info.domain_reason.startswith(('recorded in the file', 'file metadata', 'chosen explicitly'))
    if info.domain == Domain.INTENSITY and not declared:
        report.add(
            PROBLEM, 'counts-as-amplitude-key',
            f'{info.key} holds intensities (photon counts), but nothing in the file says so',
            f'our reader tells them apart ({info.domain_reason}), but PtychoPINN\'s loaders read '
            f'{info.key} as amplitudes and would train on squared data',
            'check --fix OUT writes amplitudes (square roots) under diff3d and records the domain',
        )
    elif 'ambiguous' in info.domain_reason:
        report.add(WARNING, 'ambiguous-domain', f'{info.key} could be amplitudes or counts; read as '
                   f'{info.domain.value}', info.domain_reason,
                   'set "diffraction_domain" in the sidecar (run.ptychodus.json) to say which')


def _npz_convention(dataset: PtychoPINNDataset, report: FileReport) -> None:
    report.facts['convention'] = dataset.describe_convention()
    if report.producer != "Ptychodus's own PtychoPINN export":
        return
    if dataset.convention == PositionConvention.IDENTITY:
        report.add(INFO, 'identity-chosen', 'identity positions (Ptychodus\'s own export), read as identity '
                   f'({dataset.convention_reason})')
        report.add(
            PROBLEM, 'identity-positions',
            "positions follow the identity convention (Ptychodus's own export), which PtychoPINN's "
            'loaders do not know',
            'PtychoPINN places probe centre N//2 on xcoords: half a pixel from where Ptychodus had it',
            'check --fix OUT rewrites xcoords/ycoords in the PtychoPINN convention',
        )
        return
    offset = dataset.mapping()
    report.add(
        PROBLEM, 'identity-positions',
        "positions follow the identity convention (Ptychodus's own export) but are read as PtychoPINN's: "
        f'every probe lands {offset.offset_x_px:g} px (x) and {offset.offset_y_px:g} px (y) off',
        'save_ptychopinn_training_data writes xcoords = the Ptychodus object pixel itself',
        'check --fix OUT rewrites them in the PtychoPINN convention (or set "position_convention": '
        '"identity" in the sidecar run.ptychodus.json)',
    )


def _npz_pixels(dataset: PtychoPINNDataset, meta: ExportMeta, report: FileReport) -> None:
    given = meta.given()
    resolved = resolve_meta(dataset, meta, need_detector=dataset.diffraction is not None)
    defaulted = set(resolved.defaulted)
    for key in PIXEL_QUANTITIES:
        if key not in resolved.values:
            continue
        if key in given:
            source = 'sidecar'
        elif key in dataset.stored_values:
            source = 'file'
        elif key in defaulted:
            source = 'default'
        elif key.startswith('probe_pixel'):
            source = 'object pixel (PtychoPINN samples the probe on the object grid)'
        else:
            source = 'derived (far-field sampling)'
        report.pixel_sizes.append({'name': key, 'value': resolved.values[key], 'source': source})
    stand_ins = [key for key in PIXEL_QUANTITIES if key in defaulted]
    if stand_ins:
        report.add(
            WARNING, 'defaults',
            f'stand-in defaults for {", ".join(stand_ins)} (a PtychoPINN NPZ records no pixel size, energy '
            'or distance)',
            "positions and picture are right; lengths and the derived detector pixel are not the "
            "experiment's",
            f'give the real values in {sidecar_path(dataset.path).name} next to the file (keys '
            f'{", ".join(stand_ins)}), or to the converter ({default_hint(stand_ins[0]).split(",")[0]}, ...)',
        )


def _npz_pairing(dataset: PtychoPINNDataset, report: FileReport) -> None:
    num = dataset.num_positions
    text = f'pattern i with position i (file order); Ptychodus gets indexes 0..{num - 1}'
    if dataset.scan_index is not None:
        values = np.unique(dataset.scan_index)
        text += (f'; scan_index ({len(values)} value{"s" if len(values) > 1 else ""}: '
                 f'{", ".join(str(v) for v in values[:5])}{", ..." if len(values) > 5 else ""}) names '
                 'the scan, never a pattern')
    report.facts['pairing'] = text
    pos = dataset.positions
    if pos.x_start is not None and pos.x_actual is not None and pos.y_start is not None \
            and pos.y_actual is not None:
        moved = float(np.max(np.hypot(pos.x_actual - pos.x_start, pos.y_actual - pos.y_start), initial=0))
        if moved > 0:
            report.facts['positions'] = (f'{dataset.position_choice} positions used; actual and nominal '
                                         'differ '
                                         f'by up to {moved:.3g} px (position correction)')


def footprints_inside(x_obj: npt.ArrayLike, y_obj: npt.ArrayLike, probe_hw: tuple[int, int],
                      object_hw: tuple[int, int]) -> float:
    """Share of N x N probe footprints (centred on Ptychodus object pixels) wholly inside the object.

    A footprint centred on pixel ``c`` covers ``c - (N - 1)/2 .. c + (N - 1)/2``
    (Ptychodus and pty-chi centre the probe at index ``(N - 1)/2``); it is
    inside when its nearest whole-pixel placement is.
    """
    x = np.asarray(x_obj, dtype=np.float64)
    y = np.asarray(y_obj, dtype=np.float64)
    if x.size == 0:
        return 0.0
    ok = np.ones(x.shape, dtype=bool)
    for coord, n, size in ((x, probe_hw[1], object_hw[1]), (y, probe_hw[0], object_hw[0])):
        start = np.floor(coord - (n - 1) / 2 + 0.5)
        ok &= (start >= 0) & (start + n <= size)
    return float(ok.mean())


def _on_object_finding(report: FileReport, share: float, how: str) -> None:
    report.on_object = share
    report.facts['on object'] = f'{100 * share:.1f}% of probe footprints lie wholly on the object ({how})'
    if share == 0:
        report.add(PROBLEM, 'off-object', 'no probe footprint lies on the object',
                   'the positions and the object do not share a frame (wrong units, centre or convention)')
    elif share < 1:
        report.add(WARNING, 'partly-off-object',
                   f'{100 * (1 - share):.1f}% of the probe footprints extend past the object array',
                   'Ptychodus pads or clips there; fine at a scan\'s edge, suspicious when large')


def _npz_on_object(dataset: PtychoPINNDataset, report: FileReport) -> None:
    if dataset.object_guess is None or dataset.probe is None or not dataset.positions.present:
        return
    x_obj, y_obj = dataset.mapping().to_object_pixels(dataset.x_px, dataset.y_px)
    probe_hw = (int(dataset.probe.shape[-2]), int(dataset.probe.shape[-1]))
    obj_hw = (int(dataset.object_guess.shape[0]), int(dataset.object_guess.shape[1]))
    _on_object_finding(report, footprints_inside(x_obj, y_obj, probe_hw, obj_hw),
                       f'{probe_hw[0]}x{probe_hw[1]} probe, {dataset.convention.value} convention')


def _sample_indexes(num: int, limit: int = PLACEMENT_PATTERNS) -> npt.NDArray[np.int64]:
    return np.unique(np.linspace(0, num - 1, min(num, limit)).round().astype(np.int64))


def _npz_amplitudes(dataset: PtychoPINNDataset, chosen: npt.NDArray[np.int64]) -> np.ndarray:
    """The chosen patterns as float32 amplitudes, in one pass over the stack (bounded memory)."""
    info = dataset.require_stack()
    out = np.empty((chosen.size, info.height, info.width), dtype=np.float32)
    blocks = dataset.iter_pattern_blocks(blocks_for(info), domain=Domain.AMPLITUDE,
                                         dtype=np.dtype(np.float32))
    for start, block in blocks:
        inside = (chosen >= start) & (chosen < start + block.shape[0])
        out[inside] = block[chosen[inside] - start]
        if chosen[-1] < start + block.shape[0]:
            break
    return out


def _npz_placement(dataset: PtychoPINNDataset, report: FileReport) -> None:
    """The physics test (helper "physics"'s convert/placement.py) on what our reader places."""
    info = dataset.diffraction
    if info is None or dataset.probe is None or dataset.object_guess is None:
        reason = placement.applicable(None if info is None else np.zeros((1, info.height, info.width)),
                                      dataset.probe, dataset.object_guess)
        report.physics = {'status': placement.NOT_APPLICABLE,
                          'sentence': f'placement test not applicable: {reason}'}
        return
    chosen = _sample_indexes(dataset.num_positions)
    amplitudes = _npz_amplitudes(dataset, chosen)
    recorded = dataset.convention if dataset.convention_reason != 'PtychoPINN convention (default)' else None
    verdict = placement.assess_placement(
        amplitudes, dataset.probe, dataset.object_guess, dataset.x_px[chosen], dataset.y_px[chosen],
        recorded=recorded,
    )
    _placement_findings(report, verdict, fixable=True)


def _placement_findings(report: FileReport, verdict: placement.PlacementVerdict, *, fixable: bool) -> None:
    report.physics = {
        'status': verdict.status,
        'best': verdict.best,
        'expected': verdict.expected,
        'errors': verdict.errors,
        'best_offset_px': None if verdict.best_offset_px is None else list(verdict.best_offset_px),
        'patterns_used': verdict.patterns_used,
        't_statistic': verdict.t_statistic,
        'shuffled_error': verdict.shuffled_error,
        'seconds': round(verdict.seconds, 3),
        'sentence': verdict.sentence,
        'notes': list(verdict.notes),
    }
    if verdict.disagrees_with_recorded:
        report.add(
            PROBLEM, 'placement-disagrees' if fixable else 'placement-disagrees-product', verdict.sentence,
            'the probe and object explain the patterns better half a pixel from where the file is read',
            'check --fix OUT rewrites the positions in the convention the patterns support'
            if fixable else 'convert the source again with the right --position-convention',
        )


# ---------------------------------------------------------------------------
# products
# ---------------------------------------------------------------------------


def _check_product(path: Path, report: FileReport, check_terminates: bool, placement_test: bool) -> None:
    product, bundle, h5 = read_product(path, check_terminates=check_terminates)
    with h5:
        raw_x, raw_y = product.position_x_m.copy(), product.position_y_m.copy()
        raw_indexes = np.asarray(product.position_indexes).copy()
        exporter = is_ptychopinn_export(product)
        _product_producer(product, bundle, report)
        _product_shapes(product, bundle, report)
        _product_geometry(product, bundle, raw_x, raw_y, raw_indexes, exporter, report)
        notes = normalize_product(product, bundle)  # what our PtychoPINN_Product_H5 reader does
        _product_pixels(product, report)
        _product_on_object(product, raw_x, raw_y, exporter, report)
        if placement_test:
            _product_placement(product, bundle, report)
        for note in notes:
            report.add(INFO, 'reader-note', f'our product reader: {note}')


def _product_producer(product: Product, bundle: RawBundle | None, report: FileReport) -> None:
    attrs = product.extra_attrs
    if 'ptychopinn_ptychodus_version' in attrs:
        report.producer = 'ptychopinn-ptychodus'
        version = attrs['ptychopinn_ptychodus_version']
        report.producer_why = f'root attribute ptychopinn_ptychodus_version={version}'
    elif is_ptychopinn_export(product):
        report.producer = "PtychoPINN's exporter"
        report.producer_why = ('root attribute bundle_version (ptycho/io/ptychodus_product_io.py), '
                               'none of ours' + ('' if bundle is not None else '; no /raw_data'))
    elif any('no probe_position_indexes' in note for note in product.notes):
        report.producer = "PtychoPINN's ptychovit converter (_para.hdf5)"
        report.producer_why = 'probe, object and metre positions only, no probe_position_indexes'
    else:
        report.producer = 'Ptychodus product'
        report.producer_why = 'product layout without PtychoPINN attributes (Ptychodus or another writer)'


def _product_shapes(product: Product, bundle: RawBundle | None, report: FileReport) -> None:
    stack = None if bundle is None or bundle.diffraction is None else list(bundle.diffraction.shape)
    report.shapes = {
        'diffraction': stack,
        'probe': list(product.probe.shape),
        'object': list(product.object.shape),
        'positions': [len(product.position_x_m)],
    }
    if stack is None:
        report.facts['diffraction'] = 'no /raw_data/diffraction: open the patterns from their own file'
    else:
        dtype = bundle.diffraction.dtype if bundle is not None and bundle.diffraction is not None else ''
        domain = (bundle.attrs.get('measurement_domain', 'amplitude (unsaid: PtychoPINN convention)')
                  if bundle is not None else '')
        report.facts['diffraction'] = f'/raw_data/diffraction {tuple(stack)} {dtype}'
        report.facts['domain'] = str(domain.decode() if isinstance(domain, bytes) else domain)
    grid = product.grid
    report.facts['object frame'] = (f'{grid.height_px}x{grid.width_px} px centred at '
                                    f'({grid.center_x_m:.4g}, {grid.center_y_m:.4g}) m')
    recorded = product.extra_attrs.get('ptychopinn_position_convention')
    if recorded is not None:
        report.facts['convention'] = (f'metres from Ptychodus object pixels; source read as {recorded} '
                                      '(recorded)')
    else:
        report.facts['convention'] = ('metres (Ptychodus places object pixel j at '
                                      'centre + pixel * (j - (W-1)/2))')


def _product_geometry(product: Product, bundle: RawBundle | None, raw_x: np.ndarray, raw_y: np.ndarray,
                      raw_indexes: np.ndarray, exporter: bool, report: FileReport) -> None:
    num = len(raw_x)
    perm = np.array_equal(np.sort(raw_indexes), np.arange(num))
    unique = np.unique(raw_indexes)
    report.facts['pairing'] = (
        f'probe_position_indexes {"are a permutation of" if perm else "are NOT"} 0..{num - 1}'
        + ('' if perm else f' ({len(unique)} distinct value{"s" if len(unique) != 1 else ""}: '
           f'{", ".join(str(v) for v in unique[:5])}{", ..." if len(unique) > 5 else ""})')
        + '; Ptychodus pairs each position with the pattern of that index'
    )
    if not perm:
        report.add(
            PROBLEM, 'indexes-not-positions',
            f'probe_position_indexes hold {len(unique)} distinct value(s) for {num} positions'
            + (' (scan_index written as indexes)' if exporter else ''),
            'Ptychodus pairs positions with patterns by index value: duplicates share one pattern',
            'check --fix OUT writes indexes 0..M-1 (our product reader renumbers them already)',
        )
    if exporter:
        report.add(
            PROBLEM, 'uncentred-metres',
            "metre positions are xcoords * pixel size, not centred on the object (PtychoPINN's exporter)",
            'Ptychodus places object pixel j at centre + pixel * (j - (W-1)/2): its own HDF5 reader puts '
            'the scan off the object',
            'check --fix OUT writes our product (positions from /raw_data pixels); our PtychoPINN_Product_H5 '
            'reader already repairs it' + ('' if bundle is not None else ' (no /raw_data: it cannot)'),
        )
    if bundle is not None and bundle.diffraction is not None and bundle.diffraction.shape[0] != num:
        report.add(PROBLEM, 'pattern-count',
                   f'{bundle.diffraction.shape[0]} bundled patterns for {num} positions',
                   'every pattern needs a position')


def _product_pixels(product: Product, report: FileReport) -> None:
    defaulted: list[str] = []
    recorded = product.extra_attrs.get('ptychopinn_defaulted')
    if recorded is not None:
        try:
            loaded = json.loads(recorded.decode() if isinstance(recorded, bytes) else str(recorded))
            defaulted = [str(k) for k in loaded] if isinstance(loaded, list) else []
        except json.JSONDecodeError:
            defaulted = []
    for key in PIXEL_QUANTITIES:
        if key.startswith('detector_pixel'):
            continue  # a product has none: Ptychodus derives it from the diffraction file
        value = product.quantity(key)
        source = 'default at conversion' if key in defaulted else 'file'
        if value <= 0 and key in ('photon_energy_eV', 'detector_distance_m'):
            source = 'missing (0)'
        report.pixel_sizes.append({'name': key, 'value': value, 'source': source})
    stand_ins = [key for key in defaulted if key in PIXEL_QUANTITIES]
    if stand_ins:
        report.add(WARNING, 'defaults', f'stand-in defaults recorded at conversion: {", ".join(stand_ins)}',
                   'lengths are not the experiment\'s', 'convert again with the real values')
    missing = [k for k in ('photon_energy_eV', 'detector_distance_m') if product.quantity(k) <= 0]
    if missing:
        report.add(WARNING, 'missing-physics', f'{", ".join(missing)} missing (0)',
                   'Ptychodus needs them to relate the detector to the object pixel')
    for axis in ('width', 'height'):
        probe_px = product.quantity(f'probe_pixel_{axis}_m')
        obj_px = product.quantity(f'object_pixel_{axis}_m')
        if not np.isclose(probe_px, obj_px, rtol=1e-6):
            report.add(WARNING, 'probe-pixel', f'probe pixel {axis} {probe_px:g} m differs from the object '
                       'pixel '
                       f'{obj_px:g} m', 'PtychoPINN samples the probe on the object grid')


def _product_on_object(product: Product, raw_x: np.ndarray, raw_y: np.ndarray, exporter: bool,
                       report: FileReport) -> None:
    grid = product.grid
    probe_hw = (int(product.probe.shape[-2]), int(product.probe.shape[-1]))
    obj_hw = (grid.height_px, grid.width_px)
    x_raw, y_raw = grid.metres_to_pixels(raw_x, raw_y)
    as_written = footprints_inside(x_raw, y_raw, probe_hw, obj_hw)
    if not exporter:
        _on_object_finding(report, as_written, f'{probe_hw[0]}x{probe_hw[1]} probe, positions as written')
        return
    x_obj, y_obj = grid.metres_to_pixels(product.position_x_m, product.position_y_m)
    repaired = footprints_inside(x_obj, y_obj, probe_hw, obj_hw)
    _on_object_finding(report, repaired, 'through our product reader, positions from /raw_data')
    report.facts['on object'] += f'; {100 * as_written:.1f}% with Ptychodus\'s own HDF5 reader'


def _product_amplitudes(bundle: RawBundle, chosen: npt.NDArray[np.int64]) -> np.ndarray:
    dset = bundle.diffraction
    assert dset is not None
    stored = np.stack([read_rows(dset, int(i), int(i) + 1)[0] for i in chosen])
    domain = str(bundle.attrs.get('measurement_domain', 'amplitude'))
    source = Domain.INTENSITY if domain == Domain.INTENSITY.value else Domain.AMPLITUDE
    return convert_domain(stored, source, Domain.AMPLITUDE, np.dtype(np.float32))


def _product_placement(product: Product, bundle: RawBundle | None, report: FileReport) -> None:
    if bundle is None or bundle.diffraction is None:
        report.physics = {'status': placement.NOT_APPLICABLE,
                          'sentence': 'placement test not applicable: no bundled diffraction stack'}
        return
    order = np.argsort(product.position_indexes, kind='stable')
    x_obj, y_obj = product.grid.metres_to_pixels(product.position_x_m[order], product.position_y_m[order])
    num = min(len(x_obj), int(bundle.diffraction.shape[0]))
    chosen = _sample_indexes(num)
    obj = product.object[0] if product.object.ndim == 3 else product.object
    verdict = placement.assess_placement(
        _product_amplitudes(bundle, chosen), product.probe, obj, x_obj[chosen], y_obj[chosen],
        recorded=PositionConvention.IDENTITY,  # a product's metres map to Ptychodus pixels directly
    )
    _placement_findings(report, verdict, fixable=False)


# ---------------------------------------------------------------------------
# --fix
# ---------------------------------------------------------------------------


@dataclass
class FixResult:
    """What :func:`fix_file` wrote, and the report of the written file."""

    source: str
    output: str
    changes: list[str]
    report: FileReport


def fix_file(path: str | os.PathLike[str], output: str | os.PathLike[str], *, overwrite: bool = False,
             report: FileReport | None = None, check_terminates: bool = False) -> FixResult:
    """Write a corrected copy of ``path`` to ``output`` where the fix is known; refuse otherwise.

    Parameters
    ----------
    path: the file checked.
    output: where the corrected file goes (never the input; written atomically).
    overwrite: replace an existing ``output``.
    report: the check of ``path`` already made (checked again when ``None``).
    check_terminates: passed to the HDF5 reader (the CLI sets it).
    """
    source, dest = Path(path), Path(output)
    if dest.exists() and source.exists() and dest.resolve() == source.resolve():
        raise OutputError(dest, 'is the input: --fix never overwrites the file it checks')
    check_destination(dest, overwrite=overwrite)
    report = report or check_file(source, check_terminates=check_terminates)
    problems = [f for f in report.findings if f.severity == PROBLEM]
    if not problems:
        raise InvalidInputError(source, 'nothing to fix: the check found no problem')
    if not report.fixable:
        codes = ', '.join(sorted({f.code for f in problems}))
        raise InvalidInputError(source, f'no known fix for the problems found ({codes})')
    with _quiet_package():
        if report.kind == 'npz':
            changes = _fix_npz(source, dest, report, overwrite)
        else:
            changes = _fix_product(source, dest, overwrite, check_terminates)
    return FixResult(str(source), str(dest), changes, check_file(dest, check_terminates=check_terminates))


def _fixed_convention(report: FileReport) -> PositionConvention | None:
    """The convention the source's positions really follow, when the check found it wrong."""
    codes = {f.code for f in report.findings if f.severity == PROBLEM}
    if 'identity-positions' in codes:
        return PositionConvention.IDENTITY
    if 'placement-disagrees' in codes and report.physics and report.physics.get('best'):
        return PositionConvention(str(report.physics['best']))
    return None


def _fix_npz(source: Path, dest: Path, report: FileReport, overwrite: bool) -> list[str]:
    """A PtychoPINN-canonical NPZ: PtychoPINN-convention positions, 2-D probe, amplitudes under diff3d."""
    changes: list[str] = []
    truth = _fixed_convention(report)
    dataset, meta = open_with_sidecar(source, require_probe=report.shapes.get('probe') is not None)
    with dataset:
        mapping = dataset.mapping()
        if truth is not None and truth != dataset.convention:
            changes.append(f'positions were {truth.value}, read as {dataset.convention.value}: '
                           f'rewritten in the ptychopinn convention')
        source_mapping = PositionMapping(mapping.probe_width_px, mapping.probe_height_px,
                                         truth or dataset.convention)
        target = PositionMapping(mapping.probe_width_px, mapping.probe_height_px,
                                 PositionConvention.PTYCHOPINN)
        if source_mapping.convention != PositionConvention.PTYCHOPINN and truth is None:
            changes.append(f'positions rewritten from {source_mapping.convention.value} to ptychopinn')
        arrays: dict[str, np.ndarray | StreamedArray] = {}
        pos = dataset.positions
        pairs = [('xcoords', 'ycoords', pos.x_actual, pos.y_actual), ('xcoords_start', 'ycoords_start',
                                                                       pos.x_start, pos.y_start)]
        for kx, ky, x, y in pairs:
            if x is None or y is None:
                x, y = dataset.x_px, dataset.y_px
            x_obj, y_obj = source_mapping.to_object_pixels(x, y)
            arrays[kx], arrays[ky] = target.to_file_coordinates(x_obj, y_obj)
        if dataset.probe is not None:
            probe = dataset.probe
            if probe.ndim == 3:
                changes.append(f'probeGuess {tuple(dataset.probe_source_shape or probe.shape)} -> 2-D '
                               f'{probe.shape[-2:]}' + (f' (first of {probe.shape[0]} modes)'
                                                        if probe.shape[0] > 1 else ''))
                probe = probe[0]
            arrays['probeGuess'] = np.ascontiguousarray(probe)
        if dataset.object_guess is not None:
            arrays['objectGuess'] = dataset.object_guess
        if dataset.scan_index is not None:
            arrays['scan_index'] = dataset.scan_index
        if dataset.bad_pixels is not None:
            arrays['bad_pixels'] = dataset.bad_pixels
        ours: dict[str, Any] = {**our_metadata(dataset), **dataset.stored_values, **meta.given(),
                                CONVENTION_KEY: PositionConvention.PTYCHOPINN.value}
        info = dataset.diffraction
        if info is not None:
            if info.domain == Domain.INTENSITY:
                changes.append(f'{info.key} intensities -> amplitudes (square roots) under diff3d')
            elif info.key != 'diff3d':
                changes.append(f'{info.key} amplitudes -> diff3d (the key both PtychoPINN loaders read)')
            ours[DOMAIN_KEY] = Domain.AMPLITUDE.value
            arrays['diff3d'] = StreamedArray(
                shape=info.nhw_shape, dtype=np.dtype(np.float32),
                blocks=dataset.iter_pattern_blocks(blocks_for(info), domain=Domain.AMPLITUDE,
                                                   dtype=np.dtype(np.float32)),
            )
        source_meta = {k: v for k, v in (dataset.metadata or {}).items() if k != OUR_METADATA_KEY}
        source_meta['fixed_by'] = f'ptychopinn-ptychodus check --fix ({source.name}): ' + '; '.join(changes)
        if info is not None:
            source_meta['measurement_domain'] = 'amplitude'
        arrays['_metadata'] = metadata_with_ours(json.dumps(source_meta), ours)
        with atomic_output(dest, overwrite=overwrite) as tmp:
            write_npz(tmp, arrays)
    return changes


def _fix_product(source: Path, dest: Path, overwrite: bool, check_terminates: bool) -> list[str]:
    """Our product, through our converter: the import repairs positions and indexes, the export writes."""
    from .export import export_product
    from .importer import import_product

    with tempfile.TemporaryDirectory(prefix='.check-fix-', dir=dest.parent) as folder:
        npz = Path(folder) / f'{source.stem}.npz'
        imported = import_product(source, npz, check_terminates=check_terminates)
        product, _, h5 = read_product(source)
        with h5:
            obj_w, obj_h = product.grid.pixel_width_m, product.grid.pixel_height_m
        meta = ExportMeta(probe_pixel_width_m=obj_w, probe_pixel_height_m=obj_h)
        export_product(npz, dest, meta, overwrite=overwrite)
    return [*imported.notes, 'written as our product (probe pixel = object pixel, indexes 0..M-1, '
            'metres centred on the object)']

