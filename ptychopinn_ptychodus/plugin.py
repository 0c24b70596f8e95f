"""Ptychodus readers and writers for PtychoPINN data: thin adapters over the core.

Everything format-specific (validation, layouts, amplitude/intensity, geometry)
lives in the converter core; this module only translates between the core's
arrays and Ptychodus's API objects. :data:`PLUGINS` is the single list of what
we register: :func:`register_plugins`, ``doctor`` and the tests all read it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from ptychodus.api.diffraction import (
    BadPixels,
    CropRegion,
    DiffractionArray,
    DiffractionDataset,
    DiffractionDatasetLayoutNode,
    DiffractionFileReader,
    DiffractionFileWriter,
    DiffractionIndexes,
    DiffractionMetadata,
    DiffractionPatterns,
    SimpleDiffractionDataset,
)
from ptychodus.api.geometry import ImageExtent, PixelGeometry
from ptychodus.api.io import load_product
from ptychodus.api.object import Object, ObjectCenter
from ptychodus.api.plugins import PluginRegistry
from ptychodus.api.probe import ProbeSequence
from ptychodus.api.probe_positions import ProbePosition, ProbePositionSequence
from ptychodus.api.product import Product, ProductFileReader, ProductFileWriter, ProductMetadata

from . import product_h5
from .atomic import atomic_output
from .conversion import ExportMeta, assemble_product, npz_arrays_from_product, resolve_meta
from .errors import InvalidInputError
from .geometry import ObjectGrid
from .npz_archive import StreamedArray, write_npz
from .npz_format import DOMAIN_KEY, Domain, PtychoPINNDataset, blocks_for, open_dataset

logger = logging.getLogger(__name__)

NPZ_SIMPLE_NAME = 'PtychoPINN_NPZ'
NPZ_DISPLAY_NAME = 'PtychoPINN NumPy Zipped Archive (*.npz)'
H5_SIMPLE_NAME = 'PtychoPINN_Product_H5'
H5_DISPLAY_NAME = 'PtychoPINN Converted Product (*.h5 *.hdf5)'
SIDECAR_SUFFIX = '.json'
#: Sidecar keys that steer interpretation rather than describe the experiment.
READER_OPTIONS = ('diffraction_domain', 'positions', 'layout')
#: What h5py raises on damaged files (InvalidInputError, a ValueError, passes through).
H5_ERRORS = (OSError, RuntimeError, ValueError)


# ---------------------------------------------------------------------------
# sidecar
# ---------------------------------------------------------------------------


def sidecar_path(file_path: Path) -> Path:
    """``run.npz`` -> ``run.json`` next to it."""
    return file_path.with_suffix(SIDECAR_SUFFIX)


def read_sidecar(file_path: Path) -> tuple[ExportMeta, dict[str, str]]:
    """Experiment metadata and reader options from the optional JSON sidecar."""
    path = sidecar_path(file_path)
    if not path.is_file():
        return ExportMeta(), {}
    try:
        values = json.loads(path.read_text(encoding='utf-8'))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInputError(path, f'unreadable sidecar: {exc}') from exc
    if not isinstance(values, dict):
        raise InvalidInputError(path, 'sidecar JSON must be an object')
    options = {key: str(values.pop(key)) for key in READER_OPTIONS if key in values}
    logger.info('%s: using sidecar %s', file_path.name, path.name)
    return ExportMeta.from_mapping(values, source=str(path)), options


def _open(file_path: Path, *, require_probe: bool, require_positions: bool = True) -> PtychoPINNDataset:
    meta, options = read_sidecar(file_path)
    dataset = open_dataset(
        file_path,
        domain=options.get('diffraction_domain'),
        positions='nominal' if options.get('positions') == 'nominal' else 'actual',
        layout=options.get('layout'),
        require_probe=require_probe,
        require_positions=require_positions,
        load_guesses=require_probe,
    )
    dataset.sidecar_meta = meta  # type: ignore[attr-defined]
    return dataset


# ---------------------------------------------------------------------------
# diffraction
# ---------------------------------------------------------------------------


class NPZDiffractionArray(DiffractionArray):
    """Patterns stay in the NPZ until asked for; a crop is applied before squaring."""

    def __init__(self, file_path: Path, label: str, num_patterns: int) -> None:
        self._file_path = file_path
        self._label = label
        self._indexes = np.arange(num_patterns, dtype=np.int64)

    def get_label(self) -> str:
        return self._label

    def get_indexes(self) -> DiffractionIndexes:
        return self._indexes

    def get_num_patterns(self) -> int:
        return int(self._indexes.size)

    def get_patterns(self, *, read_region: CropRegion | None = None) -> DiffractionPatterns:
        region = None if read_region is None else (read_region.y_slice, read_region.x_slice)
        with _open(self._file_path, require_probe=False, require_positions=False) as dataset:
            info = dataset.diffraction
            assert info is not None
            return _assemble(
                dataset.iter_pattern_blocks(blocks_for(info), domain=Domain.INTENSITY, region=region),
                info.num_patterns,
            )


def _assemble(blocks: Iterator[tuple[int, np.ndarray]], total: int) -> np.ndarray:
    out: np.ndarray | None = None
    for start, block in blocks:
        if out is None:
            out = np.empty((total, *block.shape[1:]), dtype=block.dtype)
        out[start : start + block.shape[0]] = block
    assert out is not None
    return out


def _layout_tree(dataset: PtychoPINNDataset) -> DiffractionDatasetLayoutNode:
    root = DiffractionDatasetLayoutNode.create_root()
    info = dataset.diffraction
    for key, member in dataset.archive.members.items():
        details = f'shape {member.shape}'
        if info is not None and key == info.key:
            details += f', layout {info.layout.value}, {info.domain.value} ({info.domain_reason})'
        root.add_child(key, str(member.dtype), details)
    return root


def _detector_metadata(dataset: PtychoPINNDataset) -> dict[str, Any]:
    """Energy, distance and detector pixel, resolved exactly as the product reader does.

    Handing Ptychodus the same (possibly defaulted, always warned) physics for the
    diffraction data keeps its derived object pixel equal to the product's.
    """
    resolved = resolve_meta(dataset, getattr(dataset, 'sidecar_meta', ExportMeta()), need_detector=True)
    values = resolved.values
    return {
        'detector_distance_m': values['detector_distance_m'],
        'photon_energy_eV': values['photon_energy_eV'],
        'detector_pixel_geometry': PixelGeometry(
            width_m=values['detector_pixel_width_m'], height_m=values['detector_pixel_height_m']
        ),
    }


class NPZDiffractionFileReader(DiffractionFileReader):
    """Every NPZ flavour the core reads, delivered as intensities."""

    def read(self, file_path: Path) -> DiffractionDataset:
        with _open(file_path, require_probe=False, require_positions=False) as dataset:
            info = dataset.diffraction
            if info is None:
                raise InvalidInputError(file_path, 'has no diffraction stack (diffraction or diff3d)')
            metadata = DiffractionMetadata(
                num_patterns_per_array=[info.num_patterns],
                pattern_dtype=info.output_dtype(Domain.INTENSITY),
                detector_extent=ImageExtent(width_px=info.width, height_px=info.height),
                file_path=file_path,
                **_detector_metadata(dataset),
            )
            array = NPZDiffractionArray(file_path, file_path.stem, info.num_patterns)
            return SimpleDiffractionDataset(metadata, _layout_tree(dataset), [array], dataset.bad_pixels)


class NPZDiffractionFileWriter(DiffractionFileWriter):
    """Ptychodus diffraction -> PtychoPINN NPZ: ``diffraction`` as amplitude, domain recorded."""

    def write(self, file_path: Path, dataset: DiffractionDataset) -> None:
        arrays = list(dataset)
        total = sum(int(array.get_indexes().size) for array in arrays)
        metadata = dataset.get_metadata()
        extent = metadata.detector_extent
        shape = (total, extent.height_px, extent.width_px)
        float64 = np.dtype(metadata.pattern_dtype) == np.float64
        dtype = np.dtype(np.float64 if float64 else np.float32)

        def blocks() -> Iterator[tuple[int, np.ndarray]]:
            start = 0
            for array in arrays:
                patterns = np.asarray(array.get_patterns(), dtype=dtype)
                yield start, np.sqrt(np.maximum(patterns, 0))
                start += patterns.shape[0]

        indexes = [np.asarray(a.get_indexes(), np.int64) for a in arrays]
        contents: dict[str, np.ndarray | StreamedArray] = {
            'diffraction': StreamedArray(shape=shape, dtype=dtype, blocks=blocks()),
            DOMAIN_KEY: np.asarray(Domain.AMPLITUDE.value),
            'bad_pixels': np.asarray(dataset.get_bad_pixels(), dtype=bool),
            'pattern_indexes': np.concatenate(indexes) if indexes else np.zeros(0, np.int64),
        }
        for key, value in (
            ('detector_distance_m', metadata.detector_distance_m),
            ('photon_energy_eV', metadata.photon_energy_eV),
        ):
            if value is not None:
                contents[key] = np.asarray(value, dtype=np.float64)
        if metadata.detector_pixel_geometry is not None:
            contents['detector_pixel_width_m'] = np.asarray(metadata.detector_pixel_geometry.width_m)
            contents['detector_pixel_height_m'] = np.asarray(metadata.detector_pixel_geometry.height_m)
        with atomic_output(file_path, overwrite=True) as tmp:
            write_npz(tmp, contents)


class BundledDiffractionArray(DiffractionArray):
    """``/raw_data/diffraction`` of a converted product, read lazily with h5py."""

    def __init__(self, file_path: Path, num_patterns: int, source_domain: str) -> None:
        self._file_path = file_path
        self._indexes = np.arange(num_patterns, dtype=np.int64)
        self._restore_counts = source_domain == Domain.INTENSITY.value

    def get_label(self) -> str:
        return self._file_path.stem

    def get_indexes(self) -> DiffractionIndexes:
        return self._indexes

    def get_num_patterns(self) -> int:
        return int(self._indexes.size)

    def get_patterns(self, *, read_region: CropRegion | None = None) -> DiffractionPatterns:
        try:
            with h5py.File(self._file_path, 'r') as h5:
                dset = h5[f'{product_h5.RAW_GROUP}/diffraction']
                if read_region is None:
                    amplitude = dset[()]
                else:
                    amplitude = dset[:, read_region.y_slice, read_region.x_slice]
        except H5_ERRORS as exc:
            raise InvalidInputError(self._file_path, f'cannot read /raw_data/diffraction: {exc}') from exc
        intensity = np.square(amplitude.astype(np.float64 if amplitude.dtype == np.float64 else np.float32))
        if self._restore_counts:
            np.rint(intensity, out=intensity)
        return intensity


class BundledDiffractionFileReader(DiffractionFileReader):
    """A converted product's ``/raw_data`` as Ptychodus diffraction (intensities)."""

    def read(self, file_path: Path) -> DiffractionDataset:
        product_h5.check_untrusted_h5(file_path)
        try:
            return self._read(file_path)
        except InvalidInputError:
            raise
        except H5_ERRORS as exc:
            raise InvalidInputError(file_path, f'not a readable converted product: {exc}') from exc

    def _read(self, file_path: Path) -> DiffractionDataset:
        with h5py.File(file_path, 'r') as h5:
            dset = h5.get(f'{product_h5.RAW_GROUP}/diffraction')
            if not isinstance(dset, h5py.Dataset) or dset.ndim != 3:
                raise InvalidInputError(file_path, 'has no /raw_data/diffraction (M, N, N) stack')
            num, height, width = (int(n) for n in dset.shape)
            bad = h5.get(f'{product_h5.RAW_GROUP}/bad_pixels')
            bad_pixels: BadPixels | None = None if not isinstance(bad, h5py.Dataset) else bad[()].astype(bool)
            root = DiffractionDatasetLayoutNode.create_root()
            node = root.add_child(
                '/raw_data/diffraction', str(dset.dtype),
                f'shape {dset.shape}, amplitude (squared on read)',
            )
            for key, value in dset.attrs.items():
                node.add_child(key, type(value).__name__, str(value))
            source_domain = str(dset.attrs.get('source_domain', Domain.AMPLITUDE.value))
            dtype: np.dtype[Any] = np.dtype(np.float64 if dset.dtype == np.float64 else np.float32)
            attrs = h5.attrs
            metadata = DiffractionMetadata(
                num_patterns_per_array=[num],
                pattern_dtype=dtype,
                detector_extent=ImageExtent(width_px=width, height_px=height),
                detector_distance_m=float(attrs['detector_object_distance_m'])
                if 'detector_object_distance_m' in attrs else None,
                photon_energy_eV=float(attrs['photon_energy_eV']) if 'photon_energy_eV' in attrs else None,
                file_path=file_path,
            )
        array = BundledDiffractionArray(file_path, num, source_domain)
        return SimpleDiffractionDataset(metadata, root, [array], bad_pixels)


# ---------------------------------------------------------------------------
# products
# ---------------------------------------------------------------------------


def _metadata_fields(meta: Any) -> dict[str, Any]:
    """The metadata both product classes share (their field names are the same)."""
    return {f.name: getattr(meta, f.name) for f in fields(product_h5.ProductMetadata)}


def to_ptychodus_product(product: product_h5.Product) -> Product:
    """Core product -> Ptychodus API object (no geometry left for Ptychodus to guess)."""
    meta = product.metadata
    grid = product.grid
    positions = ProbePositionSequence(
        [
            ProbePosition(int(index), float(x), float(y))
            for index, x, y in zip(
                product.position_indexes, product.position_x_m, product.position_y_m, strict=True
            )
        ]
    )
    return Product(
        metadata=ProductMetadata(**_metadata_fields(meta)),
        probe_positions=positions,
        probes=ProbeSequence(
            array=product.probe,
            opr_weights=None,
            pixel_geometry=PixelGeometry(
                width_m=product.probe_pixel_width_m, height_m=product.probe_pixel_height_m
            ),
        ),
        object_=Object(
            array=product.object,
            pixel_geometry=PixelGeometry(width_m=grid.pixel_width_m, height_m=grid.pixel_height_m),
            center=ObjectCenter(x_m=grid.center_x_m, y_m=grid.center_y_m),
            layer_spacing_m=[float(v) for v in product.layer_spacing_m],
        ),
        losses=[],
    )


def from_ptychodus_product(product: Product) -> product_h5.Product:
    """Ptychodus API object -> core product (the inverse of :func:`to_ptychodus_product`)."""
    meta = product.metadata
    geometry = product.object_.get_geometry()
    probe_geometry = product.probes.get_pixel_geometry()
    positions = product.probe_positions
    return product_h5.Product(
        metadata=product_h5.ProductMetadata(**_metadata_fields(meta)),
        probe=np.asarray(product.probes.get_array()),
        probe_pixel_width_m=probe_geometry.width_m,
        probe_pixel_height_m=probe_geometry.height_m,
        object=np.asarray(product.object_.get_array()),
        grid=ObjectGrid(
            width_px=geometry.width_px,
            height_px=geometry.height_px,
            pixel_width_m=geometry.pixel_width_m,
            pixel_height_m=geometry.pixel_height_m,
            center_x_m=geometry.center_x_m,
            center_y_m=geometry.center_y_m,
        ),
        position_indexes=np.asarray(positions.get_indexes(), dtype=np.int64),
        position_x_m=np.asarray(positions.get_coordinates_x_m(), dtype=np.float64),
        position_y_m=np.asarray(positions.get_coordinates_y_m(), dtype=np.float64),
        layer_spacing_m=np.asarray(product.object_.layer_spacing_m, dtype=np.float64),
    )


class NPZProductFileReader(ProductFileReader):
    """Probe, object and positions of a PtychoPINN NPZ with SPEC section 2 geometry.

    Values come from the sidecar (``run.json``), then the file's own keys (as our
    writer adds them), then documented defaults that are logged as warnings.
    """

    def read(self, file_path: Path) -> Product:
        with _open(file_path, require_probe=True) as dataset:
            resolved = resolve_meta(dataset, getattr(dataset, 'sidecar_meta', ExportMeta()))
            return to_ptychodus_product(assemble_product(dataset, resolved))


class NPZProductFileWriter(ProductFileWriter):
    """Ptychodus product -> PtychoPINN NPZ (probe 2D when single-mode, geometry keys kept)."""

    def write(self, file_path: Path, product: Product) -> None:
        arrays, notes = npz_arrays_from_product(from_ptychodus_product(product))
        for note in notes:
            logger.warning('%s: %s', file_path.name, note)
        with atomic_output(file_path, overwrite=True) as tmp:
            write_npz(tmp, arrays)


class BundledProductFileReader(ProductFileReader):
    """A converted product ``.h5``: Ptychodus's own loader (the bundle is ignored)."""

    def read(self, file_path: Path) -> Product:
        product_h5.check_untrusted_h5(file_path)
        try:
            return load_product(file_path)
        except (*H5_ERRORS, KeyError, TypeError) as exc:
            raise InvalidInputError(file_path, f'not a readable product: {exc}') from exc


# ---------------------------------------------------------------------------
# registration
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PluginEntry:
    """One registration: which chooser, which strategy, under which names."""

    chooser: str
    factory: Callable[[], Any]
    simple_name: str
    display_name: str
    with_adapters: bool = False


PLUGINS: tuple[PluginEntry, ...] = (
    PluginEntry('diffraction_file_readers', NPZDiffractionFileReader, NPZ_SIMPLE_NAME, NPZ_DISPLAY_NAME),
    PluginEntry('diffraction_file_writers', NPZDiffractionFileWriter, NPZ_SIMPLE_NAME, NPZ_DISPLAY_NAME),
    PluginEntry('product_file_readers', NPZProductFileReader, NPZ_SIMPLE_NAME, NPZ_DISPLAY_NAME, True),
    PluginEntry('product_file_writers', NPZProductFileWriter, NPZ_SIMPLE_NAME, NPZ_DISPLAY_NAME),
    PluginEntry('diffraction_file_readers', BundledDiffractionFileReader, H5_SIMPLE_NAME, H5_DISPLAY_NAME),
    PluginEntry('product_file_readers', BundledProductFileReader, H5_SIMPLE_NAME, H5_DISPLAY_NAME, True),
)


def register_plugins(registry: PluginRegistry) -> None:
    """Entry point of the ``ptychodus.plugins`` group; idempotent per registry."""
    for entry in PLUGINS:
        chooser = getattr(registry, entry.chooser)
        if any(plugin.simple_name == entry.simple_name for plugin in chooser):
            logger.debug('%s already registered in %s; skipping', entry.simple_name, entry.chooser)
            continue
        strategy = entry.factory()
        if entry.with_adapters:
            registry.register_product_file_reader_with_adapters(
                strategy, simple_name=entry.simple_name, display_name=entry.display_name
            )
        else:
            chooser.register_plugin(strategy, simple_name=entry.simple_name, display_name=entry.display_name)
