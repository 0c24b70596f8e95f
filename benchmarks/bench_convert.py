"""Conversion benchmark: ours against a naive and a PtychoPINN-style conversion, in one run.

    python benchmarks/bench_convert.py [--sizes-gb 0.5 2] [--workdir DIR]

Every measurement runs in a fresh subprocess that reports its own wall time and
peak RSS (``resource.getrusage``), so the figures are comparable within a run.
Writes a JSON record to benchmarks/results/ and prints a Markdown table.
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
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
PATTERN_PX = 128


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
        stack = data['diffraction']
        small = {k: data[k] for k in data.files if k != 'diffraction'}
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
    """PtychoPINN-style: in memory, single-threaded gzip level 4 + shuffle."""
    import h5py

    start = time.perf_counter()
    stack, small = _load_all(npz, layout)
    with h5py.File(out, 'w') as h5:
        h5.create_dataset('raw_data/diffraction', data=stack, compression='gzip',
                          compression_opts=4, shuffle=True)
        for key, value in small.items():
            h5.create_dataset(f'raw_data/{key}', data=value)
    _report(start)


def worker_ours(npz: str, out: str, compression: str) -> None:
    """Our converter exactly as the command line runs it."""
    from ptychopinn_ptychodus.cli import main

    start = time.perf_counter()
    code = main(['--input-npz', npz, '--output-product', out, '--quiet', '--compression', compression,
                 '--compression-level', '4', '--object-pixel-size-m', '5e-8', '--probe-energy-eV', '8000',
                 '--detector-distance-m', '1'])
    if code:
        raise SystemExit(code)
    _report(start)


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
# driver
# ---------------------------------------------------------------------------


def make_stack(path: Path, gigabytes: float, layout: str) -> int:
    """A synthetic amplitude stack of realistic compressibility (Poisson speckle)."""
    from ptychopinn_ptychodus.npz_archive import StreamedArray, write_npz

    num = int(gigabytes * 2**30 / (PATTERN_PX * PATTERN_PX * 4))
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:PATTERN_PX, :PATTERN_PX] - PATTERN_PX / 2
    envelope = 4000.0 * np.exp(-(xx**2 + yy**2) / (2 * 18.0**2)) + 0.5
    library = np.sqrt(rng.poisson(envelope, size=(512, PATTERN_PX, PATTERN_PX))).astype(np.float32)
    # a raster over a fixed 600 x 600 object, so only the stack grows with the size
    side = int(np.ceil(np.sqrt(num)))
    step = 440.0 / side
    xs = (np.arange(num) % side) * step + 80.0
    ys = (np.arange(num) // side) * step + 80.0
    width = height = 600
    if layout == 'HWN':
        stack: np.ndarray | StreamedArray = np.ascontiguousarray(
            np.moveaxis(library[np.arange(num) % 512], 0, -1))
    else:
        def blocks():  # type: ignore[no-untyped-def]
            for start in range(0, num, 512):
                count = min(512, num - start)
                yield start, library[:count]
        stack = StreamedArray(shape=(num, PATTERN_PX, PATTERN_PX), dtype=np.dtype(np.float32), blocks=blocks())
    write_npz(path, {
        'diffraction': stack,
        'probeGuess': np.ones((PATTERN_PX, PATTERN_PX), np.complex64),
        'objectGuess': np.ones((height, width), np.complex64),
        'xcoords': xs, 'ycoords': ys,
    })
    return num


def run_worker(*args: str) -> dict[str, object]:
    env = dict(os.environ, QT_QPA_PLATFORM='offscreen', MPLBACKEND='Agg')
    proc = subprocess.run([sys.executable, __file__, '--worker', *args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f'worker {args} failed:\n{proc.stderr[-2000:]}')
    return json.loads(proc.stdout.strip().splitlines()[-1])


def plugin_overhead(repeats: int) -> dict[str, float]:
    runs = [run_worker('load_plugins') for _ in range(repeats)]
    if any(int(r['registered']) != 2 for r in runs):  # type: ignore[call-overload]
        raise SystemExit('the bridge did not register our product readers')
    return {
        'load_plugins_host_ms': 1e3 * statistics.median(float(r['host_seconds']) for r in runs),  # type: ignore[arg-type]
        'added_ms': 1e3 * statistics.median(float(r['added_seconds']) for r in runs),  # type: ignore[arg-type]
        'added_ms_max': 1e3 * max(float(r['added_seconds']) for r in runs),  # type: ignore[arg-type]
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--sizes-gb', type=float, nargs='+', default=[0.5, 2.0])
    parser.add_argument('--workdir', type=Path, default=None)
    parser.add_argument('--repeats', type=int, default=5, help='for the plugin start-up timing')
    parser.add_argument('--worker', nargs='+', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        name, *rest = args.worker
        globals()[f'worker_{name}'](*rest)
        return 0

    workdir = Path(tempfile.mkdtemp(prefix='ptychopinn-bench-', dir=args.workdir))
    results: dict[str, object] = {
        'machine': {'cpus': os.cpu_count(), 'platform': platform.platform(),
                    'python': platform.python_version(), 'numpy': np.__version__},
        'date': time.strftime('%Y-%m-%d %H:%M'),
        'runs': [],
    }
    runs: list[dict[str, object]] = results['runs']  # type: ignore[assignment]
    base = min(args.sizes_gb)
    try:
        for size in args.sizes_gb:
            for layout in ('NHW', 'HWN'):
                npz = workdir / f'stack_{layout}_{size}.npz'
                num = make_stack(npz, size, layout)
                methods = [('ours', 'none'), ('ours', 'gzip')]
                if size == base:
                    methods = [('naive', layout), ('ptychopinn', layout), *methods]
                for method, option in methods:
                    out = workdir / f'out_{method}_{option}.h5'
                    record = run_worker(method, str(npz), str(out), option)
                    record.update(method=method if method != 'ours' else f'ours-{option}', layout=layout,
                                  size_gb=size, patterns=num, output_mb=out.stat().st_size / 2**20)
                    runs.append(record)
                    print(json.dumps(record), flush=True)
                    out.unlink()
                if size == base and layout == 'NHW':
                    idle = run_worker('ptychodus_open', str(npz), 'idle')
                    opened = run_worker('ptychodus_open', str(npz), 'open')
                    results['ptychodus_open'] = {
                        'stack_mb': npz.stat().st_size / 2**20,
                        'idle_peak_rss_mb': idle['peak_rss_mb'],
                        'open_peak_rss_mb': opened['peak_rss_mb'],
                        'assembled_shape': opened['assembled_shape'],
                    }
                    print(json.dumps(results['ptychodus_open']), flush=True)
                npz.unlink()
        results['plugin'] = plugin_overhead(args.repeats)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    out_dir = HERE / 'results'
    out_dir.mkdir(exist_ok=True)
    stamp = time.strftime('%Y%m%d-%H%M%S')
    (out_dir / f'bench-{stamp}.json').write_text(json.dumps(results, indent=2))
    print(summarize(results))
    return 0


def summarize(results: dict[str, object]) -> str:
    runs: list[dict[str, float | str]] = results['runs']  # type: ignore[assignment]
    lines = ['| size | layout | method | wall s | peak RSS MB | output MB | time ratio | RSS ratio | size ratio |',
             '|---|---|---|---|---|---|---|---|---|']
    base = min(float(r['size_gb']) for r in runs)
    for run in runs:
        ref_name = 'ptychopinn' if run['method'] == 'ours-gzip' else 'naive'
        ref = next((r for r in runs if r['method'] == ref_name and r['layout'] == run['layout']
                    and r['size_gb'] == base), None)
        def ratio(key: str, run: dict[str, float | str] = run, ref: dict[str, float | str] | None = ref,
                  name: str = ref_name) -> str:
            return f'{float(run[key]) / float(ref[key]):.2f}x {name}' if ref else ''

        lines.append(
            f"| {run['size_gb']} GB | {run['layout']} | {run['method']} | {float(run['seconds']):.2f} | "
            f"{float(run['peak_rss_mb']):.0f} | {float(run['output_mb']):.0f} | "
            f"{ratio('seconds') if run['size_gb'] == base else ''} | {ratio('peak_rss_mb')} | "
            f"{ratio('output_mb') if run['size_gb'] == base else ''} |"
        )
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
    return '\n'.join(lines)


if __name__ == '__main__':
    raise SystemExit(main())
