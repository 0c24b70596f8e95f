"""Opening a dataset as an interactive reader does: with the JSON sidecar next to it.

Ptychodus's file dialog passes only a path, so experiment metadata (and
reader options such as the stack's domain) come from a JSON file next to
``run.npz``; without one, documented defaults apply and are warned about.

Other tools write same-stem JSON too (PtychoPINN's
``scripts/tools/make_pytorch_integration_fixture.py`` writes provenance with
keys like ``version``), so our sidecar has a name of its own,
``run.ptychodus.json``. The older ``run.json`` is still read, but only when
every key in it is ours; any other JSON there is ignored with one warning and
never stops a file from opening.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..facts.errors import InvalidInputError
from ..facts.quantities import SPELLINGS, TEXT_FIELDS, ExportMeta, read_json_object
from ..facts.stack import Domain, blocks_for
from ..npz.dataset import PtychoPINNDataset, ReadOptions, interpret
from ..npz.store import ArchiveStore
from .pairing import PairingOptions, attach_object

logger = logging.getLogger(__name__)

SIDECAR_SUFFIX = '.ptychodus.json'
#: The name 0.2.0 used; read only when all its keys are ours (others' JSON shares it).
LEGACY_SIDECAR_SUFFIX = '.json'
#: Sidecar keys that steer interpretation rather than describe the experiment.
READER_OPTIONS = ('diffraction_domain', 'positions', 'layout', 'position_convention')
#: Sidecar keys that take the object from a reconstruction output (convert/pairing.py);
#: ``object_from`` is relative to the sidecar's folder (the dataset's, for a sidecar next to it).
PAIRING_OPTIONS = ('object_from', 'object_key', 'object_placement', 'stitch_crop_size', 'tike_extra_padding')


def sidecar_path(file_path: Path) -> Path:
    """``run.npz`` -> ``run.ptychodus.json`` next to it: the name our sidecar is written under."""
    return file_path.with_suffix(SIDECAR_SUFFIX)


def legacy_sidecar_path(file_path: Path) -> Path:
    """``run.npz`` -> ``run.json``: the sidecar name of 0.2.0, shared with other tools' JSON."""
    return file_path.with_suffix(LEGACY_SIDECAR_SUFFIX)


#: Foreign JSON files already noted: one note per file, however often a host opens the dataset.
_NOTED: set[Path] = set()


def foreign_keys(values: dict[str, Any]) -> list[str]:
    """Keys of a JSON object that are not ours (quantities, ``name``/``comments``, reader options)."""
    return [key for key in values if key not in TEXT_FIELDS and key not in SPELLINGS
            and key not in READER_OPTIONS and key not in PAIRING_OPTIONS]


def find_sidecar(file_path: Path) -> Path | None:
    """The sidecar to read next to a dataset, or None; the one function the plugin and the CLI use.

    ``run.ptychodus.json`` wins. ``run.json`` counts only when it is a JSON
    object whose every key is ours; otherwise it belongs to another tool and is
    ignored with one warning (it never stops the dataset from opening).
    """
    ours = sidecar_path(file_path)
    legacy = legacy_sidecar_path(file_path)
    if ours.is_file():
        if legacy.is_file():
            logger.info('%s: using %s; %s is not read', file_path.name, ours.name, legacy.name)
        return ours
    if not legacy.is_file():
        return None
    try:
        values = read_json_object(legacy)
    except InvalidInputError as exc:
        if legacy in _NOTED:
            return None
        _NOTED.add(legacy)
        logger.warning('%s: ignoring %s, not our sidecar (%s)', file_path.name, legacy.name, exc.problem)
        return None
    others = foreign_keys(values)
    if others and legacy in _NOTED:
        return None
    if others:
        _NOTED.add(legacy)
        shown = ', '.join(repr(key) for key in others[:3]) + (', ...' if len(others) > 3 else '')
        logger.warning(
            '%s: ignoring %s, not our sidecar (keys %s are not ours); put our metadata in %s',
            file_path.name, legacy.name, shown, ours.name,
        )
        return None
    return legacy


def read_sidecar(file_path: Path) -> tuple[ExportMeta, dict[str, str]]:
    """Experiment metadata and reader options from the optional JSON sidecar next to a dataset."""
    path = find_sidecar(file_path)
    if path is None:
        return ExportMeta(), {}
    logger.info('%s: using sidecar %s', file_path.name, path.name)
    return read_sidecar_file(path)


def read_sidecar_file(path: Path) -> tuple[ExportMeta, dict[str, str]]:
    """A metadata JSON file: quantities (any spelling), name, comments, and reader options.

    Reader options (:data:`READER_OPTIONS`) steer interpretation; everything
    else must be a known quantity, ``name`` or ``comments``.
    """
    values: dict[str, Any] = read_json_object(path)
    options = {key: str(values.pop(key)) for key in (*READER_OPTIONS, *PAIRING_OPTIONS) if key in values}
    if 'object_from' in options:
        options['object_from'] = str(path.parent / options['object_from'])  # absolute stays absolute
    return ExportMeta.from_mapping(values, source=str(path)), options


def open_with_sidecar(
    file_path: Path, *, require_probe: bool, require_positions: bool = True
) -> tuple[PtychoPINNDataset, ExportMeta]:
    """The dataset interpreted with the sidecar's options, and the sidecar's metadata."""
    found = find_sidecar(file_path)
    meta, options = (ExportMeta(), {}) if found is None else read_sidecar_file(found)
    read = ReadOptions.parse(
        found or sidecar_path(file_path),
        domain=options.get('diffraction_domain'),
        positions=options.get('positions'),
        layout=options.get('layout'),
        position_convention=options.get('position_convention'),
        require_probe=require_probe,
        require_positions=require_positions,
        load_guesses=require_probe,
    )
    dataset = interpret(ArchiveStore(file_path), read)
    if require_probe and 'object_from' in options:
        assert found is not None
        try:
            pairing = PairingOptions.parse(
                options['object_from'],
                key=options.get('object_key'),
                placement=options.get('object_placement'),
                stitch_crop_px=options.get('stitch_crop_size'),
                tike_extra_px=options.get('tike_extra_padding'),
                origin=found,
            )
            attach_object(dataset, pairing)
        except BaseException:
            dataset.close()
            raise
    return dataset, meta


def load_intensities(file_path: Path, region: tuple[slice, slice] | None = None) -> np.ndarray:
    """Every pattern of a dataset as intensities, cropped before squaring (plugin reads)."""
    dataset, _ = open_with_sidecar(file_path, require_probe=False, require_positions=False)
    with dataset:
        info = dataset.require_stack()
        out: np.ndarray | None = None
        blocks = dataset.iter_pattern_blocks(blocks_for(info), domain=Domain.INTENSITY, region=region)
        for start, block in blocks:
            if out is None:
                out = np.empty((info.num_patterns, *block.shape[1:]), dtype=block.dtype)
            out[start : start + block.shape[0]] = block
        assert out is not None
        return out
