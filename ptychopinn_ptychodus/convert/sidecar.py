"""Opening a dataset as an interactive reader does: with the JSON sidecar next to it.

Ptychodus's file dialog passes only a path, so experiment metadata (and
reader options such as the stack's domain) come from ``run.json`` next to
``run.npz``; without one, documented defaults apply and are warned about.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..facts.quantities import ExportMeta, read_json_object
from ..facts.stack import Domain, blocks_for
from ..npz.dataset import PtychoPINNDataset, ReadOptions, interpret
from ..npz.store import ArchiveStore

logger = logging.getLogger(__name__)

SIDECAR_SUFFIX = '.json'
#: Sidecar keys that steer interpretation rather than describe the experiment.
READER_OPTIONS = ('diffraction_domain', 'positions', 'layout', 'position_convention')


def sidecar_path(file_path: Path) -> Path:
    """``run.npz`` -> ``run.json`` next to it."""
    return file_path.with_suffix(SIDECAR_SUFFIX)


def read_sidecar(file_path: Path) -> tuple[ExportMeta, dict[str, str]]:
    """Experiment metadata and reader options from the optional JSON sidecar next to a dataset."""
    path = sidecar_path(file_path)
    if not path.is_file():
        return ExportMeta(), {}
    logger.info('%s: using sidecar %s', file_path.name, path.name)
    return read_sidecar_file(path)


def read_sidecar_file(path: Path) -> tuple[ExportMeta, dict[str, str]]:
    """A metadata JSON file: quantities (any spelling), name, comments, and reader options.

    Reader options (:data:`READER_OPTIONS`) steer interpretation; everything
    else must be a known quantity, ``name`` or ``comments``.
    """
    values: dict[str, Any] = read_json_object(path)
    options = {key: str(values.pop(key)) for key in READER_OPTIONS if key in values}
    return ExportMeta.from_mapping(values, source=str(path)), options


def open_with_sidecar(
    file_path: Path, *, require_probe: bool, require_positions: bool = True
) -> tuple[PtychoPINNDataset, ExportMeta]:
    """The dataset interpreted with the sidecar's options, and the sidecar's metadata."""
    meta, options = read_sidecar(file_path)
    read = ReadOptions.parse(
        sidecar_path(file_path),
        domain=options.get('diffraction_domain'),
        positions=options.get('positions'),
        layout=options.get('layout'),
        position_convention=options.get('position_convention'),
        require_probe=require_probe,
        require_positions=require_positions,
        load_guesses=require_probe,
    )
    return interpret(ArchiveStore(file_path), read), meta


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
