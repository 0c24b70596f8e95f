"""Writing PtychoPINN NPZ files from Ptychodus data: diffraction stacks and products.

Ptychodus hands over intensities; PtychoPINN's ``diffraction`` key holds
amplitudes, so the stack is square-rooted on the way out and the domain is
recorded (``diffraction_domain``) so that a re-read is exact.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..facts.errors import OutputError
from ..facts.stack import Domain, convert_domain
from ..npz.archive import StreamedArray, write_npz
from ..npz.dataset import DOMAIN_KEY
from ..product.layout import Product
from ..safeio.atomic import atomic_output
from .importer import npz_arrays_from_product

logger = logging.getLogger(__name__)


def write_diffraction_npz(
    path: Path,
    intensity_blocks: Iterable[np.ndarray],
    *,
    shape: tuple[int, int, int],
    source_dtype: np.dtype[Any],
    bad_pixels: np.ndarray,
    indexes: np.ndarray,
    quantities: Mapping[str, float | None],
) -> None:
    """A diffraction-only PtychoPINN NPZ: amplitudes, bad pixels, pattern indexes, known quantities.

    Parameters
    ----------
    path: destination (replaced atomically).
    intensity_blocks: consecutive (n, H, W) intensity blocks, in pattern order.
    shape: (M, H, W) of the whole stack.
    source_dtype: dtype of the intensities (float64 stays float64, anything else becomes float32).
    bad_pixels, indexes: Ptychodus's bad-pixel mask and pattern indexes.
    quantities: our quantity names -> values (``None`` values are skipped).

    Raises :class:`OutputError` (and writes nothing) for an empty stack or a mask
    that is not at the patterns' shape; ``write_npz`` refuses blocks that do not
    fill ``shape`` exactly.
    """
    if shape[0] == 0:
        raise OutputError(path, 'no diffraction patterns to write (none are loaded/assembled yet)')
    mask = np.asarray(bad_pixels, dtype=bool)
    if mask.shape != tuple(shape[1:]):
        raise OutputError(path, f'bad pixels {mask.shape} do not match the patterns {tuple(shape[1:])}')
    dtype = np.dtype(np.float64 if np.dtype(source_dtype) == np.float64 else np.float32)

    def blocks() -> Iterable[tuple[int, np.ndarray]]:
        start = 0
        for block in intensity_blocks:
            yield start, convert_domain(np.asarray(block), Domain.INTENSITY, Domain.AMPLITUDE, dtype)
            start += block.shape[0]

    contents: dict[str, np.ndarray | StreamedArray] = {
        'diffraction': StreamedArray(shape=shape, dtype=dtype, blocks=iter(blocks())),
        DOMAIN_KEY: np.asarray(Domain.AMPLITUDE.value),
        'bad_pixels': mask,
        'pattern_indexes': np.asarray(indexes, dtype=np.int64),
    }
    for key, value in quantities.items():
        if value is not None:
            contents[key] = np.asarray(value, dtype=np.float64)
    with atomic_output(path, overwrite=True) as tmp:
        write_npz(tmp, contents)


def write_product_npz(path: Path, product: Product) -> None:
    """A product as a PtychoPINN NPZ (probe 2D when single-mode, our quantity keys kept)."""
    arrays, notes = npz_arrays_from_product(product)
    for note in notes:
        logger.warning('%s: %s', path.name, note)
    with atomic_output(path, overwrite=True) as tmp:
        write_npz(tmp, arrays)
