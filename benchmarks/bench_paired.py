"""Paired whole-process timing of the uncompressed conversion against the naive one.

    python benchmarks/bench_paired.py [--patterns 8000] [--repeats 5] [--layouts NHW HWN] [--workdir DIR]

What a user waits for is the whole process: interpreter start-up, imports, the
conversion, the fsync before publishing. This runs, per layout, on an
uncompressed (``numpy.savez``) float32 stack of ``--patterns`` 128x128 patterns:

* *ours*: ``python -m ptychopinn_ptychodus --input-npz IN --output-product OUT
  --compression none`` (product with ``/raw_data``), exactly as a user runs it;
* *naive*: ``python bench_paired.py --naive IN OUT LAYOUT no``: ``numpy.load`` of every
  member, the stack moved to NHW in memory, one h5py ``create_dataset`` per
  member into ``/raw_data`` (the stack contiguous, as ours stores it), no fsync;
* *naive + fsync*: the same, then an fsync of the output (ours fsyncs before publishing).

Both run warm (one unmeasured run of each first), alternating, the order
swapped every pair, with the output deleted and ``sync`` run between
measurements (outside the timing) so neither inherits the other's write-back.
The median and the spread of ``--repeats`` pairs are reported, with the
machine's disk write bandwidth (``dd`` + fsync), a ``cp`` and ``cp`` + fsync of
the NPZ, the start-up of ``python -c 'import numpy, h5py'`` and of our CLI's
``--version`` (the floors), and the 1-minute load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
PX = 128


def naive(npz: str, out: str, layout: str, fsync: str = 'no') -> None:
    """The naive conversion: everything in memory, one h5py write per member (fsync only if asked)."""
    import h5py

    with np.load(npz) as data:
        arrays = {key: data[key] for key in data.files}
    stack = arrays.pop('diffraction')
    if layout == 'HWN':
        stack = np.moveaxis(stack, -1, 0)
    with h5py.File(out, 'w') as h5:
        h5.create_dataset('raw_data/diffraction', data=stack)
        for key, value in arrays.items():
            h5.create_dataset(f'raw_data/{key}', data=value)
    if fsync == 'fsync':  # the same durability as ours: on disk before the process ends
        fd = os.open(out, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def make_npz(path: Path, patterns: int, layout: str) -> None:
    """An uncompressed NPZ as ``numpy.savez`` writes it: float32 amplitudes, probe, object, positions."""
    rng = np.random.default_rng(0)
    library = np.sqrt(rng.poisson(50.0, size=(64, PX, PX))).astype(np.float32)
    stack = library[np.arange(patterns) % 64]
    if layout == 'HWN':
        stack = np.ascontiguousarray(np.moveaxis(stack, 0, -1))
    side = int(np.ceil(np.sqrt(patterns)))
    xs = (np.arange(patterns) % side) * (440.0 / side) + 80.0
    ys = (np.arange(patterns) // side) * (440.0 / side) + 80.0
    np.savez(path, diffraction=stack, probeGuess=np.ones((PX, PX), np.complex64),
             objectGuess=np.ones((600, 600), np.complex64), xcoords=xs, ycoords=ys)


def timed(argv: list[str], cwd: Path | None = None) -> float:
    started = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=cwd)
    elapsed = time.perf_counter() - started
    if proc.returncode:
        raise SystemExit(f'{argv} failed ({proc.returncode}):\n{proc.stderr[-2000:]}')
    return elapsed


def settle(*paths: Path) -> None:
    """Delete outputs and write everything dirty back, outside any timing."""
    for path in paths:
        path.unlink(missing_ok=True)
    os.sync()


def disk_floors(npz: Path, workdir: Path) -> dict[str, float]:
    """dd write bandwidth (with fsync), cp and cp + fsync of the NPZ, interpreter start-ups."""
    size_mb = npz.stat().st_size // 2**20
    scratch = workdir / 'floor.bin'
    floors: dict[str, float] = {}
    runs = []
    for _ in range(3):
        settle(scratch)
        runs.append(timed(['dd', 'if=/dev/zero', f'of={scratch}', 'bs=8M', f'count={size_mb // 8}',
                           'conv=fsync', 'status=none']))
    floors['dd_fsync_s'] = statistics.median(runs)
    floors['dd_fsync_mb_s'] = (size_mb // 8 * 8) / floors['dd_fsync_s']
    for label, fsync in (('cp_s', False), ('cp_fsync_s', True)):
        runs = []
        for _ in range(3):
            settle(scratch)
            argv = ['sh', '-c', f'cp {npz} {scratch}' + (f' && sync {scratch}' if fsync else '')]
            runs.append(timed(argv))
        floors[label] = statistics.median(runs)
    settle(scratch)
    floors['import_numpy_h5py_s'] = statistics.median(
        timed([sys.executable, '-c', 'import numpy, h5py']) for _ in range(5))
    floors['ours_version_s'] = statistics.median(
        timed([sys.executable, '-m', 'ptychopinn_ptychodus', '--version'], workdir) for _ in range(5))
    return floors


def paired(npz: Path, workdir: Path, layout: str, repeats: int) -> dict[str, object]:
    out = workdir / 'out.h5'
    commands = {
        'ours': [sys.executable, '-m', 'ptychopinn_ptychodus', '--input-npz', str(npz), '--output-product',
                 str(out), '--compression', 'none', '--quiet', '--object-pixel-size-m', '5e-8',
                 '--probe-energy-eV', '8000', '--detector-distance-m', '1'],
        'naive': [sys.executable, __file__, '--naive', str(npz), str(out), layout, 'no'],
        'naive_fsync': [sys.executable, __file__, '--naive', str(npz), str(out), layout, 'fsync'],
    }
    # run from the scratch folder: ``-m`` then imports the installed package, as a user's shell does
    for argv in commands.values():  # warm-up: page cache, bytecode caches
        settle(out)
        timed(argv, workdir)
    times: dict[str, list[float]] = {name: [] for name in commands}
    loads = []
    for pair in range(repeats):
        order = list(commands) if pair % 2 == 0 else list(commands)[::-1]
        for name in order:
            settle(out)
            loads.append(os.getloadavg()[0])
            times[name].append(timed(commands[name], workdir))
    settle(out)
    record: dict[str, object] = {'layout': layout, 'load_min': min(loads), 'load_max': max(loads)}
    for name, runs in times.items():
        record[f'{name}_s'] = runs
        record[f'{name}_median_s'] = statistics.median(runs)
    for base in ('naive', 'naive_fsync'):
        ratios = sorted(a / b for a, b in zip(times['ours'], times[base], strict=True))
        record[f'ratio_{base}'] = statistics.median(times['ours']) / statistics.median(times[base])
        record[f'pair_ratio_{base}'] = [ratios[0], ratios[-1]]
    return record


def table(results: dict[str, object]) -> str:
    """The Markdown the documentation shows (docs/benchmark_results.md includes it)."""
    lines = ['| layout | ours | naive | ours vs naive (per-pair range) | naive + fsync '
             '| ours vs naive + fsync (range) | 1-min load |',
             '|---|---|---|---|---|---|---|']
    for run in results['pairs']:  # type: ignore[attr-defined]
        lo, hi = run['pair_ratio_naive']
        flo, fhi = run['pair_ratio_naive_fsync']
        lines.append(
            f"| {run['layout']} | {run['ours_median_s']:.2f} s | {run['naive_median_s']:.2f} s "
            f"| **{run['ratio_naive']:.2f}×** ({lo:.2f}–{hi:.2f}×) | {run['naive_fsync_median_s']:.2f} s "
            f"| {run['ratio_naive_fsync']:.2f}× ({flo:.2f}–{fhi:.2f}×) "
            f"| {run['load_min']:.1f}–{run['load_max']:.1f} |")
    floors: dict[str, float] = results['floors']  # type: ignore[assignment]
    lines.append('')
    lines.append(
        f"Floors on this machine ({results['input_mb']:.0f} MB NPZ): `dd` write + fsync "
        f"{floors['dd_fsync_s']:.2f} s ({floors['dd_fsync_mb_s']:.0f} MB/s); `cp` {floors['cp_s']:.2f} s, "
        f"`cp` + fsync {floors['cp_fsync_s']:.2f} s; `python -c 'import numpy, h5py'` "
        f"{floors['import_numpy_h5py_s']:.2f} s; our CLI's `--version` {floors['ours_version_s']:.2f} s.")
    return '\n'.join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--patterns', type=int, default=8000)
    parser.add_argument('--repeats', type=int, default=5, help='pairs per layout (median reported)')
    parser.add_argument('--layouts', nargs='+', choices=('NHW', 'HWN'), default=['NHW', 'HWN'])
    parser.add_argument('--workdir', type=Path, default=None)
    parser.add_argument('--json', type=Path, default=None, help='also write the record here')
    parser.add_argument('--markdown', type=Path, default=HERE.parent / 'docs' / 'benchmark_paired.md',
                        help='also write the table here (default docs/benchmark_paired.md, which '
                             'docs/benchmark.md includes; "" to skip)')
    parser.add_argument('--naive', nargs=4, metavar=('NPZ', 'OUT', 'LAYOUT', 'FSYNC'), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.naive:
        naive(*args.naive)
        return 0
    results: dict[str, object] = {'date': time.strftime('%Y-%m-%d %H:%M'), 'patterns': args.patterns,
                                  'repeats': args.repeats, 'pairs': []}
    with tempfile.TemporaryDirectory(prefix='ptychopinn-paired-', dir=args.workdir) as tmp:
        workdir = Path(tmp)
        for layout in args.layouts:
            npz = workdir / f'stack_{layout}.npz'
            make_npz(npz, args.patterns, layout)
            results['input_mb'] = npz.stat().st_size / 2**20
            if 'floors' not in results:
                results['floors'] = disk_floors(npz, workdir)
            run = paired(npz, workdir, layout, args.repeats)
            print(json.dumps(run), flush=True)
            results['pairs'].append(run)  # type: ignore[attr-defined]
            npz.unlink()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    text = table(results)
    print(text)
    if args.markdown and str(args.markdown):
        argv = ' '.join(sys.argv[1:]) or '(defaults)'
        header = (f"<!-- written by benchmarks/bench_paired.py ({argv}); do not edit by hand -->\n\n"
                  f"Measured {results['date']} by `python benchmarks/bench_paired.py {argv}` on "
                  f"{os.cpu_count()} cores: {args.patterns}×128×128 float32 (np.savez, uncompressed), "
                  f"median of {args.repeats} alternating runs of whole processes each, warm page cache, "
                  f"`sync` between runs.\n\n")
        args.markdown.write_text(header + text + '\n', encoding='utf-8')
    return 0


if __name__ == '__main__':
    sys.exit(main())
