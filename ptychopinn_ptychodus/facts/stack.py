"""What a diffraction stack is: its layout, its domain, and the conversions between domains."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np


class Domain(StrEnum):
    """What the numbers of a diffraction stack are."""

    AMPLITUDE = 'amplitude'
    INTENSITY = 'intensity'


class Layout(StrEnum):
    """How the pattern axis is stored."""

    NHW = 'NHW'
    HWN = 'HWN'
    NHW1 = 'NHW1'
    HNW = 'HNW'  # (H, M, W): accepted by PtychoPINN's exporter, listed in its data contract


#: Rank of the stored array for each layout.
LAYOUT_RANK = {Layout.NHW: 3, Layout.HWN: 3, Layout.NHW1: 4, Layout.HNW: 3}


def pattern_axes(layout: Layout, shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(patterns, height, width) of a stack of ``shape`` stored in ``layout``."""
    if layout == Layout.HWN:
        return shape[2], shape[0], shape[1]
    if layout == Layout.HNW:
        return shape[1], shape[0], shape[2]
    return shape[0], shape[1], shape[2]


@dataclass(frozen=True)
class DiffractionInfo:
    """A stack as found in the source, and what was decided about it."""

    key: str
    layout: Layout
    source_shape: tuple[int, ...]
    dtype: np.dtype[Any]
    domain: Domain
    domain_reason: str
    num_patterns: int
    height: int
    width: int

    @property
    def nhw_shape(self) -> tuple[int, int, int]:
        return self.num_patterns, self.height, self.width

    def output_dtype(self, domain: Domain) -> np.dtype[Any]:
        """Dtype of patterns delivered in ``domain`` (integers stay exact)."""
        if domain == self.domain and self.dtype.kind in 'iuf':
            return self.dtype
        return np.dtype(np.float64 if self.dtype == np.float64 else np.float32)

    def describe(self) -> str:
        return (
            f'{self.key} {self.source_shape} {self.dtype} as {self.layout.value}, '
            f'{self.domain.value} ({self.domain_reason})'
        )


def probe_size_mismatch(
    probe_shape: tuple[int, ...], pattern_hw: tuple[int, int], probe_name: str = 'the probe'
) -> str | None:
    """``'<probe_name> is AxB but the patterns are CxD'``, or ``None`` when the sizes agree.

    Ptychodus and PtychoPINN both multiply each pattern-sized patch by the probe
    (its last two axes), so every reader and writer refuses a mismatch with this.
    """
    height, width = (int(n) for n in probe_shape[-2:])
    if (height, width) == tuple(pattern_hw):
        return None
    return f'{probe_name} is {height}x{width} but the patterns are {pattern_hw[0]}x{pattern_hw[1]}'


def whole_number_verdict(sample: np.ndarray) -> bool | None:
    """Do these values look like photon counts stored as floats?

    ``True``: every value is a non-negative whole number and some exceed 1 (an
    amplitude stack, normalised or not, is never all whole numbers).
    ``False``: some value is fractional or negative. ``None``: whole numbers
    no larger than 1 (all zeros and ones) -- counts and amplitudes both fit.
    """
    if sample.size == 0 or sample.dtype.kind not in 'f':
        return None
    finite = sample[np.isfinite(sample)]
    if finite.size != sample.size or (finite < 0).any() or not np.array_equal(finite, np.rint(finite)):
        return False
    return True if float(finite.max()) > 1.0 else None


def convert_domain(raw: np.ndarray, source: Domain, domain: Domain, dtype: np.dtype[Any]) -> np.ndarray:
    """Square amplitudes or root intensities, computed in ``dtype``."""
    if domain == source:
        return raw.astype(dtype, copy=False)
    values = raw.astype(dtype, copy=True)
    if domain == Domain.INTENSITY:
        np.square(values, out=values)
    else:
        np.maximum(values, 0, out=values)
        np.sqrt(values, out=values)
    return values


def to_source_values(
    stored: np.ndarray, stored_domain: Domain, source_domain: Domain, dtype: np.dtype[Any]
) -> np.ndarray:
    """Bundled values back to what the source held, exactly.

    Our bundles store the stack as given, so normally this is only a dtype
    check. Bundles written by version 0.1.0 stored counts as amplitudes: those
    are squared back and integer counts are rounded to whole numbers.
    """
    if stored_domain == source_domain:
        return stored.astype(dtype, copy=False)
    if source_domain == Domain.INTENSITY:
        values = np.square(stored.astype(np.float64))
        if dtype.kind in 'iu':
            np.rint(values, out=values)
        return values.astype(dtype)
    return convert_domain(stored, stored_domain, source_domain, dtype)


def bundle_dtype(source: np.dtype[Any], domain: Domain) -> np.dtype[Any]:
    """The dtype ``/raw_data/diffraction`` keeps: the source's (the stack is stored as given).

    Counts stay integers and intensities stay as they were: lossless and as
    compact as the source. Only an integer-typed amplitude (not found in the
    wild) becomes float32.
    """
    if source.kind == 'f' or (source.kind in 'iu' and domain == Domain.INTENSITY):
        return source
    return np.dtype(np.float32)


def blocks_for(info: DiffractionInfo, target_bytes: int = 16 * 2**20) -> int:
    """How many patterns make a block of about ``target_bytes``.

    Counted in the source dtype, like the chunk rows of the writer (same 16 MB
    budget), so a block is a whole number of chunk rows and the writer never has
    to join blocks; a conversion to a wider dtype at most doubles a block.
    """
    per_pattern = info.height * info.width * info.dtype.itemsize
    return max(1, min(info.num_patterns, math.floor(target_bytes / per_pattern)))
