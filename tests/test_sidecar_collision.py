"""Issue 18.2: our sidecar cannot collide with other tools' same-stem JSON."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from ptychopinn_ptychodus.convert.sidecar import find_sidecar, open_with_sidecar, read_sidecar
from ptychopinn_ptychodus.facts.errors import InvalidInputError


def write_provenance_json(npz: Path) -> Path:
    """A same-stem provenance JSON as PtychoPINN's fixture maker writes one.

    Imitates ``scripts/tools/make_pytorch_integration_fixture.py`` (hoidn/PtychoPINN),
    which saves ``<stem>.json`` next to ``minimal_dataset_v1.npz`` with keys such
    as ``version``, the source file and the subsampling parameters.
    """
    path = npz.with_suffix('.json')
    path.write_text(json.dumps({'version': 'v1', 'source_file': 'datasets/x.npz', 'n_subsample': 64,
                                'seed': 42, 'created': '2025-01-01T00:00:00'}))
    return path


def test_foreign_json_never_stops_the_file_opening(sample_npz, caplog):
    npz, _ = sample_npz()
    write_provenance_json(npz)
    with caplog.at_level(logging.WARNING):
        assert find_sidecar(npz) is None
        dataset, meta = open_with_sidecar(npz, require_probe=True)
    with dataset:
        assert dataset.require_stack().num_patterns > 0
    assert meta.given() == {}
    notes = [r.getMessage() for r in caplog.records if 'not our sidecar' in r.getMessage()]
    assert len(notes) == 1 and "'version'" in notes[0] and '.ptychodus.json' in notes[0]


def test_broken_foreign_json_is_ignored_too(sample_npz):
    npz, _ = sample_npz()
    npz.with_suffix('.json').write_text('[1, 2')
    assert find_sidecar(npz) is None


def test_legacy_json_with_only_our_keys_is_still_read(sample_npz):
    npz, _ = sample_npz()
    npz.with_suffix('.json').write_text(json.dumps({'detector_distance_m': 1.25, 'name': 'run'}))
    meta, _ = read_sidecar(npz)
    assert meta.detector_distance_m == 1.25 and meta.name == 'run'


def test_own_name_wins_and_is_strict(sample_npz):
    npz, _ = sample_npz()
    write_provenance_json(npz)
    ours = npz.with_suffix('.ptychodus.json')
    ours.write_text(json.dumps({'photon_energy_eV': 9000.0, 'diffraction_domain': 'amplitude'}))
    assert find_sidecar(npz) == ours
    meta, options = read_sidecar(npz)
    assert meta.photon_energy_eV == 9000.0 and options == {'diffraction_domain': 'amplitude'}
    ours.write_text(json.dumps({'version': 'v1'}))  # a file under our own name must be ours
    with pytest.raises(InvalidInputError, match="unknown metadata key 'version'"):
        read_sidecar(npz)
