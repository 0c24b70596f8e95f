"""Issue 18.3: NPZ -> product -> NPZ gives back every array of the source, the unknown ones included."""

from __future__ import annotations

import json
import logging
import tracemalloc
from pathlib import Path

import h5py
import numpy as np

from ptychopinn_ptychodus import ExportMeta, export_product, import_product
from ptychopinn_ptychodus.convert import importer
from ptychopinn_ptychodus.npz.archive import StreamedArray

META = ExportMeta(photon_energy_eV=8000.0, detector_distance_m=1.5)


def ptychopinn_simulated_npz(path: Path, sample: dict[str, np.ndarray], **more: np.ndarray) -> dict[str, np.ndarray]:
    """What PtychoPINN's simulator saves, plus the arrays it carries that we do not interpret.

    Imitates ``scripts/simulation/simulate_and_save.py`` (``data_dict`` with
    ``ground_truth_patches``, saved by ``MetadataManager.save_with_metadata`` in
    ``ptycho/metadata.py``: ``numpy.savez`` with ``_metadata`` a 0-d object array
    of one JSON str) and ``scripts/compare_models.py``, which saves ``Y`` (the
    (M, N, N, 1) complex64 ground-truth patches of ``RawData.Y``). ``label`` and
    ``probeName`` stand for any other key a PtychoPINN file may hold.
    """
    m = len(sample['xcoords'])
    n = sample['probeGuess'].shape[-1]
    rng = np.random.default_rng(3)
    patches = (rng.standard_normal((m, n, n)) + 1j * rng.standard_normal((m, n, n))).astype(np.complex64)
    unknown = {
        'Y': patches[..., None],
        'ground_truth_patches': patches,
        'label': np.arange(m, dtype=np.int32) % 3,
        'probeName': np.array('fresnel zone plate'),  # 0-d string
        'norm_Y_I': np.array(1.25, dtype=np.float64),  # 0-d number
        'flags': rng.random(m) > 0.5,
        **more,
    }
    metadata = np.empty((), dtype=object)
    metadata[()] = json.dumps({'script_name': 'simulate_and_save.py', 'nphotons': 1e9})
    np.savez(path, **sample, **unknown, _metadata=metadata)
    return unknown


def _assert_same(back: Path, unknown: dict[str, np.ndarray]) -> None:
    with np.load(back, allow_pickle=False) as z:
        for key, value in unknown.items():
            assert key in z.files, key
            got = z[key]
            assert got.dtype == value.dtype and got.shape == value.shape, key
            assert got.tobytes() == value.tobytes(), key


def test_unknown_arrays_round_trip_bit_exact(sample_npz, tmp_path):
    _, sample = sample_npz()
    unknown = ptychopinn_simulated_npz(tmp_path / 'sim.npz', sample)
    export_product(tmp_path / 'sim.npz', tmp_path / 'p.h5', META)
    with h5py.File(tmp_path / 'p.h5', 'r') as h5:
        carried = json.loads(h5['raw_data'].attrs['carried_keys'])
        assert sorted(carried) == sorted(unknown)
        assert h5['raw_data/Y'].dtype == np.complex64 and h5['raw_data/Y'].shape == unknown['Y'].shape
    import_product(tmp_path / 'p.h5', tmp_path / 'back.npz')
    _assert_same(tmp_path / 'back.npz', unknown)
    with np.load(tmp_path / 'back.npz', allow_pickle=True) as z:  # source metadata kept around ours
        assert json.loads(z['_metadata'].item())['script_name'] == 'simulate_and_save.py'


def test_large_unknown_array_is_copied_in_blocks(sample_npz, tmp_path, monkeypatch):
    """A big unknown array goes through a chunked dataset in row blocks, never whole in memory."""
    _, sample = sample_npz()
    big = np.random.default_rng(0).random((2048, 1024), dtype=np.float32)  # 8 MiB
    unknown = ptychopinn_simulated_npz(tmp_path / 'sim.npz', sample, big_unknown=big)
    del big
    tracemalloc.start()
    try:
        export_product(tmp_path / 'sim.npz', tmp_path / 'p.h5', META, block_bytes=1 << 20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f'export peak {peak / 2**20:.2f} MiB')
    assert peak < 4 << 20, f'export peak {peak / 2**20:.1f} MiB for an 8 MiB unknown array'
    with h5py.File(tmp_path / 'p.h5', 'r') as h5:
        assert h5['raw_data/big_unknown'].chunks is not None
        monkeypatch.setattr(importer, 'RESTORE_BLOCK_BYTES', 1 << 20)  # the way back streams too
        assert isinstance(importer.carried_array(h5['raw_data/big_unknown']), StreamedArray)
    import_product(tmp_path / 'p.h5', tmp_path / 'back.npz')
    _assert_same(tmp_path / 'back.npz', unknown)


def test_object_arrays_are_skipped_with_one_warning(sample_npz, tmp_path, caplog):
    _, sample = sample_npz()
    ragged = np.empty(2, dtype=object)
    ragged[0], ragged[1] = [1], [1, 2]
    np.savez(tmp_path / 'obj.npz', **sample, ragged=ragged, label=np.zeros(3, np.int8))
    with caplog.at_level(logging.WARNING):
        export_product(tmp_path / 'obj.npz', tmp_path / 'p.h5', META)
    warnings = [r.getMessage() for r in caplog.records if 'ragged' in r.getMessage()]
    assert len(warnings) == 1 and 'not carried' in warnings[0]
    with h5py.File(tmp_path / 'p.h5', 'r') as h5:
        assert json.loads(h5['raw_data'].attrs['carried_keys']) == ['label']
        assert 'ragged' not in h5['raw_data']


def test_cli_reverse_gives_back_unknown_arrays(sample_npz, tmp_path, run_cli):
    _, sample = sample_npz()
    unknown = ptychopinn_simulated_npz(tmp_path / 'sim.npz', sample)
    export_product(tmp_path / 'sim.npz', tmp_path / 'p.h5', META)
    result = run_cli('--input-product', tmp_path / 'p.h5', '--output-npz', tmp_path / 'back.npz')
    assert result.returncode == 0, result.stderr
    _assert_same(tmp_path / 'back.npz', unknown)


def test_in_memory_api_carries_unknown_arrays(sample_npz, tmp_path):
    """A mapping handed to export_product_from_rawdata goes through the same carrying path."""
    from ptychopinn_ptychodus.convert.rawdata import export_product_from_rawdata

    _, sample = sample_npz()
    label = np.arange(len(sample['xcoords']), dtype=np.int16)
    export_product_from_rawdata({**sample, 'label': label}, tmp_path / 'p.h5', META)
    import_product(tmp_path / 'p.h5', tmp_path / 'back.npz')
    _assert_same(tmp_path / 'back.npz', {'label': label})


def test_plugin_npz_product_writer_drops_unknown_arrays(sample_npz, tmp_path, registry):
    """Through Ptychodus (our NPZ product reader, then our NPZ product writer) unknown arrays are lost.

    Ptychodus's ``Product`` holds probe, object, positions and metadata only, so
    the writer has nothing to write them from; docs/round_trips.md says so. The
    geometry still round-trips (tests/test_plugin_writers.py).
    """
    from ptychopinn_ptychodus import plugin

    _, sample = sample_npz()
    unknown = ptychopinn_simulated_npz(tmp_path / 'sim.npz', sample)
    reader = registry.product_file_readers.get_strategy_by_name(plugin.NPZ_SIMPLE_NAME)
    writer = registry.product_file_writers.get_strategy_by_name(plugin.NPZ_SIMPLE_NAME)
    assert type(writer) is plugin.NPZProductFileWriter
    writer.write(tmp_path / 'via_ptychodus.npz', reader.read(tmp_path / 'sim.npz'))
    with np.load(tmp_path / 'via_ptychodus.npz', allow_pickle=False) as z:
        assert not set(unknown) & set(z.files)
        assert np.array_equal(z['xcoords'], sample['xcoords'])
