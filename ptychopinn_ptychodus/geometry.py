"""PtychoPINN object pixels <-> Ptychodus metres.

Ptychodus (>= 1.6) puts object pixel ``j`` at ``centre + pixel * (j - (W - 1) / 2)``.
PtychoPINN's ``xcoords``/``ycoords`` are object-pixel coordinates with index 0
at the array's first column/row. Mapping with exactly this convention (and
writing the object's pixel size and centre explicitly) is what makes Ptychodus
place every probe position over the same object pixels PtychoPINN used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class ObjectGrid:
    """Where an object array sits in the lab frame (units in the field names)."""

    width_px: int
    height_px: int
    pixel_width_m: float
    pixel_height_m: float
    center_x_m: float = 0.0
    center_y_m: float = 0.0

    def __post_init__(self) -> None:
        for name in ('pixel_width_m', 'pixel_height_m'):
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f'{name} must be a positive finite number, got {value!r}')
        for name in ('center_x_m', 'center_y_m'):
            if not np.isfinite(getattr(self, name)):
                raise ValueError(f'{name} must be finite')
        if self.width_px < 1 or self.height_px < 1:
            raise ValueError(f'object grid must be non-empty, got {self.height_px}x{self.width_px}')

    def pixels_to_metres(
        self, x_px: npt.ArrayLike, y_px: npt.ArrayLike
    ) -> tuple[FloatArray, FloatArray]:
        x = np.asarray(x_px, dtype=np.float64)
        y = np.asarray(y_px, dtype=np.float64)
        x_m = self.center_x_m + self.pixel_width_m * (x - (self.width_px - 1) / 2)
        y_m = self.center_y_m + self.pixel_height_m * (y - (self.height_px - 1) / 2)
        return x_m, y_m

    def metres_to_pixels(
        self, x_m: npt.ArrayLike, y_m: npt.ArrayLike
    ) -> tuple[FloatArray, FloatArray]:
        x = np.asarray(x_m, dtype=np.float64)
        y = np.asarray(y_m, dtype=np.float64)
        x_px = (x - self.center_x_m) / self.pixel_width_m + (self.width_px - 1) / 2
        y_px = (y - self.center_y_m) / self.pixel_height_m + (self.height_px - 1) / 2
        return x_px, y_px


def fraction_inside(x_px: npt.ArrayLike, y_px: npt.ArrayLike, shape: tuple[int, int]) -> float:
    """Share of positions whose nearest object pixel lies inside an array of ``shape``."""
    cols = np.rint(np.asarray(x_px))
    rows = np.rint(np.asarray(y_px))
    height, width = shape
    ok = (cols >= 0) & (cols < width) & (rows >= 0) & (rows < height)
    return float(ok.mean()) if ok.size else 0.0


def placeholder_object_shape(
    x_px: npt.ArrayLike, y_px: npt.ArrayLike, probe_shape: tuple[int, int]
) -> tuple[int, int]:
    """The smallest object (origin at pixel 0) that holds every probe window."""
    height = int(np.ceil(np.max(y_px) + probe_shape[0] / 2)) + 1
    width = int(np.ceil(np.max(x_px) + probe_shape[1] / 2)) + 1
    return max(height, probe_shape[0]), max(width, probe_shape[1])


def derive_detector_pixel_m(
    photon_energy_eV: float,  # noqa: N803
    detector_distance_m: float,
    pattern_px: int,
    object_pixel_m: float,
) -> float:
    """Far-field sampling: object pixel = lambda * z / (N * detector pixel)."""
    wavelength_m = 1.239841984e-6 / photon_energy_eV
    return wavelength_m * detector_distance_m / (pattern_px * object_pixel_m)
