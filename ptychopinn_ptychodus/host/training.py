"""PtychoPINN training data from any file Ptychodus reads, driven headless through Ptychodus's model.

Ptychodus reads the diffraction file (any of its readers), crops and applies
bad pixels; it reads probe, object and positions from a product file (any
product reader) or from separate files; our core writes the one NPZ PtychoPINN
trains on (:func:`~ptychopinn_ptychodus.convert.training_npz.write_training_npz`).

Use: ``from ptychopinn_ptychodus.host.training import export_training_data``
(this module imports Ptychodus, so the package root does not import it).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor
from contextlib import ExitStack
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from ..convert.batch import local_pool
from ..convert.training_npz import TrainingData, TrainingReport, physics_from, write_training_npz
from ..facts.errors import InvalidInputError, PtychoPINNError
from ..facts.quantities import ExportMeta
from . import compat

#: Pattern rows handed to the writer at a time (bounded extra memory per block).
BLOCK_ROWS = 256


def _extensions(display_name: str) -> list[str]:
    return [e.lower() for e in re.findall(r'\*(\.[\w.]+)', display_name)]


def choose_reader(chooser: Any, path: Path, name: str | None, what: str) -> str:
    """A reader's simple name: the one given (checked), else the only one matching the extension."""
    plugins = list(chooser)
    if name is not None:
        if not any(p.simple_name == name for p in plugins):
            known = ', '.join(sorted(p.simple_name for p in plugins))
            raise InvalidInputError(path, f'no {what} reader {name!r}; known: {known}')
        return name
    suffix = ''.join(path.suffixes[-2:]).lower()
    matches = sorted(
        {p.simple_name for p in plugins if any(suffix.endswith(e) for e in _extensions(p.display_name))}
    )
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise InvalidInputError(path, f'no {what} reader for {path.suffix!r}; pick one by name')
    choices = ', '.join(matches)
    raise InvalidInputError(path, f'several {what} readers fit {path.suffix!r}; pick one: {choices}')


@dataclass
class TrainingSources:
    """The files of one export and the readers for them (simple names; ``None`` = by extension)."""

    diffraction: Path
    diffraction_reader: str | None = None
    product: Path | None = None
    product_reader: str | None = None
    positions: Path | None = None
    positions_reader: str | None = None
    probe: Path | None = None
    probe_reader: str | None = None
    object: Path | None = None
    object_reader: str | None = None
    bad_pixels: Path | None = None
    bad_pixels_reader: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def crop_region(metadata: Any, crop_px: int | None) -> tuple[dict[str, Any], str]:
    """An explicit crop: ``crop_px`` around the reader's beam centre, else the pattern centre.

    Ptychodus 1.5-1.7 crop 64x64 around pixel (32, 32) when no region is given
    (the corner of larger patterns), so we always pass one. Returns the keywords
    of ``load_diffraction_data`` that say it on the running release, and a sentence.
    """
    extent = metadata.detector_extent
    width, height = int(extent.width_px), int(extent.height_px)
    beam = getattr(metadata, 'beam_center', None)  # 1.6+
    if beam is not None:
        cx, cy, where = int(beam.x_px), int(beam.y_px), 'beam centre from the reader'
    else:
        cx, cy, where = width // 2, height // 2, 'pattern centre'
    size_x = width if crop_px is None else crop_px
    size_y = height if crop_px is None else crop_px
    x0, y0 = cx - size_x // 2, cy - size_y // 2
    if x0 < 0 or y0 < 0 or x0 + size_x > width or y0 + size_y > height:
        raise InvalidInputError(
            metadata.file_path,
            f'crop {size_y}x{size_x} around ({cy}, {cx}) leaves the {height}x{width} detector',
        )
    try:
        region = compat.crop_arguments(x0, y0, size_x, size_y)
    except ValueError as exc:
        raise InvalidInputError(metadata.file_path, str(exc)) from exc
    return region, f'{size_y}x{size_x} px at rows {y0}:{y0 + size_y}, cols {x0}:{x0 + size_x} ({where})'


def _versions() -> dict[str, str]:
    found = {}
    for package in ('ptychodus', 'ptychopinn-ptychodus'):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = 'unknown'
    return found


def export_training_data(
    sources: TrainingSources,
    output: str | Path,
    *,
    crop_px: int | None = None,
    meta: ExportMeta | None = None,
    counts: bool = False,
    keep_probe_modes: bool = False,
    overwrite: bool = False,
    progress: Callable[[int], Callable[[int], None] | None] | None = None,
) -> TrainingReport:
    """Read with Ptychodus, write one PtychoPINN training NPZ.

    Parameters
    ----------
    sources: diffraction file (+ reader), and a product file or positions/probe/object files.
    output: destination ``.npz``.
    crop_px: square crop size; ``None`` keeps the whole pattern. Always centred (reader's beam
        centre, else the pattern centre), never Ptychodus's corner default.
    meta: physics where the files lack them (detector pixel size is applied before loading).
    counts: store photon counts instead of amplitudes.
    keep_probe_modes: keep every probe mode under ``probe_modes``.
    overwrite: replace an existing output.
    progress: ``progress(total)`` returns a per-block callback (e.g. ``ProgressBar.start``).
    """
    from ptychodus.api.plugins import PluginRegistry
    from ptychodus.model import ModelCore

    meta = meta or ExportMeta()
    registry = PluginRegistry.load_plugins()
    if not sources.diffraction.is_file():
        raise InvalidInputError(sources.diffraction, 'no such file')
    if sources.product is None and (sources.positions is None or sources.probe is None):
        raise InvalidInputError(sources.diffraction, 'need a product file, or positions and probe files')
    reader = choose_reader(registry.diffraction_file_readers, sources.diffraction, sources.diffraction_reader,
                           'diffraction')
    probe_metadata = compat.find_strategy(registry.diffraction_file_readers, reader).read(sources.diffraction)
    region, crop_text = crop_region(probe_metadata.get_metadata(), crop_px)
    provenance: dict[str, Any] = {
        'diffraction': {'file': str(sources.diffraction), 'reader': reader},
        'crop': crop_text,
        'versions': _versions(),
    }
    with ModelCore() as core:
        detector = core.diffraction_core.detector_settings
        for key, param in (('detector_pixel_width_m', detector.pixel_width_m),
                           ('detector_pixel_height_m', detector.pixel_height_m)):
            if meta.given().get(key) is not None:
                param.set_value(float(meta.given()[key]))
        kwargs: dict[str, Any] = {}
        if sources.bad_pixels is not None:
            bad_reader = choose_reader(registry.bad_pixels_file_readers, sources.bad_pixels,
                                       sources.bad_pixels_reader, 'bad-pixels')
            kwargs = {'bad_pixels_file_path': sources.bad_pixels, 'bad_pixels_file_type': bad_reader}
            provenance['bad_pixels'] = {'file': str(sources.bad_pixels), 'reader': bad_reader}
        try:
            dataset = core.workflow_api.load_diffraction_data(
                sources.diffraction, file_type=reader, block=True, **region, **kwargs
            )
            core.run_tasks()
            diffraction_meta = compat.diffraction_quantities(probe_metadata.get_metadata())
            product_api = _load_product(core, registry, sources, dataset, provenance, meta, diffraction_meta)
            core.run_tasks()
        except PtychoPINNError:
            raise
        except Exception as exc:  # Ptychodus wraps reader failures in RuntimeError
            problem = f'Ptychodus could not read the inputs: {exc}'
            raise InvalidInputError(sources.diffraction, problem) from exc
        assembled = dataset.get_assembled_data()
        patterns = np.asarray(assembled.get_patterns())
        indexes = np.asarray(assembled.get_indexes())
        if patterns.shape[0] == 0:
            raise InvalidInputError(sources.diffraction, 'Ptychodus assembled no patterns')
        from .plugin import from_ptychodus_product

        product = from_ptychodus_product(product_api.get_product())
        bad = _bad_pixels(core, dataset, patterns.shape[1:])
        x_m, y_m = _paired_positions(sources.diffraction, indexes, product)
        physics = {**meta.given(), **{k: v for k, v in diffraction_meta.items() if v is not None}}
        for key in ('detector_distance_m', 'photon_energy_eV'):
            value = product.metadata.values.get(key)
            if value:
                physics.setdefault(key, value)
        callback = progress(patterns.shape[0]) if progress is not None else None
        data = TrainingData(
            intensity_blocks=(patterns[i : i + BLOCK_ROWS] for i in range(0, patterns.shape[0], BLOCK_ROWS)),
            pattern_shape=(int(patterns.shape[0]), int(patterns.shape[1]), int(patterns.shape[2])),
            probe=product.probe,
            object=product.object,
            grid=product.grid,
            position_x_m=x_m,
            position_y_m=y_m,
            bad_pixels=bad,
            physics=physics_from(physics),
            provenance=provenance,
        )
        return write_training_npz(
            output, data, counts=counts, keep_probe_modes=keep_probe_modes, overwrite=overwrite,
            progress=callback,
        )


def _load_product(core: Any, registry: Any, sources: TrainingSources, dataset: Any,
                  provenance: dict[str, Any], meta: ExportMeta, diffraction_meta: dict[str, Any]) -> Any:
    api = core.workflow_api
    if sources.product is not None:
        readers = registry.product_file_readers
        name = choose_reader(readers, sources.product, sources.product_reader, 'product')
        provenance['product'] = {'file': str(sources.product), 'reader': name}
        product = api.load_product(sources.product, file_type=name, diffraction=dataset)
    else:
        # Ptychodus 1.7 create_product takes energy and distance from its settings (1 m, 10 keV by
        # default), not from the diffraction file, and derives the object pixel from them: pass them.
        physics = {**meta.given(), **{k: v for k, v in diffraction_meta.items() if v is not None}}
        quantities = {key: physics.get(key) for key in ('detector_distance_m', 'photon_energy_eV')}
        product = api.create_product(  # energy keyword: photon_energy_eV (1.7), probe_energy_eV (1.5.1/1.6)
            sources.diffraction.stem, diffraction=dataset,
            **compat.quantity_keywords(api.create_product, quantities),
        )
    for what, path, given, chooser, load in (
        ('positions', sources.positions, sources.positions_reader, registry.probe_position_file_readers,
         'load_probe_positions'),
        ('probe', sources.probe, sources.probe_reader, registry.probe_file_readers, 'load_probe'),
        ('object', sources.object, sources.object_reader, registry.object_file_readers, 'load_object'),
    ):
        if path is not None:
            name = choose_reader(chooser, path, given, what)
            provenance[what] = {'file': str(path), 'reader': name}
            core.run_tasks()
            getattr(product, load)(path, file_type=name)
    return product


def _bad_pixels(core: Any, dataset: Any, shape: tuple[int, ...]) -> np.ndarray | None:
    """Bad pixels at the processed (cropped) shape, when Ptychodus's assembled data carry them."""
    assembled = dataset.get_assembled_data()
    getter = getattr(assembled, 'get_bad_pixels', None)
    if getter is None:
        return None
    bad = np.asarray(getter(), dtype=bool)
    return bad if bad.shape == tuple(shape) else None


def _paired_positions(path: Path, indexes: np.ndarray, product: Any) -> tuple[np.ndarray, np.ndarray]:
    """Positions in pattern order: Ptychodus pairs them by index value, so do we."""
    lookup = {int(i): k for k, i in enumerate(product.position_indexes)}
    missing = [int(i) for i in indexes if int(i) not in lookup]
    if missing:
        raise InvalidInputError(path, f'{len(missing)} patterns have no position (first index {missing[0]})')
    order = np.asarray([lookup[int(i)] for i in indexes], dtype=np.int64)
    return np.asarray(product.position_x_m)[order], np.asarray(product.position_y_m)[order]


@dataclass(frozen=True)
class TrainingJob:
    """One export of a batch (picklable: runs in any process or Dask worker)."""

    sources: TrainingSources
    output: Path
    crop_px: int | None = None
    counts: bool = False
    keep_probe_modes: bool = False


def export_one(job: TrainingJob, meta: ExportMeta | None, overwrite: bool) -> TrainingReport | str:
    """One job; a refusal comes back as its one-line message instead of raising."""
    try:
        return export_training_data(job.sources, job.output, crop_px=job.crop_px, meta=meta,
                                    counts=job.counts, keep_probe_modes=job.keep_probe_modes,
                                    overwrite=overwrite)
    except PtychoPINNError as exc:
        return str(exc)


def export_many(jobs: Iterable[TrainingJob], executor: Executor | None = None, *,
                meta: ExportMeta | None = None, overwrite: bool = False) -> Iterator[TrainingReport | str]:
    """Every job on ``executor``, results in job order; a refused job yields its one-line message.

    Parameters
    ----------
    jobs: the exports (:class:`TrainingJob`, picklable).
    executor: any ``concurrent.futures.Executor`` (a ``dask.distributed`` client's
        ``get_executor()`` works unchanged); default: a process pool on every core.
    meta: physics where the files lack them, for every job.
    overwrite: replace existing outputs.
    """
    jobs = list(jobs)
    with ExitStack() as stack:
        if executor is None:
            executor = stack.enter_context(local_pool(max(1, min(os.cpu_count() or 1, len(jobs)))))
        futures = [executor.submit(export_one, job, meta, overwrite) for job in jobs]
        for future in futures:
            yield future.result()
