"""Issue 17.6: our training export vs Ptychodus's ``save_ptychopinn_training_data``, same assembled data.

Each measurement runs in a fresh process: it builds the assembled data
(float32 intensities in memory, as Ptychodus holds them, a single-mode probe,
an object and positions), records its RSS, then exports once; we report the
wall time and the peak RSS *above* the assembled data. Usage::

    python benchmarks/bench_training.py --quick        # ~16 MB smoke run
    python benchmarks/bench_training.py                # 0.5 GB and 2 GB
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PATTERN_PX = 128


def _rss_bytes() -> int:
    with open('/proc/self/statm') as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def _measure(which: str, size_bytes: int, out: Path) -> dict[str, float]:
    from ptychodus.api.io import save_ptychopinn_training_data
    from ptychodus.api.reconstruct import ReconstructInput

    from ptychopinn_ptychodus.cli.console import pin_malloc_mmap_threshold
    from ptychopinn_ptychodus.convert.training_npz import TrainingData, blocks_of, write_training_npz
    from ptychopinn_ptychodus.facts.geometry import ObjectGrid
    from ptychopinn_ptychodus.host.plugin import to_ptychodus_product
    from ptychopinn_ptychodus.product.layout import Product, ProductMetadata

    pin_malloc_mmap_threshold()
    count = max(1, size_bytes // (PATTERN_PX * PATTERN_PX * 4))
    patterns = np.empty((count, PATTERN_PX, PATTERN_PX), np.float32)
    for start in range(0, count, 256):
        patterns[start : start + 256] = 1.0 + (start % 7)
    side = int(np.ceil(np.sqrt(count)))
    grid = ObjectGrid(width_px=side * 4 + 256, height_px=side * 4 + 256, pixel_width_m=1e-8, pixel_height_m=1e-8)
    k = np.arange(count)
    x_m = (k % side - side / 2) * 4e-8
    y_m = (k // side - side / 2) * 4e-8
    probe = np.ones((PATTERN_PX, PATTERN_PX), np.complex64)
    obj = np.ones((grid.height_px, grid.width_px), np.complex64)
    base = _rss_bytes()
    start_s = time.perf_counter()
    if which == 'ours':
        data = TrainingData(blocks_of(patterns), patterns.shape, probe, obj, grid, x_m, y_m,
                            bad_pixels=np.zeros(patterns.shape[1:], bool))
        write_training_npz(out, data, overwrite=True)
    else:
        core = Product(ProductMetadata(values={'photon_energy_eV': 8000.0, 'detector_distance_m': 1.0}),
                       probe[None, None], 1e-8, 1e-8, obj[None], grid, k.astype(np.int64), x_m, y_m)
        inputs = ReconstructInput(patterns, np.zeros(patterns.shape[1:], bool), to_ptychodus_product(core))
        save_ptychopinn_training_data(out, inputs)
    seconds = time.perf_counter() - start_s
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {'seconds': seconds, 'extra_rss_mb': max(0, peak - base) / 1e6, 'data_mb': patterns.nbytes / 1e6}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--quick', action='store_true', help='one small size (smoke run)')
    parser.add_argument('--child', nargs=3, metavar=('WHICH', 'BYTES', 'OUT'), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        which, size, out = args.child
        print(json.dumps(_measure(which, int(size), Path(out))))
        return 0
    sizes = [16 << 20] if args.quick else [512 << 20, 2 << 30]
    print(f'{"size":>8} {"ours s":>8} {"theirs s":>9} {"time ratio":>10} {"ours +MB":>9} {"theirs +MB":>10}')
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            row = {}
            for which in ('ours', 'theirs'):
                out = Path(tmp) / f'{which}.npz'
                done = subprocess.run([sys.executable, __file__, '--child', which, str(size), str(out)],
                                      check=True, capture_output=True, text=True)
                row[which] = json.loads(done.stdout.strip().splitlines()[-1])
                out.unlink()
            ours, theirs = row['ours'], row['theirs']
            print(f'{ours["data_mb"]:>6.0f}MB {ours["seconds"]:>8.2f} {theirs["seconds"]:>9.2f} '
                  f'{theirs["seconds"] / ours["seconds"]:>10.2f} {ours["extra_rss_mb"]:>9.0f} '
                  f'{theirs["extra_rss_mb"]:>10.0f}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
