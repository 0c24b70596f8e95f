"""Conversion benchmark: ours against a naive and a PtychoPINN-style conversion, in one run.

    python benchmarks/bench_convert.py [--sizes-gb 0.5 2] [--kinds speckle smooth counts_u16 ...]
                                       [--large-kinds speckle counts_u16] [--workdir DIR]
    python benchmarks/bench_convert.py --sizes-gb 0.05 0.1 --kinds speckle counts_u16 --skip-host  # quick check

Stack kinds, 128 x 128 patterns; a size is that of a float32 stack with as many
patterns, so every kind at "0.5 GB" has 8192 patterns whatever its dtype:

* ``speckle``: float32 amplitudes, sqrt of Poisson speckle (the original benchmark stack; NHW and HWN)
* ``smooth``: float32 amplitudes, rolled copies of 4 smooth fields x envelope (max ~1), random scale
  0.5-1.5, quantised to 1/4096
* ``counts_u16`` / ``counts_i32``: Poisson photon counts of speckle under an envelope (``diffraction``)
* ``intens_f32``: the same counts as float32 intensities (``diff3d``, recognised as counts)

Every measurement runs in a fresh subprocess that reports its own wall time and
peak RSS (VmHWM), so the figures are comparable within a run; compare ratios, not
absolute times. At the smallest size, per kind: *naive* (``numpy.load``, one h5py
write), *PtychoPINN-style* (the same with gzip 4 + shuffle and h5py's default
chunks, the source array as the NPZ holds it), a plain ``cp`` of the NPZ (the
floor of the uncompressed path; ``cp`` + fsync too, since our writer fsyncs before
publishing), ours without and with gzip (the CLI, product with ``/raw_data``),
for count/intensity kinds our diffraction file (intensities in the source dtype),
and the array our product stores written by plain h5py and with the previous
chunk rule (<= 256 x 8 x 8), from which a centred 64 x 64 crop of all patterns is
read (``dset[:, 32:96, 32:96]``) against ours. At larger sizes only ours runs (RSS
flatness). Writes a JSON record to benchmarks/results/ and prints Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
PATTERN_PX = 128
CROP_PX = 64
BLOCK = 256  # patterns per generated block


@dataclass(frozen=True)
class Kind:
    dtype: str
    key: str  # NPZ member holding the stack
    domain: str  # what the converter decides the stack holds
    text: str


KINDS = {
    'speckle': Kind('float32', 'diffraction', 'amplitude', 'float32 amplitude, Poisson speckle'),
    'smooth': Kind('float32', 'diffraction', 'amplitude', 'float32 amplitude, smooth, 1/4096'),
    'counts_u16': Kind('uint16', 'diffraction', 'intensity', 'uint16 Poisson counts'),
    'counts_i32': Kind('int32', 'diffraction', 'intensity', 'int32 Poisson counts'),
    'intens_f32': Kind('float32', 'diff3d', 'intensity', 'float32 intensities (counts)'),
}


# ---------------------------------------------------------------------------
# workers (run in a subprocess each)
# ---------------------------------------------------------------------------


def peak_rss_mb() -> float:
    """This process's own high-water RSS (VmHWM).

    ``getrusage().ru_maxrss`` is not usable here: Linux carries the parent's
    high-water mark across fork+exec, so every worker would report the driver's.
    """
    with open('/proc/self/status', encoding='ascii') as status:
        for line in status:
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _report(start: float, **extra: object) -> None:
    print(json.dumps({'seconds': time.perf_counter() - start, 'peak_rss_mb': peak_rss_mb(), **extra}))


def _load_all(npz: str, layout: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    with np.load(npz) as data:
        key = 'diffraction' if 'diffraction' in data.files else 'diff3d'
        stack = data[key]
        small = {k: data[k] for k in data.files if k != key}
    if layout == 'HWN':
        stack = np.moveaxis(stack, -1, 0)
    return stack, small


def worker_naive(npz: str, out: str, layout: str) -> None:
    """Everything in memory: numpy.load, then one h5py write (no compression)."""
    import h5py

    start = time.perf_counter()
    stack, small = _load_all(npz, layout)
    with h5py.File(out, 'w') as h5:
        h5.create_dataset('raw_data/diffraction', data=stack)
        for key, value in small.items():
            h5.create_dataset(f'raw_data/{key}', data=value)
    _report(start)


def worker_ptychopinn(npz: str, out: str, layout: str) -> None:
    """PtychoPINN-style: in memory, single-threaded gzip level 4 + shuffle, h5py's default chunks."""
    import h5py

    start = time.perf_counter()
    stack, small = _load_all(npz, layout)
    with h5py.File(out, 'w') as h5:
        dset = h5.create_dataset('raw_data/diffraction', data=stack, compression='gzip',
                                 compression_opts=4, shuffle=True)
        chunks = list(dset.chunks)
        for key, value in small.items():
            h5.create_dataset(f'raw_data/{key}', data=value)
    _report(start, chunks=chunks, stored_dtype=str(stack.dtype))


def worker_ours(npz: str, out: str, compression: str, target: str = 'product') -> None:
    """Our converter exactly as the command line runs it (product, or the diffraction file alone)."""
    import h5py

    from ptychopinn_ptychodus.cli import main

    argv = ['--input-npz', npz, '--quiet', '--compression', compression, '--compression-level', '4',
            '--object-pixel-size-m', '5e-8', '--probe-energy-eV', '8000', '--detector-distance-m', '1']
    if target == 'product':
        argv += ['--output-product', out]
        key = 'raw_data/diffraction'
    else:  # the diffraction file: intensities in the source dtype; a product without /raw_data beside it
        argv += ['--output-product', out + '.product.h5', '--no-include-diffraction', '--output-diffraction', out]
        key = 'patterns'
    start = time.perf_counter()
    code = main(argv)
    if code:
        raise SystemExit(code)
    elapsed = time.perf_counter() - start
    peak = peak_rss_mb()
    with h5py.File(out, 'r') as h5:
        dset = h5[key]
        chunks = list(dset.chunks) if dset.chunks else None
        stored = str(dset.dtype)
    if target != 'product':
        os.unlink(out + '.product.h5')
    print(json.dumps({'seconds': elapsed, 'peak_rss_mb': peak, 'chunks': chunks, 'stored_dtype': stored}))


def worker_cp(npz: str, out: str) -> None:
    """A plain ``cp`` of the input (the physical floor of the uncompressed path), then its fsync."""
    start = time.perf_counter()
    subprocess.run(['cp', npz, out], check=True)
    copied = time.perf_counter() - start
    fd = os.open(out, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    print(json.dumps({'seconds': copied, 'fsync_seconds': time.perf_counter() - start - copied,
                      'peak_rss_mb': peak_rss_mb()}))


def old_chunks(shape: tuple[int, ...], itemsize: int) -> tuple[int, int, int]:
    """The chunk rule before the 16 x 16 / 8 x 8, 512-deep one: at most 256 patterns x 8 x 8 px, 16 MB a row."""
    count, height, width = shape
    rows = max(1, min(count, 256, (16 << 20) // max(1, height * width * itemsize)))
    return rows, min(height, 8), min(width, 8)


def worker_references(product: str, plain_out: str, old_out: str) -> None:
    """The array our product stores, written by plain h5py (default chunks) and with the old chunk rule.

    Both single-threaded through HDF5's own shuffle + deflate; ``plain_out='-'`` skips the first
    (when the product stores the source array unchanged, the PtychoPINN-style run already is it).
    """
    import h5py

    with h5py.File(product, 'r') as h5:
        stack = h5['raw_data/diffraction'][...]
    record: dict[str, object] = {'stored_dtype': str(stack.dtype)}
    for label, out, chunks in (('plain', plain_out, True), ('old', old_out, old_chunks(stack.shape, stack.itemsize))):
        if out == '-':
            continue
        start = time.perf_counter()
        with h5py.File(out, 'w') as h5:
            dset = h5.create_dataset('raw_data/diffraction', data=stack, chunks=chunks, compression='gzip',
                                     compression_opts=4, shuffle=True)
            record[f'{label}_chunks'] = list(dset.chunks)
        record[f'{label}_seconds'] = time.perf_counter() - start
        record[f'{label}_mb'] = os.path.getsize(out) / 2**20
    print(json.dumps(record))


def worker_crop(path: str, key: str, repeats: str) -> None:
    """Best of ``repeats``: a centred 64 x 64 crop of every pattern, ``dset[:, 32:96, 32:96]``."""
    import h5py

    best = float('inf')
    for _ in range(int(repeats)):
        with h5py.File(path, 'r') as h5:
            dset = h5[key]
            y0 = (dset.shape[1] - CROP_PX) // 2
            x0 = (dset.shape[2] - CROP_PX) // 2
            start = time.perf_counter()
            crop = dset[:, y0 : y0 + CROP_PX, x0 : x0 + CROP_PX]
            best = min(best, time.perf_counter() - start)
            chunks = list(dset.chunks) if dset.chunks else None
    print(json.dumps({'seconds': best, 'chunks': chunks, 'shape': list(crop.shape)}))


def worker_ptychodus_open(npz: str, mode: str) -> None:
    """Open the NPZ's diffraction in Ptychodus (default crop) and assemble it."""
    import logging

    logging.disable(logging.WARNING)
    from ptychodus.model import ModelCore

    start = time.perf_counter()
    with ModelCore() as core:
        before = peak_rss_mb()
        if mode == 'open':
            dataset = core.workflow_api.load_diffraction_data(Path(npz), file_type='PtychoPINN_NPZ', block=True)
            core.run_tasks()
            shape = list(dataset.get_assembled_data().get_patterns().shape)
        else:
            shape = []
        _report(start, before_mb=before, assembled_shape=shape)


def worker_load_plugins() -> None:
    """Time what our plugin adds to ``PluginRegistry.load_plugins()``.

    Ptychodus is loaded first with the bridge disabled (so everything the host
    imports anyway is warm), then the bridge runs on a fresh registry: entry-point
    scan, import of our modules, registration.
    """
    import importlib

    os.environ['PTYCHOPINN_PTYCHODUS_DISABLE'] = '1'
    from ptychodus.api.plugins import PluginRegistry

    start = time.perf_counter()
    PluginRegistry.load_plugins()
    host = time.perf_counter() - start
    del os.environ['PTYCHOPINN_PTYCHODUS_DISABLE']
    assert 'ptychopinn_ptychodus.plugin' not in sys.modules
    bridge = importlib.import_module('ptychodus.plugins.ptychopinn_ptychodus_entry_points')
    registry = PluginRegistry()
    start = time.perf_counter()
    bridge.register_plugins(registry)
    added = time.perf_counter() - start
    registered = sum(1 for p in registry.product_file_readers if p.simple_name.startswith('PtychoPINN'))
    print(json.dumps({'host_seconds': host, 'added_seconds': added, 'registered': registered}))


# ---------------------------------------------------------------------------
# stacks
# ---------------------------------------------------------------------------


def _envelope(peak: float = 4000.0, sigma: float = 18.0) -> np.ndarray:
    yy, xx = np.mgrid[:PATTERN_PX, :PATTERN_PX] - PATTERN_PX / 2
    return peak * np.exp(-(xx**2 + yy**2) / (2 * sigma**2)) + 0.5


def _speckle_library() -> np.ndarray:
    """512 amplitude patterns: sqrt of Poisson counts under the envelope (the original benchmark stack)."""
    rng = np.random.default_rng(1)
    return np.sqrt(rng.poisson(_envelope(), size=(512, PATTERN_PX, PATTERN_PX))).astype(np.float32)


def _smooth_blocks(num: int) -> Iterator[tuple[int, np.ndarray]]:
    """Rolled copies of 4 smooth positive fields x a Gaussian envelope (max 1), random scale, 1/4096 steps."""
    rng = np.random.default_rng(0)
    n = PATTERN_PX
    yy, xx = np.mgrid[:n, :n] - n / 2
    freq = np.hypot(*np.meshgrid(np.fft.fftfreq(n), np.fft.fftfreq(n)))
    low_pass = np.exp(-(freq**2) * (2 * np.pi * 5) ** 2 / 2)
    bases = []
    for _ in range(4):
        field = np.fft.ifft2(np.fft.fft2(rng.standard_normal((n, n))) * low_pass).real
        field = (field - field.min()) / (field.max() - field.min())
        amplitude = np.exp(-(xx**2 + yy**2) / (2 * 30.0**2)) * (0.3 + field)
        bases.append(amplitude / amplitude.max())
    for start in range(0, num, BLOCK):
        block = np.empty((min(BLOCK, num - start), n, n), np.float32)
        for j in range(block.shape[0]):
            base = np.roll(bases[rng.integers(4)], (rng.integers(-10, 11), rng.integers(-10, 11)), axis=(0, 1))
            block[j] = np.round(base * rng.uniform(0.5, 1.5) * 4096) / 4096
        yield start, block


def _count_blocks(num: int, dtype: np.dtype) -> Iterator[tuple[int, np.ndarray]]:
    """Poisson counts of 64 fully developed speckle intensities under the envelope (uint16 clipped)."""
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:PATTERN_PX, :PATTERN_PX] - PATTERN_PX / 2
    pupil = np.hypot(xx, yy) < 24
    library = []
    for _ in range(64):
        field = np.fft.fft2(np.exp(1j * rng.uniform(0, 2 * np.pi, (PATTERN_PX, PATTERN_PX))) * pupil)
        speckle = np.abs(np.fft.fftshift(field)) ** 2
        library.append(speckle / speckle.mean())
    means = _envelope() * np.array(library)
    for start in range(0, num, BLOCK):
        counts = rng.poisson(means[rng.integers(64, size=min(BLOCK, num - start))])
        if dtype == np.uint16:
            np.clip(counts, 0, 65535, out=counts)
        yield start, counts.astype(dtype)


def make_stack(path: Path, kind: str, gigabytes: float, layout: str) -> int:
    """An NPZ with a synthetic stack of ``kind``; a raster over a fixed 600 x 600 object."""
    from ptychopinn_ptychodus.npz.archive import StreamedArray, write_npz

    spec = KINDS[kind]
    num = int(gigabytes * 2**30 / (PATTERN_PX * PATTERN_PX * 4))
    side = int(np.ceil(np.sqrt(num)))
    step = 440.0 / side
    xs = (np.arange(num) % side) * step + 80.0
    ys = (np.arange(num) // side) * step + 80.0
    dtype = np.dtype(spec.dtype)
    stack: np.ndarray | StreamedArray
    if kind == 'speckle':
        library = _speckle_library()
        if layout == 'HWN':
            stack = np.ascontiguousarray(np.moveaxis(library[np.arange(num) % 512], 0, -1))
        else:
            def blocks() -> Iterator[tuple[int, np.ndarray]]:
                for start in range(0, num, 512):
                    yield start, library[: min(512, num - start)]
            stack = StreamedArray(shape=(num, PATTERN_PX, PATTERN_PX), dtype=dtype, blocks=blocks())
    else:
        if layout != 'NHW':
            raise SystemExit(f'{kind}: only the speckle stack is generated in HWN layout')
        generated = _smooth_blocks(num) if kind == 'smooth' else _count_blocks(num, dtype)
        stack = StreamedArray(shape=(num, PATTERN_PX, PATTERN_PX), dtype=dtype, blocks=generated)
    write_npz(path, {
        spec.key: stack,
        'probeGuess': np.ones((PATTERN_PX, PATTERN_PX), np.complex64),
        'objectGuess': np.ones((600, 600), np.complex64),
        'xcoords': xs, 'ycoords': ys,
    })
    return num


# ---------------------------------------------------------------------------
# driver
# ---------------------------------------------------------------------------


def run_worker(*args: str) -> dict[str, object]:
    env = dict(os.environ, QT_QPA_PLATFORM='offscreen', MPLBACKEND='Agg')
    load = os.getloadavg()[0]
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, '--worker', *args], capture_output=True, text=True, env=env)
    process_seconds = time.perf_counter() - started  # the whole process: start-up and imports included
    if proc.returncode != 0:
        raise SystemExit(f'worker {args} failed:\n{proc.stderr[-2000:]}')
    record: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    record['load1'] = load
    record['process_seconds'] = process_seconds
    return record


def plugin_overhead(repeats: int) -> dict[str, float]:
    runs = [run_worker('load_plugins') for _ in range(repeats)]
    if any(int(r['registered']) != 2 for r in runs):  # type: ignore[call-overload]
        raise SystemExit('the bridge did not register our product readers')
    return {
        'load_plugins_host_ms': 1e3 * statistics.median(float(r['host_seconds']) for r in runs),  # type: ignore[arg-type]
        'added_ms': 1e3 * statistics.median(float(r['added_seconds']) for r in runs),  # type: ignore[arg-type]
        'added_ms_max': 1e3 * max(float(r['added_seconds']) for r in runs),  # type: ignore[arg-type]
    }


def measure(kind: str, size: float, layout: str, base: bool, workdir: Path, args: argparse.Namespace,
            results: dict[str, object]) -> None:
    """Every measurement of one stack (kind, size, layout); the full set at the base size."""
    runs: list[dict[str, object]] = results['runs']  # type: ignore[assignment]
    spec = KINDS[kind]
    npz = workdir / f'stack_{kind}_{layout}_{size}.npz'
    started = time.perf_counter()
    num = make_stack(npz, kind, size, layout)
    common = {'kind': kind, 'layout': layout, 'size_gb': size, 'patterns': num, 'dtype': spec.dtype,
              'input_mb': npz.stat().st_size / 2**20}
    print(f'# {kind} {layout} {size} GB: {num} patterns, generated in {time.perf_counter() - started:.0f} s',
          flush=True)

    def record(method: str, rec: dict[str, object], out: Path) -> None:
        rec.update(common, method=method, output_mb=out.stat().st_size / 2**20)
        runs.append(rec)
        print(json.dumps(rec), flush=True)

    out = workdir / 'out_cp.npz'
    record('cp', run_worker('cp', str(npz), str(out)), out)
    out.unlink()
    methods = [('ours-none', 'none'), ('ours-gzip', 'gzip')]
    if base:
        methods = [('naive', layout), ('ptychopinn', layout), *methods]
    keep = workdir / 'ours_gzip.h5'
    for method, option in methods:
        out = keep if method == 'ours-gzip' else workdir / f'out_{method}.h5'
        if method.startswith('ours'):
            rec = run_worker('ours', str(npz), str(out), option, 'product')
        else:
            rec = run_worker(method, str(npz), str(out), option)
        record(method, rec, out)
        if out != keep:
            out.unlink()
    if base and spec.domain == 'intensity':
        out = workdir / 'ours_diffraction.h5'
        record('ours-gzip-diffraction', run_worker('ours', str(npz), str(out), 'gzip', 'diffraction'), out)
        out.unlink()
    if base and kind == 'speckle' and layout == 'NHW' and not args.skip_host:
        host_measurements(npz, results)
    npz.unlink()
    if base and layout == 'NHW' and not args.no_references:
        old = workdir / 'ref_old.h5'
        # the bundle stores the stack as given: the PtychoPINN-style run above already wrote this
        # very array with h5py's default chunks
        refs = run_worker('references', str(keep), '-', str(old))
        ptychopinn = next(r for r in runs if r['method'] == 'ptychopinn' and r['kind'] == kind
                          and r['layout'] == layout and r['size_gb'] == size)
        refs.update(plain_mb=ptychopinn['output_mb'], plain_seconds=ptychopinn['seconds'],
                    plain_chunks=ptychopinn['chunks'])
        ours_crop, old_crop = [], []
        for _ in range(args.crop_rounds):  # alternate, so drift in the machine's load hits both alike
            ours_crop.append(float(run_worker('crop', str(keep), 'raw_data/diffraction', '3')['seconds']))  # type: ignore[arg-type]
            old_crop.append(float(run_worker('crop', str(old), 'raw_data/diffraction', '3')['seconds']))  # type: ignore[arg-type]
        refs.update(kind=kind, size_gb=size, crop_ours_seconds=min(ours_crop), crop_old_seconds=min(old_crop),
                    ours_mb=keep.stat().st_size / 2**20)
        results['references'].append(refs)  # type: ignore[attr-defined]
        print(json.dumps(refs), flush=True)
        old.unlink()
    keep.unlink()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--sizes-gb', type=float, nargs='+', default=[0.5, 2.0],
                        help='float32-equivalent stack sizes; the smallest gets every measurement (default 0.5 2)')
    parser.add_argument('--kinds', nargs='+', choices=list(KINDS), default=list(KINDS),
                        help='stack kinds at the smallest size (default: all)')
    parser.add_argument('--large-kinds', nargs='*', choices=list(KINDS), default=['speckle', 'counts_u16'],
                        help='kinds also run at the larger sizes, for RSS flatness (default speckle counts_u16)')
    parser.add_argument('--layouts', nargs='+', choices=('NHW', 'HWN'), default=['NHW', 'HWN'],
                        help='layouts of the speckle stack (other kinds are NHW)')
    parser.add_argument('--crop-rounds', type=int, default=2, help='alternating crop-read rounds (best of 3 each)')
    parser.add_argument('--no-references', action='store_true',
                        help='skip the plain/old-chunk rewrites of our stored array and the crop reads')
    parser.add_argument('--skip-host', action='store_true',
                        help='skip the Ptychodus opening and plugin start-up measurements')
    parser.add_argument('--workdir', type=Path, default=None)
    parser.add_argument('--repeats', type=int, default=5, help='for the plugin start-up timing')
    parser.add_argument('--markdown', type=Path, default=HERE.parent / 'docs' / 'benchmark_results.md',
                        help='also write the tables, with the machine and date, to this Markdown file '
                             '(default docs/benchmark_results.md, which the documentation includes)')
    parser.add_argument('--worker', nargs='+', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        name, *rest = args.worker
        globals()[f'worker_{name}'](*rest)
        return 0

    import h5py

    workdir = Path(tempfile.mkdtemp(prefix='ptychopinn-bench-', dir=args.workdir))
    results: dict[str, object] = {
        'machine': {'cpus': os.cpu_count(), 'platform': platform.platform(),
                    'python': platform.python_version(), 'numpy': np.__version__,
                    'h5py': h5py.__version__, 'hdf5': h5py.version.hdf5_version},
        'date': time.strftime('%Y-%m-%d %H:%M'),
        'args': {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != 'worker'},
        'load_start': os.getloadavg(),
        'runs': [],
        'references': [],
    }
    base = min(args.sizes_gb)
    started = time.perf_counter()
    try:
        for size in sorted(args.sizes_gb):
            kinds = args.kinds if size == base else [k for k in args.large_kinds if k in args.kinds]
            for kind in kinds:
                for layout in (args.layouts if kind == 'speckle' else ['NHW']):
                    measure(kind, size, layout, size == base, workdir, args, results)
        if not args.skip_host:
            results['plugin'] = plugin_overhead(args.repeats)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results['load_end'] = os.getloadavg()
    results['total_seconds'] = time.perf_counter() - started
    out_dir = HERE / 'results'
    out_dir.mkdir(exist_ok=True)
    stamp = time.strftime('%Y%m%d-%H%M%S')
    (out_dir / f'bench-{stamp}.json').write_text(json.dumps(results, indent=2))
    summary = summarize(results)
    print(summary)
    if args.markdown:
        args.markdown.write_text(markdown_page(results, summary), encoding='utf-8')
    return 0


def markdown_page(results: dict[str, object], summary: str) -> str:
    """The tables as the documentation includes them, with when, where and how they were measured."""
    machine: dict[str, object] = results['machine']  # type: ignore[assignment]
    load_start, load_end = results['load_start'], results['load_end']
    argv = ' '.join(sys.argv[1:]) or '(defaults)'
    return (f"<!-- written by benchmarks/bench_convert.py ({argv}); do not edit by hand -->\n\n"
            f"Measured {results['date']} by `python benchmarks/bench_convert.py {argv}`: "
            f"{machine['cpus']} cores, {machine['platform']}, Python {machine['python']}, "
            f"numpy {machine['numpy']}, h5py {machine['h5py']} (HDF5 {machine['hdf5']}); "
            f"1-minute load {load_start[0]:.1f} at the start, {load_end[0]:.1f} at the end "  # type: ignore[index]
            f"({float(results['total_seconds']) / 60:.1f} min). *wall s* is the conversion inside its "  # type: ignore[arg-type]
            f"process; *whole process* also counts start-up and imports.\n\n{summary}\n")


def host_measurements(npz: Path, results: dict[str, object]) -> None:
    """Ptychodus opening the NHW stack through our NPZ reader (default crop), against an idle ModelCore."""
    idle = run_worker('ptychodus_open', str(npz), 'idle')
    opened = run_worker('ptychodus_open', str(npz), 'open')
    results['ptychodus_open'] = {
        'stack_mb': npz.stat().st_size / 2**20,
        'idle_peak_rss_mb': idle['peak_rss_mb'],
        'open_peak_rss_mb': opened['peak_rss_mb'],
        'assembled_shape': opened['assembled_shape'],
    }
    print(json.dumps(results['ptychodus_open']), flush=True)


# ---------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------

Run = dict[str, object]

LABELS = {
    'naive': 'naive',
    'ptychopinn': 'PtychoPINN-style gzip 4',
    'cp': '`cp` of the NPZ',
    'ours-none': 'ours, no compression',
    'ours-gzip': 'ours, gzip 4',
    'ours-gzip-diffraction': 'ours, gzip 4, diffraction file',
}


def _f(run: Run | None, key: str) -> float:
    return float(run[key]) if run is not None and key in run else float('nan')  # type: ignore[arg-type]


def _find(runs: list[Run], method: str, kind: object, layout: object, size: object) -> Run | None:
    return next((r for r in runs if r['method'] == method and r['kind'] == kind and r['layout'] == layout
                 and r['size_gb'] == size), None)


def _growth(run: Run, runs: list[Run], base: float) -> float:
    ref = _find(runs, str(run['method']), run['kind'], run['layout'], base)
    return _f(run, 'peak_rss_mb') / _f(ref, 'peak_rss_mb') - 1


def _chunks(value: object) -> str:
    return '×'.join(str(n) for n in value) if isinstance(value, list) else 'contiguous'


def summarize(results: dict[str, object]) -> str:
    runs: list[Run] = results['runs']  # type: ignore[assignment]
    refs: list[Run] = results.get('references', [])  # type: ignore[assignment]
    if not runs:
        return 'no runs'
    base = min(float(r['size_gb']) for r in runs)  # type: ignore[arg-type]
    lines = ['| stack | kind | layout | method | wall s | peak RSS MB | output MB | vs baseline |',
             '|---|---|---|---|---|---|---|---|']
    for run in runs:
        kind, layout, size, method = run['kind'], run['layout'], run['size_gb'], str(run['method'])
        at = (kind, layout, base)
        naive, plain = (_find(runs, m, *at) for m in ('naive', 'ptychopinn'))
        same_cp = _find(runs, 'cp', kind, layout, size)
        cp_sync = _f(same_cp, 'seconds') + _f(same_cp, 'fsync_seconds')
        note = ''
        if method == 'ptychopinn':
            note = f"chunks {_chunks(run.get('chunks'))}"
        elif method == 'cp':
            note = f"cp + fsync {_f(run, 'seconds') + _f(run, 'fsync_seconds'):.2f} s"
        elif method == 'ours-none':
            note = (f"time {_f(run, 'seconds') / _f(same_cp, 'seconds'):.2f}× cp, "
                    f"{_f(run, 'seconds') / cp_sync:.2f}× cp + fsync")
            if size == base:
                note += (f"; time {_f(run, 'seconds') / _f(naive, 'seconds'):.2f}×, whole process "
                         f"{_f(run, 'process_seconds') / _f(naive, 'process_seconds'):.2f}× "
                         f"({_f(run, 'process_seconds'):.2f} vs {_f(naive, 'process_seconds'):.2f} s), "
                         f"RSS {_f(run, 'peak_rss_mb') / _f(naive, 'peak_rss_mb'):.2f}× naive")
        elif method.startswith('ours-gzip') and size == base:
            note = (f"time {_f(run, 'seconds') / _f(plain, 'seconds'):.2f}×, "
                    f"size {_f(run, 'output_mb') / _f(plain, 'output_mb'):.3f}× PtychoPINN-style; "
                    f"RSS {_f(run, 'peak_rss_mb') / _f(naive, 'peak_rss_mb'):.2f}× naive; "
                    f"{run.get('stored_dtype')} {_chunks(run.get('chunks'))}")
        if method.startswith('ours') and size != base:
            note += f"{'; ' if note else ''}RSS {100 * _growth(run, runs, base):+.0f} % vs {base:g} GB"
        lines.append(
            f"| {size:g} GB | {kind} | {layout} | {LABELS.get(method, method)} | {_f(run, 'seconds'):.2f} | "
            f"{_f(run, 'peak_rss_mb'):.0f} | {_f(run, 'output_mb'):.0f} | {note} |"
        )

    lines += ['', f'Per kind at {base:g} GB, NHW (ratios within this run):', '',
              '| kind | source → stored | ours chunks (old) | gzip size vs PtychoPINN-style | size vs plain h5py, '
              'stored array | gzip time vs PtychoPINN-style | diffraction file size, time vs PtychoPINN-style | '
              'RSS vs naive (gzip) | crop read vs old chunks |',
              '|---|---|---|---|---|---|---|---|---|']
    for kind in dict.fromkeys(r['kind'] for r in runs if r['size_gb'] == base):
        at = (kind, 'NHW', base)
        naive, plain, ours, diff = (_find(runs, m, *at) for m in ('naive', 'ptychopinn', 'ours-gzip',
                                                                    'ours-gzip-diffraction'))
        if ours is None:
            continue
        ref = next((r for r in refs if r['kind'] == kind and r['size_gb'] == base), None)
        spec = KINDS[str(kind)]
        diff_text = (f"{_f(diff, 'output_mb') / _f(plain, 'output_mb'):.3f}×, "
                     f"{_f(diff, 'seconds') / _f(plain, 'seconds'):.2f}× ({diff.get('stored_dtype')} "
                     f"{_chunks(diff.get('chunks'))})" if diff else '—')
        ref_size = f"{_f(ours, 'output_mb') / _f(ref, 'plain_mb'):.3f}×" if ref else '—'
        crop = (f"{_f(ref, 'crop_ours_seconds') / _f(ref, 'crop_old_seconds'):.2f}× "
                f"({_f(ref, 'crop_ours_seconds'):.2f} vs {_f(ref, 'crop_old_seconds'):.2f} s)" if ref else '—')
        old = f" ({_chunks(ref.get('old_chunks'))})" if ref else ''
        lines.append(
            f"| {kind} | {spec.dtype} {spec.domain} → {ours.get('stored_dtype')} {spec.domain} (as given) | "
            f"{_chunks(ours.get('chunks'))}{old} | {_f(ours, 'output_mb') / _f(plain, 'output_mb'):.3f}× | "
            f"{ref_size} | {_f(ours, 'seconds') / _f(plain, 'seconds'):.2f}× | {diff_text} | "
            f"{_f(ours, 'peak_rss_mb') / _f(naive, 'peak_rss_mb'):.2f}× | {crop} |"
        )
    lines += ['', *targets(results, base)]

    opened = results.get('ptychodus_open')
    if isinstance(opened, dict):
        lines.append('')
        lines.append(
            f"Ptychodus opening the {opened['stack_mb']:.0f} MB NHW stack with the default crop: "
            f"peak RSS {opened['open_peak_rss_mb']:.0f} MB vs {opened['idle_peak_rss_mb']:.0f} MB idle "
            f"(+{opened['open_peak_rss_mb'] - opened['idle_peak_rss_mb']:.0f} MB), "
            f"assembled {opened['assembled_shape']}"
        )
    plugin = results.get('plugin')
    if isinstance(plugin, dict):
        lines.append(
            f"PluginRegistry.load_plugins(): {plugin['load_plugins_host_ms']:.0f} ms for Ptychodus's own plugins; "
            f"our bridge adds {plugin['added_ms']:.1f} ms (median, max {plugin['added_ms_max']:.1f} ms)"
        )
    loads = [float(r['load1']) for r in runs if 'load1' in r]  # type: ignore[arg-type]
    if loads:
        lines.append(f"1-min load average before each measurement: {min(loads):.2f}–{max(loads):.2f} "
                     f"(median {statistics.median(loads):.2f}) on {results['machine']['cpus']} CPUs; "  # type: ignore[index]
                     f"run took {float(results.get('total_seconds', 0)) / 60:.1f} min")  # type: ignore[arg-type]
    return '\n'.join(lines)


def targets(results: dict[str, object], base: float) -> list[str]:
    """The issue's targets, checked on this run's ratios."""
    runs: list[Run] = results['runs']  # type: ignore[assignment]
    refs: list[Run] = results.get('references', [])  # type: ignore[assignment]
    out = []

    def verdict(name: str, values: dict[str, float], limit: float, fmt: str = '{:.3f}') -> None:
        if not values:
            return
        bad = {k: v for k, v in values.items() if not v <= limit}
        shown = ', '.join(f'{k} {fmt.format(v)}' for k, v in values.items())
        out.append(f"* {'MET' if not bad else 'NOT MET'}: {name} ≤ {limit:g} — {shown}")

    def key(r: Run) -> str:
        return f"{r['kind']}{'' if r['layout'] == 'NHW' else ' ' + str(r['layout'])}"

    for method, what in (('ours-gzip', 'product'), ('ours-gzip-diffraction', 'diffraction file')):
        gzip = [r for r in runs if r['method'] == method and r['size_gb'] == base]
        plain = {key(r): _find(runs, 'ptychopinn', r['kind'], r['layout'], base) for r in gzip}
        verdict(f'gzip {what} size vs PtychoPINN-style (×)',
                {key(r): _f(r, 'output_mb') / _f(plain[key(r)], 'output_mb') for r in gzip}, 1.02)
        verdict(f'gzip {what} time vs PtychoPINN-style (×)',
                {key(r): _f(r, 'seconds') / _f(plain[key(r)], 'seconds') for r in gzip}, 0.65, '{:.2f}')
    ours_base = [r for r in runs if str(r['method']) in ('ours-none', 'ours-gzip') and r['size_gb'] == base]
    verdict(f'peak RSS vs naive at {base:g} GB (×)',
            {f"{key(r)} {r['method']}": _f(r, 'peak_rss_mb') / _f(_find(runs, 'naive', r['kind'], r['layout'], base),
                                                                 'peak_rss_mb') for r in ours_base}, 0.35, '{:.2f}')
    top = max(float(r['size_gb']) for r in runs)  # type: ignore[arg-type]
    if top > base:
        verdict(f'peak RSS growth {base:g} → {top:g} GB',
                {f"{key(r)} {r['method']}": _growth(r, runs, base) for r in runs
                 if str(r['method']) in ('ours-none', 'ours-gzip') and r['size_gb'] == top}, 0.10, '{:+.1%}')
    verdict('crop read vs old chunks (×)',
            {str(r['kind']): _f(r, 'crop_ours_seconds') / _f(r, 'crop_old_seconds') for r in refs}, 1.0, '{:.2f}')
    return out


if __name__ == '__main__':
    raise SystemExit(main())
