"""Ptychodus readers and writers for PtychoPINN data: thin adapters over the core.

Everything format-specific (validation, layouts, amplitude/intensity, geometry,
HDF5) lives in the converter core; this module only translates between core
objects and Ptychodus's API objects, through :mod:`compat` where Ptychodus
releases differ. :data:`PLUGINS` is the single list of what we register:
:func:`register_plugins`, ``doctor`` and the tests all read it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import ptychodus.api.diffraction as host_diffraction
from ptychodus.api.diffraction import (
    DiffractionArray,
    DiffractionDataset,
    DiffractionDatasetLayoutNode,
    DiffractionFileReader,
    DiffractionFileWriter,
    DiffractionMetadata,
    SimpleDiffractionDataset,
)
from ptychodus.api.geometry import ImageExtent, PixelGeometry
from ptychodus.api.object import Object, ObjectCenter, ObjectGeometry
from ptychodus.api.plugins import PluginRegistry
from ptychodus.api.probe import ProbeSequence
from ptychodus.api.probe_positions import ProbePosition, ProbePositionSequence
from ptychodus.api.product import Product, ProductFileReader, ProductFileWriter, ProductMetadata

from ..convert.export import assemble_product
from ..convert.importer import (
    BundledStack,
    describe_bundled_stack,
    load_product_file,
    read_bundled_intensities,
)
from ..convert.npz_export import write_diffraction_npz, write_product_npz
from ..convert.resolve import resolve_meta
from ..convert.sidecar import load_intensities, open_with_sidecar
from ..facts.errors import InvalidInputError, OutputError
from ..facts.geometry import ObjectGrid, derive_detector_pixel_m
from ..facts.stack import Domain
from ..npz.dataset import PtychoPINNDataset
from ..product.layout import Product as CoreProduct
from ..product.layout import ProductMetadata as CoreMetadata
from ..product.layout import read_product
from . import compat

logger = logging.getLogger(__name__)

NPZ_SIMPLE_NAME = 'PtychoPINN_NPZ'
NPZ_DISPLAY_NAME = 'PtychoPINN NumPy Zipped Archive (*.npz)'
H5_SIMPLE_NAME = 'PtychoPINN_Product_H5'
H5_DISPLAY_NAME = 'PtychoPINN Converted Product (*.h5 *.hdf5)'


def _region(read_region: Any) -> tuple[slice, slice] | None:
    """A Ptychodus crop (``CropRegion``, 1.6+) as (rows, columns) slices; 1.5.1 never crops here."""
    return None if read_region is None else (read_region.y_slice, read_region.x_slice)


class _LazyArray(DiffractionArray):
    """Patterns stay in the file until Ptychodus asks; a crop is applied before squaring.

    ``get_patterns`` takes an optional keyword ``read_region``: Ptychodus 1.6+
    passes it, 1.5.1 calls without arguments.
    """

    def __init__(
        self, label: str, num_patterns: int, load: Callable[[tuple[slice, slice] | None], np.ndarray]
    ) -> None:
        self._label = label
        self._indexes = np.arange(num_patterns, dtype=np.int64)
        self._load = load

    def get_label(self) -> str:
        return self._label

    def get_indexes(self) -> Any:
        return self._indexes

    def get_num_patterns(self) -> int:
        return int(self._indexes.size)

    def get_patterns(self, *, read_region: Any = None) -> Any:
        return self._load(_region(read_region))


def _layout_tree(entries: list[tuple[str, str, str]]) -> DiffractionDatasetLayoutNode:
    root = DiffractionDatasetLayoutNode.create_root()
    for name, dtype, details in entries:
        root.add_child(name, dtype, details)
    return root


def _diffraction_dataset(
    file_path: Path,
    *,
    num: int,
    height: int,
    width: int,
    dtype: np.dtype[Any],
    quantities: dict[str, Any],
    layout: list[tuple[str, str, str]],
    bad_pixels: np.ndarray | None,
    load: Callable[[tuple[slice, slice] | None], np.ndarray],
) -> DiffractionDataset:
    pixel = (
        None
        if quantities.get('detector_pixel_width_m') is None
        else PixelGeometry(quantities['detector_pixel_width_m'], quantities['detector_pixel_height_m'])
    )
    metadata = compat.diffraction_metadata(
        DiffractionMetadata,
        {
            'num_patterns_per_array': [num],
            'pattern_dtype': dtype,
            'detector_extent': ImageExtent(width_px=width, height_px=height),
            'detector_distance_m': quantities.get('detector_distance_m'),
            'photon_energy_eV': quantities.get('photon_energy_eV'),
            'detector_pixel_geometry': pixel,
            'file_path': file_path,
            # PtychoPINN patterns are fftshifted: zero frequency at pixel N // 2 (x = column, y = row),
            # so the Open Dataset wizard's crop keeps the centre, not Ptychodus's default (32, 32) corner
            **compat.beam_center(host_diffraction, width // 2, height // 2),
        },
    )
    arrays = [_LazyArray(file_path.stem, num, load)] if num > 0 else []
    return SimpleDiffractionDataset(metadata, _layout_tree(layout), arrays, bad_pixels)


GEOMETRY_ONLY = 'GEOMETRY ONLY (no measured patterns)'


def _no_patterns(region: tuple[slice, slice] | None) -> np.ndarray:
    raise RuntimeError('a geometry-only dataset holds no diffraction patterns')


def _geometry_only_dataset(
    file_path: Path,
    *,
    height: int,
    width: int,
    quantities: dict[str, Any],
    layout: list[tuple[str, str, str]],
) -> DiffractionDataset:
    """Zero patterns, only the detector geometry, for a reconstruction file without a stack.

    Ptychodus (1.5.1-1.7) takes a product's object/probe pixel geometry from the
    dataset it is bound to, so an unbound reconstruction shows an empty object and
    probe. This dataset lets it bind without inventing a single measurement:
    there is nothing to reconstruct from, and the layout tree says so.
    """
    note = (
        'this file has no diffraction stack; Ptychodus gets only the detector geometry '
        f'({width}x{height} px, the probe size) so that the reconstruction can be shown'
    )
    return _diffraction_dataset(
        file_path,
        num=0,
        height=height,
        width=width,
        dtype=np.dtype(np.float32),
        quantities=quantities,
        layout=[(GEOMETRY_ONLY, 'none', note), *layout],
        bad_pixels=np.zeros((height, width), dtype=bool),
        load=_no_patterns,
    )


class NPZDiffractionFileReader(DiffractionFileReader):
    """Every NPZ flavour the core reads, delivered as intensities."""

    def read(self, file_path: Path) -> DiffractionDataset:
        dataset, meta = open_with_sidecar(file_path, require_probe=False, require_positions=False)
        with dataset:
            if dataset.diffraction is None:
                return _npz_geometry_only(file_path)
            info = dataset.require_stack()
            # the same (possibly defaulted, always warned) physics as the product reader,
            # so Ptychodus derives the same object pixel as the product's
            values = resolve_meta(dataset, meta, need_detector=True).values
            return _diffraction_dataset(
                file_path,
                num=info.num_patterns,
                height=info.height,
                width=info.width,
                dtype=info.output_dtype(Domain.INTENSITY),
                quantities=values,
                layout=_npz_layout(dataset),
                bad_pixels=dataset.bad_pixels,
                load=lambda region: load_intensities(file_path, region),
            )


def _npz_geometry_only(file_path: Path) -> DiffractionDataset:
    """A reconstruction NPZ (e.g. Run1084): geometry only, so that its product can bind.

    The physics are resolved exactly as the product reader resolves them, so Ptychodus
    derives the product's own object pixel from this dataset.
    """
    dataset, meta = open_with_sidecar(file_path, require_probe=True)
    with dataset:
        assert dataset.probe is not None  # require_probe
        values = resolve_meta(dataset, meta, need_detector=True).values
        height, width = (int(n) for n in np.shape(dataset.probe)[-2:])
        return _geometry_only_dataset(
            file_path, height=height, width=width, quantities=values, layout=_npz_layout(dataset)
        )


def _npz_layout(dataset: PtychoPINNDataset) -> list[tuple[str, str, str]]:
    info = dataset.diffraction
    entries = []
    for key, member in dataset.store.members.items():
        details = f'shape {member.shape}'
        if info is not None and key == info.key:
            details += f', layout {info.layout.value}, {info.domain.value} ({info.domain_reason})'
        entries.append((key, str(member.dtype), details))
    entries.append(('position convention', 'str', dataset.describe_convention()))
    entries.append(('Ptychodus crop', 'str', compat.CROP_NOTE))
    return entries


class NPZDiffractionFileWriter(DiffractionFileWriter):
    """Ptychodus diffraction -> PtychoPINN NPZ: ``diffraction`` as amplitude, domain recorded.

    Ptychodus hands over its *processed* patterns (cropped, binned, padded), while
    ``metadata.detector_extent`` and ``detector_pixel_geometry`` stay those of the raw
    detector (1.5.1, 1.6, 1.7): shapes, mask and pixel size are therefore taken from
    the arrays and the assembled data, never from the metadata.
    """

    def write(self, file_path: Path, dataset: DiffractionDataset) -> None:
        arrays = [array for array in dataset if array.get_num_patterns() > 0]
        if not arrays:
            # Ptychodus fills the dataset only once its load task has run (run_tasks() headless)
            raise OutputError(
                file_path,
                'no diffraction patterns are assembled yet: wait until the dataset has loaded '
                '(headless: block=True and core.run_tasks()) before saving',
            )
        height, width = np.asarray(arrays[0].get_patterns()).shape[-2:]
        num = sum(int(array.get_num_patterns()) for array in arrays)
        metadata = dataset.get_metadata()
        quantities = compat.diffraction_quantities(metadata)
        pixel = compat.processed_pixel_geometry(dataset)
        if pixel is not None:
            quantities['detector_pixel_width_m'] = pixel.width_m
            quantities['detector_pixel_height_m'] = pixel.height_m
        write_diffraction_npz(
            file_path,
            _pattern_blocks(arrays),
            shape=(num, int(height), int(width)),
            source_dtype=np.dtype(metadata.pattern_dtype),
            bad_pixels=_processed_bad_pixels(file_path, dataset, (int(height), int(width))),
            indexes=np.concatenate([np.asarray(a.get_indexes(), np.int64) for a in arrays]),
            quantities=quantities,
        )


_WRITE_BLOCK_BYTES = 64 * 2**20


def _pattern_blocks(arrays: list[DiffractionArray]) -> Iterator[np.ndarray]:
    """Every array's patterns in row blocks of ~64 MB (assembled patterns are views; no copy here)."""
    for array in arrays:
        patterns = np.asarray(array.get_patterns())
        rows = max(1, _WRITE_BLOCK_BYTES // max(1, patterns[:1].nbytes))
        for start in range(0, patterns.shape[0], rows):
            yield patterns[start : start + rows]


def _processed_bad_pixels(file_path: Path, dataset: DiffractionDataset, shape: tuple[int, int]) -> np.ndarray:
    """The bad-pixel mask at the processed pattern shape.

    ``dataset.get_bad_pixels()`` is the raw detector mask in 1.5.1-1.7; the assembled
    data hold the mask after Ptychodus's own crop/bin (``AssembledDiffractionData.get_bad_pixels``).
    """
    candidates = [compat.assembled_bad_pixels(dataset), dataset.get_bad_pixels()]
    for candidate in candidates:
        if candidate is not None and np.shape(candidate) == shape:
            return np.asarray(candidate, dtype=bool)
    raw = candidates[1]
    if raw is None or not np.any(raw):
        return np.zeros(shape, dtype=bool)  # no bad pixel anywhere: exact at any shape
    raise OutputError(
        file_path, f'the bad-pixel mask {np.shape(raw)} cannot be matched to the processed patterns {shape}'
    )


class BundledDiffractionFileReader(DiffractionFileReader):
    """A converted product's ``/raw_data`` as Ptychodus diffraction (intensities)."""

    def read(self, file_path: Path) -> DiffractionDataset:
        try:  # one open for the common case; a product without a stack is the rare one
            stack: BundledStack = describe_bundled_stack(file_path)
        except InvalidInputError as exc:
            # only "no stack" leads to the geometry-only dataset; a corrupt file is refused at once
            # (every further open would pay libhdf5's termination check again)
            if 'diffraction (M, N, N) stack' not in str(exc) or has_bundled_stack(file_path):
                raise
            return _bundled_geometry_only(file_path)
        shape = (stack.num_patterns, stack.height, stack.width)
        squared = ' (squared on read)' if stack.stored_domain == Domain.AMPLITUDE else ''
        details = f'shape {shape}, {stack.stored_domain.value}{squared}'
        layout = [('/raw_data/diffraction', stack.stored_dtype, details)]
        layout += [(key, type(value).__name__, str(value)) for key, value in stack.attrs.items()]
        layout.append(('position convention', 'str', stack.position_convention))
        return _diffraction_dataset(
            file_path,
            num=stack.num_patterns,
            height=stack.height,
            width=stack.width,
            dtype=stack.dtype,
            quantities={
                'detector_distance_m': stack.detector_distance_m,
                'photon_energy_eV': stack.photon_energy_eV,
            },
            layout=layout,
            bad_pixels=stack.bad_pixels,
            load=lambda region: read_bundled_intensities(stack, region),
        )


def has_bundled_stack(file_path: Path) -> bool:
    """Whether a product ``.h5`` bundles a ``/raw_data/diffraction`` stack."""
    _, bundle, h5 = read_product(file_path)
    with h5:
        return bundle is not None and bundle.diffraction is not None


def _bundled_geometry_only(file_path: Path) -> DiffractionDataset:
    """A product ``.h5`` without ``/raw_data``: the detector pixel that gives back its object pixel."""
    product = load_product_file(file_path)
    height, width = (int(n) for n in product.probe.shape[-2:])
    values = product.metadata.values
    energy, distance = values.get('photon_energy_eV', 0.0), values.get('detector_distance_m', 0.0)
    quantities: dict[str, Any] = {'detector_distance_m': distance, 'photon_energy_eV': energy}
    if energy > 0 and distance > 0:
        quantities['detector_pixel_width_m'] = derive_detector_pixel_m(
            photon_energy_eV=energy, detector_distance_m=distance, pattern_px=width,
            object_pixel_m=product.grid.pixel_width_m,
        )
        quantities['detector_pixel_height_m'] = derive_detector_pixel_m(
            photon_energy_eV=energy, detector_distance_m=distance, pattern_px=height,
            object_pixel_m=product.grid.pixel_height_m,
        )
    return _geometry_only_dataset(file_path, height=height, width=width, quantities=quantities, layout=[])


# ---------------------------------------------------------------------------
# products
# ---------------------------------------------------------------------------


def _host_offset() -> float:
    return compat.host_pixel_offset(ObjectGeometry, ProbePosition)


def to_ptychodus_product(product: CoreProduct) -> Product:
    """Core product -> Ptychodus API object (no geometry left for Ptychodus to guess).

    Positions are handed over in the running host's own pixel convention, so
    its mapping puts them on the object pixels the core computed.
    """
    grid = product.grid
    x_px, y_px = grid.metres_to_pixels(product.position_x_m, product.position_y_m)
    offset = _host_offset()
    x_m, y_m = grid.pixels_to_metres(x_px - offset, y_px - offset)
    positions = ProbePositionSequence(
        [
            ProbePosition(int(index), float(x), float(y))
            for index, x, y in zip(product.position_indexes, x_m, y_m, strict=True)
        ]
    )
    meta = product.metadata
    return Product(
        metadata=compat.product_metadata(ProductMetadata, meta.name, meta.comments, meta.values),
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
            center=compat.object_center(ObjectCenter, grid.center_x_m, grid.center_y_m),
            layer_spacing_m=[float(v) for v in product.layer_spacing_m],
        ),
        losses=[],
    )


def from_ptychodus_product(product: Product) -> CoreProduct:
    """Ptychodus API object -> core product (the inverse of :func:`to_ptychodus_product`)."""
    geometry = product.object_.get_geometry()
    probes = product.probes
    probe_geometry = probes.get_pixel_geometry()
    name, comments, values = compat.product_metadata_values(product.metadata)
    grid = ObjectGrid(
        width_px=geometry.width_px,
        height_px=geometry.height_px,
        pixel_width_m=geometry.pixel_width_m,
        pixel_height_m=geometry.pixel_height_m,
        center_x_m=geometry.center_x_m,
        center_y_m=geometry.center_y_m,
    )
    indexes, x_m, y_m = compat.position_arrays(product.probe_positions)
    x_px, y_px = grid.metres_to_pixels(x_m, y_m)
    offset = _host_offset()
    x_m, y_m = grid.pixels_to_metres(x_px + offset, y_px + offset)
    return CoreProduct(
        metadata=CoreMetadata(name=name, comments=comments, values=values),
        probe=np.asarray(probes.get_array()),
        probe_pixel_width_m=probe_geometry.width_m,
        probe_pixel_height_m=probe_geometry.height_m,
        object=np.asarray(product.object_.get_array()),
        grid=grid,
        position_indexes=indexes,
        position_x_m=x_m,
        position_y_m=y_m,
        layer_spacing_m=np.asarray(product.object_.layer_spacing_m, dtype=np.float64),
    )


class NPZProductFileReader(ProductFileReader):
    """Probe, object and positions of a PtychoPINN NPZ, placed as the converter places them.

    Values come from the sidecar (``run.json``), then the file's own keys (as our
    writer adds them), then documented defaults that are logged as warnings.
    """

    def read(self, file_path: Path) -> Product:
        dataset, meta = open_with_sidecar(file_path, require_probe=True)
        with dataset:
            # Ptychodus reconstructs this probe against the same file's patterns: a probe of another
            # size (PtychoPINN's downsample_data_tool on a 'diffraction' file) must not get that far.
            dataset.require_matching_probe()
            return to_ptychodus_product(assemble_product(dataset, resolve_meta(dataset, meta)))


class NPZProductFileWriter(ProductFileWriter):
    """Ptychodus product -> PtychoPINN NPZ (probe 2D when single-mode, geometry keys kept)."""

    def write(self, file_path: Path, product: Product) -> None:
        write_product_npz(file_path, from_ptychodus_product(product))


class BundledProductFileReader(ProductFileReader):
    """A product ``.h5`` (ours, or written by PtychoPINN's exporter) through the core reader."""

    def read(self, file_path: Path) -> Product:
        return to_ptychodus_product(load_product_file(file_path))


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
