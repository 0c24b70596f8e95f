"""Issue 17.5: one PtychoPINN training NPZ from files Ptychodus wrote with its own writers.

Every input file here is written by Ptychodus's own code (its CXI diffraction
writer, its HDF5 product writer) after loading our simulated PtychoPINN data
through our readers; the export then reads them back with Ptychodus's readers.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from ptychopinn_ptychodus.cli.sample import write_sample
from ptychopinn_ptychodus.convert.training_npz import TrainingData, write_training_npz
from ptychopinn_ptychodus.facts.errors import InvalidInputError
from ptychopinn_ptychodus.facts.geometry import ObjectGrid
from ptychopinn_ptychodus.npz.archive import NpzArchive

pytest.importorskip('ptychodus', reason='Ptychodus is needed to read and write its own formats')

from ptychodus.model import ModelCore  # noqa: E402

from ptychopinn_ptychodus.host import compat  # noqa: E402
from ptychopinn_ptychodus.host.training import TrainingSources, choose_reader, export_training_data  # noqa: E402

SIM = {'pattern_px': 32, 'scan_side': 6, 'step_px': 5}


def assert_ptychopinn_loads(path: Path) -> dict[str, np.ndarray]:
    """Every check PtychoPINN's loaders make, stated in our own words (PtychoPINN is not imported).

    ``RawData.from_file`` (ptycho/raw_data.py): the file has ``diff3d``, ``probeGuess``,
    ``xcoords``, ``ycoords``; the constructor wants 1-D coordinates (also the ``_start``
    ones) and ``scan_index``, a 3-D ``diff3d`` with square patterns, a 2-D probe and a
    2-D object. ``load_data`` (ptycho/workflows/components.py): ``diff3d`` (or
    ``diffraction``) of rank 3 whose first axis has ``len(xcoords)`` patterns, and
    ``xcoords_start``/``ycoords_start`` present. ``_metadata`` must parse as JSON after
    ``str(array.item())`` (ptycho/metadata.py).
    """
    with np.load(path, allow_pickle=False) as npz:
        keys = set(npz.files)
        for key in ('diff3d', 'probeGuess', 'objectGuess', 'xcoords', 'ycoords', 'xcoords_start',
                    'ycoords_start', 'scan_index', '_metadata'):
            assert key in keys, key
        arrays = {k: npz[k] for k in keys if k != '_metadata'}
    m = arrays['xcoords'].shape[0]
    for key in ('xcoords', 'ycoords', 'xcoords_start', 'ycoords_start', 'scan_index'):
        assert arrays[key].ndim == 1 and arrays[key].shape[0] == m, key
    stack = arrays['diff3d']
    assert stack.ndim == 3 and stack.shape[0] == m and stack.shape[1] == stack.shape[2]
    assert arrays['probeGuess'].ndim == 2 and np.iscomplexobj(arrays['probeGuess'])
    # train_cdi_model multiplies the probe by a pattern-sized mask (seen failing by hand at 32 vs 64)
    assert arrays['probeGuess'].shape == stack.shape[1:]
    assert arrays['objectGuess'].ndim == 2
    with NpzArchive(path) as archive:
        assert archive.info('_metadata').is_object  # 0-d object array, as PtychoPINN writes it
        metadata = archive.read_metadata()
    assert metadata is not None and metadata['diffraction_key'] == 'diff3d'
    arrays['_metadata'] = metadata  # type: ignore[assignment]
    return arrays


def _ptychodus_files(
    tmp_path: Path, *, reconstructed_px: int | None = None, **sim: Any
) -> tuple[Path, Path, dict[str, np.ndarray]]:
    """Our simulated NPZ -> Ptychodus (our readers) -> Ptychodus's own CXI and HDF5 product writers.

    ``reconstructed_px``: the product stands for a reconstruction from patterns cropped to
    that size, so its probe is that size (the centre of the simulated probe).
    """
    source = tmp_path / 'sim.npz'
    arrays = write_sample(source, **{**SIM, **sim})
    cxi, product_h5 = tmp_path / 'patterns.cxi', tmp_path / 'product.h5'
    with ModelCore() as core:
        core.diffraction_core.diffraction_settings.crop_enabled.set_value(False)
        api = core.workflow_api
        dataset = api.load_diffraction_data(source, file_type='PtychoPINN_NPZ', block=True)
        core.run_tasks()
        product = api.load_product(source, file_type='PtychoPINN_NPZ', diffraction=dataset)
        core.run_tasks()
        core.diffraction_core.diffraction_api.save_patterns(cxi, 'CXI', dataset_index=dataset.get_dataset_index())
        product.save_product(product_h5, file_type='HDF5')
    if reconstructed_px is not None:
        with h5py.File(product_h5, 'r+') as h5:
            probe, attrs = h5['probe'][()], dict(h5['probe'].attrs)
            lo = (probe.shape[-1] - reconstructed_px) // 2
            del h5['probe']
            h5['probe'] = probe[..., lo : lo + reconstructed_px, lo : lo + reconstructed_px]
            h5['probe'].attrs.update(attrs)
    return cxi, product_h5, arrays


def test_simulation_through_ptychodus_formats_round_trips(tmp_path: Path) -> None:
    """17.5(a): xcoords/ycoords to 1e-6 px, patterns to float32 rounding, probe exactly."""
    cxi, product_h5, original = _ptychodus_files(tmp_path)
    out = tmp_path / 'train.npz'
    report = export_training_data(TrainingSources(cxi, product=product_h5, product_reader='HDF5'), out)
    got = assert_ptychopinn_loads(out)
    assert report.patterns == original['xcoords'].size
    np.testing.assert_allclose(got['xcoords'], original['xcoords'], atol=1e-6, rtol=0)
    np.testing.assert_allclose(got['ycoords'], original['ycoords'], atol=1e-6, rtol=0)
    assert got['diff3d'].dtype == np.float32
    np.testing.assert_allclose(got['diff3d'], original['diffraction'], rtol=2e-7 * 4, atol=1e-6)
    np.testing.assert_array_equal(got['probeGuess'], original['probeGuess'])
    np.testing.assert_array_equal(got['objectGuess'], original['objectGuess'])
    meta: Any = got['_metadata']
    assert meta['measurement_domain'] == 'amplitude'
    assert meta['provenance']['diffraction']['reader'] == 'CXI'
    assert meta['provenance']['product']['reader'] == 'HDF5'
    assert 'pattern centre' in meta['provenance']['crop'] or 'beam centre' in meta['provenance']['crop']


def test_export_reopened_puts_probes_on_same_object_pixels(tmp_path: Path) -> None:
    """17.5(c): the export, read again by our readers in Ptychodus, maps each probe where the source did."""
    from ptychopinn_ptychodus.host.compat import host_object_pixels

    cxi, product_h5, _ = _ptychodus_files(tmp_path)
    out = tmp_path / 'train.npz'
    export_training_data(TrainingSources(cxi, product=product_h5, product_reader='HDF5'), out)
    pixels = []
    for path, reader in ((product_h5, 'HDF5'), (out, 'PtychoPINN_NPZ')):
        with ModelCore() as core:
            core.diffraction_core.diffraction_settings.crop_enabled.set_value(False)
            api = core.workflow_api
            dataset = api.load_diffraction_data(cxi, file_type='CXI', block=True)
            core.run_tasks()
            product = api.load_product(path, file_type=reader, diffraction=dataset).get_product()
            pixels.append(host_object_pixels(product.object_.get_geometry(), product.probe_positions))
    np.testing.assert_allclose(pixels[1][0], pixels[0][0], atol=1e-6, rtol=0)
    np.testing.assert_allclose(pixels[1][1], pixels[0][1], atol=1e-6, rtol=0)


def test_counts_modes_and_crop(tmp_path: Path) -> None:
    """Counts on request (declared), first probe mode with a recorded note, centred explicit crop."""
    cxi, product_h5, original = _ptychodus_files(tmp_path, probe_modes=2, reconstructed_px=16)
    out = tmp_path / 'train.npz'
    report = export_training_data(
        TrainingSources(cxi, product=product_h5, product_reader='HDF5'), out, counts=True, keep_probe_modes=True, crop_px=16
    )
    got = assert_ptychopinn_loads(out)
    assert got['diff3d'].shape[1:] == (16, 16)
    centre = original['diffraction'][:, 8:24, 8:24].astype(np.float64) ** 2
    np.testing.assert_allclose(got['diff3d'], centre, rtol=1e-5)
    meta: Any = got['_metadata']
    assert meta['measurement_domain'] == 'count_intensity'
    assert any('2 modes' in note for note in report.notes)
    np.testing.assert_array_equal(got['probe_modes'][1], original['probeGuess'][1, 8:24, 8:24])
    assert 'rows 8:24, cols 8:24' in meta['provenance']['crop']


def test_crop_with_a_product_not_reconstructed_at_it_is_refused(tmp_path: Path) -> None:
    """Cropped 16 px patterns with the 32 px probe of the uncropped product: one line, no file.

    Such a file loads with ``RawData.from_file``, and PtychoPINN's training set-up then
    fails multiplying a 16 px mask by the 32 px probe (seen by hand with PtychoPINN at
    712c23f, 32 vs 64 px): the pairing is refused where it is made.
    """
    cxi, product_h5, _ = _ptychodus_files(tmp_path)
    out = tmp_path / 'train.npz'
    with pytest.raises(InvalidInputError) as refused:
        export_training_data(TrainingSources(cxi, product=product_h5, product_reader='HDF5'), out, crop_px=16)
    assert str(refused.value) == (
        f'{out}: the probe is 32x32 but the patterns are 16x16; PtychoPINN needs probeGuess at the '
        'pattern size: use a product reconstructed at this crop (or no --crop)'
    )
    assert not out.exists() and list(tmp_path.glob('.train.npz.*')) == []


def test_reader_choice_is_explicit_when_ambiguous(tmp_path: Path, registry: Any) -> None:
    path = tmp_path / 'x.h5'
    with pytest.raises(InvalidInputError, match='several diffraction readers fit'):
        choose_reader(registry.diffraction_file_readers, path, None, 'diffraction')
    assert choose_reader(registry.diffraction_file_readers, tmp_path / 'x.cxi', None, 'diffraction') == 'CXI'
    with pytest.raises(InvalidInputError, match="no diffraction reader 'nope'"):
        choose_reader(registry.diffraction_file_readers, path, 'nope', 'diffraction')


def test_core_writer_is_atomic_on_short_stream(tmp_path: Path) -> None:
    """A stream that ends early publishes nothing (no partial file, no temporary left)."""
    grid = ObjectGrid(width_px=40, height_px=40, pixel_width_m=1e-8, pixel_height_m=1e-8)
    data = TrainingData(
        intensity_blocks=iter([np.ones((2, 8, 8), np.float32)]),
        pattern_shape=(3, 8, 8),
        probe=np.ones((8, 8), np.complex64),
        object=np.ones((40, 40), np.complex64),
        grid=grid,
        position_x_m=np.zeros(3),
        position_y_m=np.zeros(3),
    )
    out = tmp_path / 'short.npz'
    with pytest.raises(ValueError, match='ended after 2 of 3'):
        write_training_npz(out, data)
    assert list(tmp_path.iterdir()) == []
    assert not zipfile.is_zipfile(out) if out.exists() else True


def test_cli_writes_one_file_and_refuses_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ptychopinn_ptychodus.cli.tool import main

    cxi, product_h5, original = _ptychodus_files(tmp_path)
    out = tmp_path / 'cli.npz'
    argv = ['training-data', str(cxi), '--product', str(product_h5), '--product-reader', 'HDF5',
            '-o', str(out), '--photon-energy-eV', '9000', '--quiet']
    assert main(argv) == 0
    got = assert_ptychopinn_loads(out)
    np.testing.assert_allclose(got['xcoords'], original['xcoords'], atol=1e-6, rtol=0)
    assert main(argv) == 1  # exists, no --overwrite
    bad = tmp_path / 'bad.npz'
    assert main(['training-data', str(cxi), '--product', str(product_h5), '-o', str(bad)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith('ptychopinn-ptychodus training-data: error: ') and 'pick one: HDF5' in err[-1]
    assert not bad.exists()


def test_docs_command_runs(tmp_path: Path) -> None:
    """The ```console block of docs/training_data.md, run on files Ptychodus's writers made."""
    import re
    import shlex

    from ptychopinn_ptychodus.cli.tool import main

    page = (Path(__file__).resolve().parents[1] / 'docs' / 'training_data.md').read_text()
    block = re.search(r'```console\n\$ ptychopinn-ptychodus (.+)\n```', page)
    assert block is not None
    cxi, product_h5, original = _ptychodus_files(tmp_path)
    names = {'patterns.cxi': cxi, 'product.h5': product_h5, 'train.npz': tmp_path / 'train.npz'}
    argv = [str(names.get(word, word)) for word in shlex.split(block.group(1))]
    assert main([*argv, '--quiet']) == 0
    got = assert_ptychopinn_loads(tmp_path / 'train.npz')
    np.testing.assert_allclose(got['ycoords'], original['ycoords'], atol=1e-6, rtol=0)


def tike_ptychodus_files(tmp_path: Path, data_dir: Path) -> tuple[Path, Path, Path, np.ndarray, int]:
    """tike's Siemens star through Ptychodus's own CXI diffraction writer and CSV position writer.

    The probe goes to ``.npy`` (what Ptychodus's NPY probe reader reads). Positions are probe
    centres in metres, tike's window corner + (N - 1) / 2 pixels (Ptychodus centres a probe at
    index (N - 1) / 2), at the object pixel Ptychodus derives: lambda z / (N * detector pixel).
    """
    import bz2

    from ptychodus.api.diffraction import (
        DiffractionDatasetLayoutNode,
        DiffractionMetadata,
        SimpleDiffractionArray,
        SimpleDiffractionDataset,
    )
    from ptychodus.api.geometry import ImageExtent, PixelGeometry
    from ptychodus.api.plugins import PluginRegistry
    from ptychodus.api.probe_positions import ProbePosition, ProbePositionSequence

    raw = tmp_path / 'tike.npz'
    raw.write_bytes(bz2.decompress((data_dir / 'tike_siemens-star-small.npz.bz2').read_bytes()))
    with np.load(raw, allow_pickle=False) as npz:
        data, probe, scan = npz['data'][0], npz['probe'][0, 0, 0, 0], npz['scan'][0].astype(np.float64)
    n = data.shape[-1]
    patterns = np.fft.fftshift(data, axes=(-2, -1))  # tike keeps the zero frequency at the corner
    energy_ev, distance_m, detector_px_m = 8800.0, 2.0, 75e-6
    pixel_m = 1.239841984e-6 / energy_ev * distance_m / (n * detector_px_m)
    registry = PluginRegistry.load_plugins()
    metadata = compat.diffraction_metadata(DiffractionMetadata, {  # energy: 1.7 and older spellings
        'num_patterns_per_array': [len(patterns)], 'pattern_dtype': patterns.dtype,
        'detector_extent': ImageExtent(width_px=n, height_px=n), 'detector_distance_m': distance_m,
        'detector_pixel_geometry': PixelGeometry(width_m=detector_px_m, height_m=detector_px_m),
        'photon_energy_eV': energy_ev,
    })
    indexes = np.arange(len(patterns))
    dataset = SimpleDiffractionDataset(metadata, DiffractionDatasetLayoutNode.create_root(),
                                       [SimpleDiffractionArray('tike', indexes, patterns)])
    cxi, csv, npy = tmp_path / 'tike.cxi', tmp_path / 'positions.csv', tmp_path / 'probe.npy'
    compat.find_strategy(registry.diffraction_file_writers, 'CXI').write(cxi, dataset)
    centre = (n - 1) / 2
    positions = ProbePositionSequence([
        ProbePosition(int(i), (x + centre) * pixel_m, (y + centre) * pixel_m)
        for i, (y, x) in zip(indexes, scan, strict=True)
    ])
    compat.find_strategy(registry.probe_position_file_writers, 'CSV').write(csv, positions)
    np.save(npy, probe)
    return cxi, csv, npy, scan, n


def test_tike_siemens_star_positions(tmp_path: Path, shared_data: Path) -> None:
    """17.5(b): relative xcoords/ycoords equal tike's scan + N//2 to 1e-6 px; probe as read."""
    cxi, csv, npy, scan, n = tike_ptychodus_files(tmp_path, shared_data)
    out = tmp_path / 'tike_train.npz'
    export_training_data(TrainingSources(cxi, positions=csv, probe=npy), out)
    got = assert_ptychopinn_loads(out)
    for coords, column in ((got['xcoords'], 1), (got['ycoords'], 0)):
        expected = scan[:, column] + n // 2
        np.testing.assert_allclose(coords - coords[0], expected - expected[0], atol=1e-6, rtol=0)
    assert got['diff3d'].shape == (scan.shape[0], n, n)
    np.testing.assert_array_equal(got['probeGuess'], np.load(npy))


def test_bad_pixels_file_is_cropped_with_the_patterns(tmp_path: Path) -> None:
    """A mask read by Ptychodus's NPY bad-pixels reader comes out at the cropped pattern shape."""
    cxi, product_h5, _ = _ptychodus_files(tmp_path, reconstructed_px=16)
    mask = np.zeros((32, 32), dtype=bool)
    mask[[0, 10, 20, 23], [0, 12, 9, 23]] = True  # (0, 0) lies outside the centred 16x16 crop
    mask_path = tmp_path / 'mask.npy'
    np.save(mask_path, mask)
    sources = TrainingSources(cxi, product=product_h5, product_reader='HDF5', bad_pixels=mask_path)
    with pytest.raises(InvalidInputError, match='several bad-pixels readers fit'):
        export_training_data(sources, tmp_path / 'refused.npz', crop_px=16)
    assert not (tmp_path / 'refused.npz').exists()
    sources.bad_pixels_reader = 'NPY_Bad_Pixels'
    out = tmp_path / 'train.npz'
    report = export_training_data(sources, out, crop_px=16)
    got = assert_ptychopinn_loads(out)
    assert got['bad_pixels'].shape == got['diff3d'].shape[1:] == (16, 16)
    np.testing.assert_array_equal(got['bad_pixels'], mask[8:24, 8:24])
    assert any('3 bad pixels' in note for note in report.notes)
    meta: Any = got['_metadata']
    assert meta['provenance']['bad_pixels']['reader'] == 'NPY_Bad_Pixels'


def test_progress_bar_on_a_terminal(tmp_path: Path) -> None:
    """Without --quiet on a terminal, tqdm counts every pattern (the CLI run under a pseudo-terminal)."""
    import fcntl
    import os
    import pty
    import struct
    import subprocess
    import sys
    import termios

    cxi, product_h5, original = _ptychodus_files(tmp_path)
    out = tmp_path / 'train.npz'
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack('HHHH', 24, 120, 0, 0))  # a 120-column terminal
    code = 'import sys; from ptychopinn_ptychodus.cli.tool import main; sys.exit(main())'
    proc = subprocess.run(
        [sys.executable, '-c', code, 'training-data', str(cxi), '--product', str(product_h5),
         '--product-reader', 'HDF5', '-o', str(out)],
        stderr=follower, stdout=subprocess.PIPE, timeout=300, check=False,
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    terminal = b''.join(chunks).decode(errors='replace')
    assert proc.returncode == 0, terminal
    n = original['xcoords'].size
    assert f'{n}/{n}' in terminal and 'pattern' in terminal and cxi.name in terminal
    assert_ptychopinn_loads(out)
