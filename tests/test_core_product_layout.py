"""The product HDF5: root attributes (both spellings), /raw_data bundle, hard links, comments."""

from __future__ import annotations

import json
import logging

import h5py
import numpy as np
import pytest
from helpers import h5_attrs, product_pixels, ptychopinn_pixels
from ptychodus.api.io import load_product

from ptychopinn_ptychodus import ExportMeta, export_product

FULL_META = ExportMeta(
    name='run',
    comments='my comments',
    detector_distance_m=1.5,
    photon_energy_eV=9100.0,
    exposure_time_s=0.25,
    probe_photon_count=1.5e9,
    mass_attenuation_m2_per_kg=12.5,
    tomography_angle_deg=33.0,
    object_pixel_width_m=3e-8,
    object_pixel_height_m=3e-8,
)


@pytest.fixture
def product(sample_npz, tmp_path):
    npz, arrays = sample_npz(layout='HWN')
    out = tmp_path / 'out.h5'
    export_product(npz, out, FULL_META)
    return out, arrays


def test_root_attributes_carry_both_spellings(product):
    out, _ = product
    attrs = h5_attrs(out)
    assert attrs['photon_energy_eV'] == attrs['probe_energy_eV'] == 9100.0
    assert attrs['mass_attenuation_m2_per_kg'] == attrs['mass_attenuation_m2_kg'] == 12.5
    assert attrs['detector_object_distance_m'] == 1.5
    assert attrs['exposure_time_s'] == 0.25
    assert attrs['probe_photon_count'] == 1.5e9
    assert attrs['tomography_angle_deg'] == 33.0
    assert attrs['name'] == 'run'
    for key in ('focus_object_distance_m', 'tilt_angle_deg', 'far_field'):
        assert key in attrs


def test_ptychodus_reads_the_metadata(product):
    out, _ = product
    meta = load_product(out).metadata
    assert meta.name == 'run'
    assert meta.comments.startswith('my comments')
    assert meta.detector_distance_m == 1.5
    assert meta.photon_energy_eV == 9100.0
    assert meta.exposure_time_s == 0.25
    assert meta.probe_photon_count == 1.5e9
    assert meta.mass_attenuation_m2_per_kg == 12.5
    assert meta.tomography_angle_deg == 33.0
    assert meta.far_field is True


def test_raw_diffraction_is_canonical_amplitude(product):
    out, arrays = product
    with h5py.File(out, 'r') as h5:
        dset = h5['raw_data/diffraction']
        np.testing.assert_array_equal(dset[()], np.moveaxis(arrays['diffraction'], -1, 0))
        attrs = dict(dset.attrs)
    assert attrs['axis_canonical'] == 'NHW'
    assert attrs['original_axis_order'] == 'HWN'
    assert attrs['measurement_domain'] == 'amplitude'
    assert attrs['source_domain'] == 'amplitude'
    assert isinstance(attrs['domain_reason'], str) and attrs['domain_reason']


def test_raw_coordinates_are_pixels(product):
    out, arrays = product
    with h5py.File(out, 'r') as h5:
        raw = h5['raw_data']
        for key in ('xcoords', 'ycoords', 'xcoords_start', 'ycoords_start', 'scan_index'):
            np.testing.assert_array_equal(raw[key][()], arrays[key], err_msg=key)


def test_probe_and_object_guess_are_hard_links(product):
    out, _ = product
    with h5py.File(out, 'r') as h5:
        assert h5['raw_data/probeGuess'] == h5['probe']
        assert h5['raw_data/objectGuess'] == h5['object']
        assert h5['raw_data/probeGuess'].id == h5['probe'].id
        assert isinstance(h5['raw_data'].get('probeGuess', getlink=True), h5py.HardLink)
        assert isinstance(h5['raw_data'].get('objectGuess', getlink=True), h5py.HardLink)


def test_position_datasets(product):
    out, arrays = product
    num = arrays['xcoords'].size
    with h5py.File(out, 'r') as h5:
        np.testing.assert_array_equal(h5['probe_position_indexes'][()], np.arange(num))
        assert h5['probe_position_x_m'].dtype == np.float64
        assert h5['probe_position_y_m'].shape == (num,)


def test_metadata_json_kept(sample_npz, npz_from_arrays, tmp_path):
    _, arrays = sample_npz()
    meta = {'nphotons': 1e9, 'scale_contract_version': 2, 'note': 'from PtychoPINN'}
    npz = npz_from_arrays('meta.npz', _metadata=np.array(json.dumps(meta), dtype=object), **arrays)

    export_product(npz, tmp_path / 'out.h5')

    with h5py.File(tmp_path / 'out.h5', 'r') as h5:
        text = h5['raw_data/_metadata'][()]
    assert json.loads(text.decode() if isinstance(text, bytes) else text) == meta


def test_no_metadata_dataset_without_metadata(sample_npz, tmp_path):
    npz, _ = sample_npz()
    export_product(npz, tmp_path / 'out.h5')
    with h5py.File(tmp_path / 'out.h5', 'r') as h5:
        assert '_metadata' not in h5['raw_data']


def test_defaults_are_listed_in_comments(sample_npz, tmp_path):
    npz, _ = sample_npz()
    out = tmp_path / 'out.h5'

    report = export_product(npz, out, ExportMeta(comments='user text'))

    comments = load_product(out).metadata.comments
    assert comments.startswith('user text')
    for key in ('photon_energy_eV', 'detector_distance_m', 'object_pixel_width_m', 'object_pixel_height_m'):
        assert key in comments, key
        assert key in report.defaulted
    with h5py.File(out, 'r') as h5:
        defaulted = set(json.loads(h5.attrs['ptychopinn_defaulted']))
    assert defaulted >= {'photon_energy_eV', 'detector_distance_m'}


def test_given_values_are_not_called_defaults(product):
    out, _ = product
    comments = load_product(out).metadata.comments
    for key in ('photon_energy_eV', 'detector_distance_m', 'object_pixel_width_m'):
        assert f'{key} unknown' not in comments


def test_domain_decision_is_recorded_and_logged(sample_npz, tmp_path, caplog):
    npz, _ = sample_npz(key='diff3d', counts=True)
    out = tmp_path / 'out.h5'

    with caplog.at_level(logging.INFO, logger='ptychopinn_ptychodus'):
        export_product(npz, out)

    with h5py.File(out, 'r') as h5:
        attrs = dict(h5['raw_data/diffraction'].attrs)
    assert attrs['source_domain'] == 'intensity'
    assert 'uint16' in attrs['domain_reason']
    logged = ' '.join(record.getMessage() for record in caplog.records)
    assert 'diff3d is intensity' in logged


def test_no_raw_data_group_when_excluded(sample_npz, tmp_path):
    npz, arrays = sample_npz()
    out = tmp_path / 'out.h5'

    export_product(npz, out, include_raw=False)

    with h5py.File(out, 'r') as h5:
        assert 'raw_data' not in h5
    x_px, _ = product_pixels(out)
    np.testing.assert_allclose(x_px, ptychopinn_pixels(arrays)[0], atol=1e-6)  # default convention


def test_npz_without_diffraction_bundles_positions_only(sample_npz, npz_from_arrays, tmp_path):
    _, arrays = sample_npz()
    del arrays['diffraction']
    npz = npz_from_arrays('nodiff.npz', **arrays)
    out = tmp_path / 'out.h5'

    report = export_product(npz, out)

    assert any('diffraction' in note for note in report.notes)
    with h5py.File(out, 'r') as h5:
        assert 'diffraction' not in h5['raw_data']
        np.testing.assert_array_equal(h5['raw_data/xcoords'][()], arrays['xcoords'])


def test_npz_without_diffraction_and_explicit_bundle_warns(sample_npz, npz_from_arrays, tmp_path):
    """As PtychoPINN's own exporter does: an explicit bundle without a stack holds the rest."""
    _, arrays = sample_npz()
    del arrays['diffraction']
    npz = npz_from_arrays('nodiff.npz', **arrays)

    report = export_product(npz, tmp_path / 'out.h5', include_raw=True)

    assert any('no diffraction stack' in note for note in report.notes)
    with h5py.File(tmp_path / 'out.h5', 'r') as h5:
        assert 'diffraction' not in h5['raw_data']
        np.testing.assert_array_equal(h5['raw_data/ycoords'][()], arrays['ycoords'])
