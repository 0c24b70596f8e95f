"""Issue 18.3/18.4: reverse NPZs keep our keys inside PtychoPINN's ``_metadata``, and lose nothing."""

from __future__ import annotations

import json

import numpy as np
from helpers import our_npz_keys

from ptychopinn_ptychodus import ExportMeta, export_product, import_product
from ptychopinn_ptychodus.npz.archive import NpzArchive, write_npz
from ptychopinn_ptychodus.npz.dataset import ReadOptions, interpret
from ptychopinn_ptychodus.npz.store import ArchiveStore


def _round_trip(sample_npz, npz_from_arrays, tmp_path, **extra):
    _, arrays = sample_npz()
    npz = npz_from_arrays('src.npz', **arrays, **extra)
    export_product(npz, tmp_path / 'p.h5', ExportMeta(photon_energy_eV=8000.0, detector_distance_m=1.5))
    import_product(tmp_path / 'p.h5', tmp_path / 'back.npz')
    return arrays, tmp_path / 'back.npz'


def test_every_top_level_array_has_a_first_axis(sample_npz, npz_from_arrays, tmp_path):
    """PtychoPINN's split/shuffle tools index ``shape[0]`` of every array (no 0-d arrays allowed)."""
    _, back = _round_trip(sample_npz, npz_from_arrays, tmp_path)
    with np.load(back, allow_pickle=True) as z:
        zero_d = [key for key in z.files if key != '_metadata' and z[key].ndim == 0]
        metadata = z['_metadata']
    assert zero_d == []
    # _metadata as ptycho/metadata.py writes it: a 0-d object array holding one JSON str.
    assert metadata.dtype == object and metadata.shape == () and isinstance(metadata.item(), str)
    ours = json.loads(metadata.item())['ptychopinn_ptychodus']
    assert ours['detector_distance_m'] == 1.5 and ours['position_convention'] == 'ptychopinn'


def test_reverse_npz_reads_back_exactly(sample_npz, npz_from_arrays, tmp_path):
    arrays, back = _round_trip(sample_npz, npz_from_arrays, tmp_path)
    with np.load(back, allow_pickle=False) as z:
        for key in ('xcoords', 'ycoords', 'probeGuess', 'objectGuess'):
            np.testing.assert_array_equal(z[key], arrays[key])
    dataset = interpret(ArchiveStore(back), ReadOptions(require_probe=True))
    with dataset:
        assert dataset.stored_values['photon_energy_eV'] == 8000.0
        assert dataset.convention_reason.startswith('recorded in the file')


def test_source_metadata_is_kept_beside_ours(sample_npz, npz_from_arrays, tmp_path):
    meta = {'nphotons': 1e9, 'measurement_domain': 'amplitude'}
    _, back = _round_trip(sample_npz, npz_from_arrays, tmp_path,
                          _metadata=np.array(json.dumps(meta), dtype=object))
    with NpzArchive(back) as archive:  # our restricted reader, no pickle run
        restored = archive.read_metadata('_metadata')
    assert restored is not None
    assert restored.pop('ptychopinn_ptychodus')['diffraction_domain'] == 'amplitude'
    assert restored == meta


def test_unknown_photon_energy_is_not_recorded_as_zero(sample_npz, npz_from_arrays, tmp_path):
    """A product without photon energy must not give an NPZ our own converter then refuses."""
    _, arrays = sample_npz()
    npz = npz_from_arrays('src.npz', **arrays)
    export_product(npz, tmp_path / 'p.h5', ExportMeta(detector_distance_m=1.5))
    import h5py

    with h5py.File(tmp_path / 'p.h5', 'r+') as h5:  # as a product written without an energy
        for name in [n for n in h5.attrs if 'energy' in n]:
            h5.attrs[name] = 0.0
    import_product(tmp_path / 'p.h5', tmp_path / 'back.npz')
    assert 'photon_energy_eV' not in our_npz_keys(tmp_path / 'back.npz')
    export_product(tmp_path / 'back.npz', tmp_path / 'again.h5')  # forward again: defaults, warned


def test_npz_as_0_2_0_wrote_it_still_reads(sample_npz, tmp_path):
    """0.2.0 wrote our keys as top-level 0-d arrays (importer.quantity_arrays + CONVENTION_KEY)."""
    _, arrays = sample_npz()
    old = tmp_path / 'old.npz'
    write_npz(old, {**arrays, 'detector_distance_m': np.asarray(2.5), 'photon_energy_eV': np.asarray(7000.0),
                    'product_name': np.asarray('old run'), 'position_convention': np.asarray('identity'),
                    'diffraction_domain': np.asarray('amplitude')})
    dataset = interpret(ArchiveStore(old), ReadOptions(require_probe=True))
    with dataset:
        assert dataset.stored_values['detector_distance_m'] == 2.5
        assert dataset.stored_name == 'old run'
        assert dataset.convention.value == 'identity'


def test_rawdata_falls_back_when_ptycho_raw_data_cannot_be_imported(sample_npz, tmp_path, monkeypatch, caplog):
    """Another package named ``ptycho`` (no ``raw_data``) must not break ``import_product_to_rawdata``."""
    from ptychopinn_ptychodus.convert.rawdata import PtychoPINNRawData, import_product_to_rawdata

    npz, _ = sample_npz()
    export_product(npz, tmp_path / 'p.h5', ExportMeta(photon_energy_eV=8000.0, detector_distance_m=1.5))
    fake = tmp_path / 'fake' / 'ptycho'
    fake.mkdir(parents=True)
    (fake / '__init__.py').write_text('')
    monkeypatch.syspath_prepend(str(tmp_path / 'fake'))
    monkeypatch.delitem(__import__('sys').modules, 'ptycho', raising=False)
    raw = import_product_to_rawdata(tmp_path / 'p.h5')
    assert isinstance(raw, PtychoPINNRawData)
    assert any('ptycho.raw_data cannot be imported' in r.getMessage() for r in caplog.records)


def test_rawdata_keeps_counts_as_counts(sample_npz, npz_from_arrays, tmp_path):
    """A count dataset (``measurement_domain='count_intensity'``, as PtychoPINN's
    ``scripts/studies/make_synthetic_truth_datasets.py`` writes) comes back as counts, not sqrt(counts)."""
    from ptychopinn_ptychodus.convert.rawdata import import_product_to_rawdata

    _, arrays = sample_npz(key='diff3d', counts=True)
    meta = {'measurement_domain': 'count_intensity'}
    npz = npz_from_arrays('counts.npz', _metadata=np.array(json.dumps(meta), dtype=object), **arrays)
    export_product(npz, tmp_path / 'p.h5', ExportMeta(photon_energy_eV=8000.0, detector_distance_m=1.5))
    raw = import_product_to_rawdata(tmp_path / 'p.h5', plain=True)
    np.testing.assert_array_equal(raw.diff3d, arrays['diff3d'])
    assert raw.diff3d.dtype == arrays['diff3d'].dtype
    assert raw.metadata == meta
    assert raw.probeGuess.ndim == 2
