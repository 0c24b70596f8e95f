"""``make demo``: simulate a dataset, convert it, validate it with Ptychodus, preview it.

Run as ``python -m ptychopinn_ptychodus.demo OUTPUT_DIR``. Everything it writes
goes into OUTPUT_DIR (git-ignored).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np

from ..convert.sidecar import legacy_sidecar_path, sidecar_path
from ..host.compat import find_strategy, host_object_pixels, host_pixel_offset, position_arrays
from .convert import main as convert
from .sample import write_sample

#: The experiment's metadata, as the sidecar ``<stem>.json`` next to the NPZ (the file dialog's only source).
DEMO_METADATA = {
    'object_pixel_size_m': 5e-8,
    'photon_energy_eV': 8000.0,
    'detector_distance_m': 2.0,
    'object_center_x_m': 1e-6,
    'object_center_y_m': -0.7e-6,
}


def preview(product_path: Path, png_path: Path) -> None:
    """Object amplitude/phase, probe and scan positions as Ptychodus loads them."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from ptychodus.api.io import load_product

    product = load_product(product_path)
    geometry = product.object_.get_geometry()
    obj = product.object_.get_layer(0)
    probe = product.probes.get_array()[0, 0]
    extent_um = [
        1e6 * (geometry.minimum_x_m),
        1e6 * (geometry.minimum_x_m + geometry.width_m),
        1e6 * (geometry.minimum_y_m + geometry.height_m),
        1e6 * geometry.minimum_y_m,
    ]
    fig, axes = plt.subplots(1, 4, figsize=(17, 4.4), constrained_layout=True)
    for ax, image, title in (
        (axes[0], np.abs(obj), 'object amplitude'),
        (axes[1], np.angle(obj), 'object phase (rad)'),
    ):
        shown = ax.imshow(image, extent=extent_um, cmap='gray' if 'ampl' in title else 'twilight')
        ax.set_title(title)
        ax.set_xlabel('x (µm)')
        fig.colorbar(shown, ax=ax, shrink=0.8)
    axes[0].set_ylabel('y (µm)')
    axes[2].imshow(np.abs(probe), cmap='magma')
    axes[2].set_title(f'probe amplitude {probe.shape[1]}x{probe.shape[0]} px')
    axes[3].imshow(np.abs(obj), extent=extent_um, cmap='gray')
    _, x_m, y_m = position_arrays(product.probe_positions)
    x_um, y_um = 1e6 * x_m, 1e6 * y_m
    axes[3].plot(x_um, y_um, '.-', color='tab:orange', markersize=3, linewidth=0.5)
    axes[3].set_title(f'{len(x_um)} scan positions (Ptychodus)')
    fig.suptitle(f'{product.metadata.name}: Ptychodus product from a PtychoPINN NPZ')
    fig.savefig(png_path, dpi=90)
    plt.close(fig)


def validate(npz_path: Path, product_path: Path, diffraction_path: Path) -> list[str]:
    """Reload with Ptychodus's own loaders and compare with the source arrays."""
    from ptychodus.api.io import load_diffraction_data, load_product

    lines: list[str] = []
    with np.load(npz_path) as source:
        product = load_product(product_path)
        geometry = product.object_.get_geometry()
        x_px, y_px = host_object_pixels(geometry, product.probe_positions)
        # PtychoPINN's probe sits at patch index N//2; Ptychodus's at (N-1)/2: half a pixel for even N.
        # A product file's metres follow Ptychodus >= 1.6; Ptychodus 1.5.1 maps them with W/2 (+0.5 px).
        n = source['probeGuess'].shape[-1]
        offset = n // 2 - (n - 1) / 2
        host = host_pixel_offset(type(geometry), type(next(iter(product.probe_positions))))
        err = max(
            np.abs(x_px - (source['xcoords'] - offset + host)).max(),
            np.abs(y_px - (source['ycoords'] - offset + host)).max(),
        )
        indexes, _, _ = position_arrays(product.probe_positions)
        same_object = np.array_equal(product.object_.get_layer(0), source['objectGuess'])
        by_host = f', + {host:g} px by this host' if host else ''
        lines.append(
            f'product: {len(indexes)} positions, indexes 0..{indexes.max()}, max error against '
            f'xcoords - {offset:g} px (PtychoPINN convention{by_host}) '
            f'{err:.2e} px, object identical: {same_object}'
        )
        data = load_diffraction_data(diffraction_path)
        patterns = data.get_patterns()
        expected = source['diffraction'].astype(np.float32) ** 2
        lines.append(
            f'diffraction: {patterns.shape} intensities, max relative error '
            f'{np.max(np.abs(patterns - expected) / np.maximum(expected, 1e-12)):.1e}'
        )
        ok = err < 1e-6 and same_object and np.array_equal(indexes, np.arange(len(indexes)))
    if not ok:
        raise SystemExit('demo: validation FAILED')
    return lines


def registry_report(npz_path: Path) -> list[str]:
    """Open the NPZ through Ptychodus's plugin registry, as the GUI would."""
    from ptychodus.api.plugins import PluginRegistry

    logging.getLogger('ptychodus').setLevel(logging.ERROR)
    # the conversion above already showed this file's notes: reading it again must not repeat them
    logging.getLogger('ptychopinn_ptychodus').setLevel(logging.ERROR)
    registry = PluginRegistry.load_plugins()
    lines = []
    reader = find_strategy(registry.diffraction_file_readers, 'PtychoPINN_NPZ')
    dataset = reader.read(npz_path)
    meta = dataset.get_metadata()
    extent = meta.detector_extent
    lines.append(
        f'Ptychodus diffraction reader PtychoPINN_NPZ: {meta.num_patterns_per_array} patterns '
        f'of {extent.width_px}x{extent.height_px}, dtype {meta.pattern_dtype}'
    )
    for node in dataset.get_layout().children:
        lines.append(f'    {node.name}: {node.dtype} {node.details}')
    product = find_strategy(registry.product_file_readers, 'PtychoPINN_NPZ').read(npz_path)
    lines.append(
        f'Ptychodus product reader PtychoPINN_NPZ: object {product.object_.get_geometry()}, '
        f'{len(product.probe_positions)} positions'
    )
    return lines


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0] if args else 'demo_output')
    out.mkdir(parents=True, exist_ok=True)
    npz = out / 'sample_ptychopinn.npz'
    product = out / 'sample_product.h5'
    diffraction = out / 'sample_diffraction.h5'
    png = out / 'sample_preview.png'
    write_sample(npz, pattern_px=64, scan_side=10, step_px=8, object_kind='star')
    print(f'1. simulated PtychoPINN dataset: {npz}')
    sidecar = sidecar_path(npz)  # the name the plugin and the converter look for
    sidecar.write_text(json.dumps(DEMO_METADATA, indent=1))
    print(f'   its metadata: {sidecar} (read by the converter and by Ptychodus\'s file dialog alike)')
    legacy = legacy_sidecar_path(npz)
    if legacy.is_file():  # an earlier demo wrote the sidecar under the 0.2.0 name: one sidecar, not two
        legacy.unlink()
        print(f'   removed {legacy}: an earlier demo\'s copy of it, under the sidecar name of 0.2.0')
    code = convert(
        [
            '--input-npz',
            str(npz),
            '--output-product',
            str(product),
            '--output-diffraction',
            str(diffraction),
            '--overwrite',
            '--name',
            'demo',
        ]
    )
    if code:
        return code
    print(f'2. converted: {product} and {diffraction}')
    for line in validate(npz, product, diffraction):
        print(f'3. {line}')
    preview(product, png)
    print(f'4. preview: {png}')
    for line in registry_report(npz):
        print(f'5. {line}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
