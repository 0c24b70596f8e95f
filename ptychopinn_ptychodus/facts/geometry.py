"""PtychoPINN object pixels <-> Ptychodus object pixels <-> Ptychodus metres.

Two conventions meet here, and this module is the only place that knows them.

* Ptychodus (>= 1.6) puts object pixel ``j`` at ``centre + pixel * (j - (W - 1) / 2)``
  and centres an ``N x N`` probe on a position at probe index ``(N - 1) / 2``
  (so does pty-chi).
* PtychoPINN cuts the patch for a position by padding the object by ``N // 2``,
  translating by minus the offset and taking ``[:N, :N]``: object pixel
  ``xcoords`` is patch index ``N // 2``.

So the Ptychodus object pixel on which PtychoPINN's probe is centred is
``xcoords - (N // 2 - (N - 1) / 2)`` -- half a pixel less for PtychoPINN's
even patch sizes, nothing for odd ones (``N`` = probe width for x, height for
y). A pty-chi reconstruction confirmed it: with the identity mapping the
reconstructed object came out shifted by about -0.4 px; with the half pixel it
sits on PtychoPINN's grid within 0.04 px. Files whose ``xcoords`` already are
Ptychodus pixels (Ptychodus's own PtychoPINN export) use the "identity"
convention, which must be chosen explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


class PositionConvention(StrEnum):
    """What a file's ``xcoords``/``ycoords`` mean."""

    PTYCHOPINN = 'ptychopinn'  # the object pixel at patch index N // 2 (PtychoPINN's own rule)
    IDENTITY = 'identity'  # already Ptychodus's object pixel (Ptychodus's own PtychoPINN export)


#: What files say when they do not say anything: PtychoPINN's own meaning.
DEFAULT_CONVENTION = PositionConvention.PTYCHOPINN


def patch_offset_px(patch_px: int, convention: PositionConvention | str = DEFAULT_CONVENTION) -> float:
    """``xcoords`` minus the Ptychodus object pixel under the probe centre, for an ``N``-pixel patch."""
    if PositionConvention(convention) == PositionConvention.IDENTITY:
        return 0.0
    return patch_px // 2 - (patch_px - 1) / 2


def grid_sample_offset_px(object_px: int, patch_px: int) -> float:
    """``xcoords`` minus the Ptychodus pixel under the probe centre, for ``ptycho_torch`` datagen.

    ``ptycho_torch/datagen/datagen.py`` (``get_image_patches``) translates the
    whole object by ``(M - 1) / 2 - xcoords`` with ``grid_sample(align_corners=True)``
    (output pixel ``j`` samples input ``j - offset``) and crops ``[(M - N) // 2 :][:N]``:
    patch index ``k`` holds object pixel ``xcoords + (M - N) // 2 + k - (M - 1) / 2``.
    With the probe centred at ``k = (N - 1) / 2`` (Ptychodus) the offset is
    ``(M - 1) / 2 - (M - N) // 2 - (N - 1) / 2``: 0 (identity) when ``M - N`` is
    even, 1/2 when it is odd -- so it depends on the object size, not only on ``N``.
    """
    return (object_px - 1) / 2 - (object_px - patch_px) // 2 - (patch_px - 1) / 2


def grid_sample_convention(
    object_hw: tuple[int, int], patch_hw: tuple[int, int]
) -> PositionConvention | None:
    """The named convention that equals the datagen rule on both axes, or ``None``."""
    wanted = [grid_sample_offset_px(m, n) for m, n in zip(object_hw, patch_hw, strict=True)]
    for convention in (PositionConvention.IDENTITY, PositionConvention.PTYCHOPINN):
        if wanted == [patch_offset_px(n, convention) for n in patch_hw]:
            return convention
    return None


@dataclass(frozen=True)
class PositionMapping:
    """PtychoPINN pixel coordinates <-> Ptychodus object pixels for one probe size."""

    probe_width_px: int
    probe_height_px: int
    convention: PositionConvention = DEFAULT_CONVENTION

    @property
    def offset_x_px(self) -> float:
        return patch_offset_px(self.probe_width_px, self.convention)

    @property
    def offset_y_px(self) -> float:
        return patch_offset_px(self.probe_height_px, self.convention)

    def to_object_pixels(
        self, xcoords: npt.ArrayLike, ycoords: npt.ArrayLike
    ) -> tuple[FloatArray, FloatArray]:
        """File coordinates -> the Ptychodus object pixels the probe is centred on."""
        x = np.asarray(xcoords, dtype=np.float64) - self.offset_x_px
        y = np.asarray(ycoords, dtype=np.float64) - self.offset_y_px
        return x, y

    def to_file_coordinates(self, x_px: npt.ArrayLike, y_px: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
        """The inverse of :meth:`to_object_pixels`."""
        x = np.asarray(x_px, dtype=np.float64) + self.offset_x_px
        y = np.asarray(y_px, dtype=np.float64) + self.offset_y_px
        return x, y

    def describe(self) -> str:
        return (
            f'{self.convention.value} (Ptychodus pixel = xcoords - {self.offset_x_px:g}, '
            f'ycoords - {self.offset_y_px:g})'
        )


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

    def pixels_to_metres(self, x_px: npt.ArrayLike, y_px: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
        x = np.asarray(x_px, dtype=np.float64)
        y = np.asarray(y_px, dtype=np.float64)
        x_m = self.center_x_m + self.pixel_width_m * (x - (self.width_px - 1) / 2)
        y_m = self.center_y_m + self.pixel_height_m * (y - (self.height_px - 1) / 2)
        return x_m, y_m

    def metres_to_pixels(self, x_m: npt.ArrayLike, y_m: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
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


class ObjectPlacement(StrEnum):
    """Which grid a reconstruction written without positions sits on (see :func:`placement_origin_px`)."""

    DATASET = 'dataset'  # already the dataset's own object grid (objectGuess pixels)
    STITCHED = 'stitched'  # PtychoPINN's reassemble_position canvas (compare_models, grid_lines recon.npz)
    TIKE = 'tike'  # scripts/reconstruction/run_tike_reconstruction.py (tike's get_padded_object)
    PTYCHI = 'ptychi'  # scripts/reconstruction/ptychi_reconstruct_tike.py (centred positions)


#: ``compare_models.py --stitch-crop-size`` default: the central M x M of each patch is stitched.
DEFAULT_STITCH_CROP_PX = 20
#: ``run_tike_reconstruction.py --extra-padding`` default.
DEFAULT_TIKE_EXTRA_PX = 64


@dataclass(frozen=True)
class Placement:
    """Where an output's pixel (0, 0) lies in the dataset's object pixels, and the shape it implies."""

    origin_x_px: float
    origin_y_px: float
    expected_shape: tuple[int, int] | None  # None: the writer's canvas size cannot be told from the scan
    rule: str


def _torch_round(value: float) -> float:
    """``torch.round``: halves to even (as :func:`numpy.rint`)."""
    return float(np.rint(value))


def placement_origin_px(
    placement: ObjectPlacement | str,
    xcoords: npt.ArrayLike,
    ycoords: npt.ArrayLike,
    probe_hw: tuple[int, int],
    object_hw: tuple[int, int],
    *,
    stitch_crop_px: int = DEFAULT_STITCH_CROP_PX,
    tike_extra_px: int = DEFAULT_TIKE_EXTRA_PX,
) -> Placement:
    """The dataset object pixel of an output's pixel (0, 0), per writer.

    Every rule is a pure translation (no resampling): output pixel ``(r, c)`` is
    dataset object pixel ``(origin_y + r, origin_x + c)``, where the dataset's
    object pixels are ``objectGuess`` indexes (the frame ``xcoords`` count in).
    Shown for x (y alike, with the probe height); ``N`` is the probe width and
    PtychoPINN's patch pixel ``p`` of a scan point is object pixel ``x - N//2 + p``
    (``raw_data.get_image_patches``; the default XLA ``translate`` moves content by
    ``+t``: ``projective_warp_xla.translate_xla``).

    Parameters
    ----------
    placement: the writer's rule (:class:`ObjectPlacement`).
    xcoords, ycoords: the scan positions the writer used (``xcoords``/``ycoords``, file units).
    probe_hw: probe (patch) height and width ``N``.
    object_hw: the output's shape (pty-chi's origin depends on it).
    stitch_crop_px: ``M`` of ``reassemble_position`` (``--stitch-crop-size``).
    tike_extra_px: ``--extra-padding`` of the tike script.

    Notes
    -----
    * ``stitched`` -- ``ptycho/tf_helper.py`` ``shift_and_sum``: each patch's central
      ``[N//2 - M//2 : N//2 + M//2]`` crop is zero-padded by ``pad`` and translated by
      ``x - com`` (``com``: the mean offset, float32); ``pad = ceil(max |x - com|)`` over
      both axes, rounded up to even. Canvas pixel ``q`` then holds object pixel
      ``x + (q - (x - com)) - pad - M//2``, the same for every patch:
      ``origin = com - pad - M//2``, canvas ``2 (M//2) + 2 pad`` square.
    * ``tike`` -- ``get_padded_object(scan, probe, extra)``: ``scan + 1 - floor(min scan) + extra``
      is the probe's minimum corner, so probe pixel ``p`` is tike pixel
      ``x + 1 - floor(min x) + extra + p``: ``origin = floor(min x) - 1 - extra - N//2``;
      shape ``floor(max) - floor(min) + N + 2 + 2 extra``.
    * ``ptychi`` -- the script centres positions (``x - mean x``); pty-chi puts the probe
      centre ``(N - 1)/2`` at ``pos + round(W/2) + 0.5`` (``data_structures/object.py``):
      ``origin = mean x - round(W/2) - 0.5 + (N - 1)/2 - N//2``.
    * ``dataset`` -- origin 0.
    """
    rule = ObjectPlacement(placement)
    x = np.asarray(xcoords, dtype=np.float64)
    y = np.asarray(ycoords, dtype=np.float64)
    n_y, n_x = probe_hw
    if rule == ObjectPlacement.DATASET:
        return Placement(0.0, 0.0, None, 'the dataset object grid (objectGuess pixels)')
    if rule == ObjectPlacement.STITCHED:
        crop = stitch_crop_px // 2
        com = np.stack([x, y]).astype(np.float32).mean(axis=1, dtype=np.float32)
        adjusted = np.stack([x, y]).astype(np.float32) - com[:, None]
        pad = int(np.ceil(np.max(np.abs(adjusted)))) if adjusted.size else 0
        pad += pad % 2
        size = 2 * crop + 2 * pad
        return Placement(
            float(com[0]) - pad - crop,
            float(com[1]) - pad - crop,
            (size, size),
            f'PtychoPINN reassemble_position canvas (M={stitch_crop_px}, pad={pad}, centre of mass '
            f'x={float(com[0]):.3f}, y={float(com[1]):.3f})',
        )
    if rule == ObjectPlacement.TIKE:
        low_x, low_y = np.floor(x.min()), np.floor(y.min())
        shape = (
            int(np.floor(y.max()) - low_y) + n_x + 2 + 2 * tike_extra_px,  # tike uses probe.shape[-1] on both
            int(np.floor(x.max()) - low_x) + n_x + 2 + 2 * tike_extra_px,
        )
        return Placement(
            float(low_x) - 1 - tike_extra_px - n_x // 2,
            float(low_y) - 1 - tike_extra_px - n_y // 2,
            shape,
            f'tike get_padded_object canvas (extra padding {tike_extra_px})',
        )
    height, width = object_hw
    origin_x = float(x.mean()) - (_torch_round(width / 2) + 0.5) + (n_x - 1) / 2 - n_x // 2
    origin_y = float(y.mean()) - (_torch_round(height / 2) + 0.5) + (n_y - 1) / 2 - n_y // 2
    return Placement(origin_x, origin_y, None, 'pty-chi object (centred positions, origin round(W/2)+0.5)')


def placed_grid(
    frame: ObjectGrid, shape_hw: tuple[int, int], origin_x_px: float, origin_y_px: float
) -> ObjectGrid:
    """The grid of an array whose pixel (0, 0) is pixel ``(origin_x, origin_y)`` of ``frame``."""
    height, width = shape_hw
    center_x, center_y = frame.pixels_to_metres(origin_x_px + (width - 1) / 2, origin_y_px + (height - 1) / 2)
    return ObjectGrid(
        width_px=width,
        height_px=height,
        pixel_width_m=frame.pixel_width_m,
        pixel_height_m=frame.pixel_height_m,
        center_x_m=float(center_x),
        center_y_m=float(center_y),
    )


@dataclass(frozen=True)
class PlacedObject:
    """An object taken from another file, with the dataset object pixel of its pixel (0, 0)."""

    array: npt.NDArray[np.complexfloating[Any, Any]]
    origin_x_px: float
    origin_y_px: float
    source: str
    key: str
    rule: str

    def describe(self) -> str:
        return (
            f'object from {self.source} [{self.key}], {self.array.shape[-2]}x{self.array.shape[-1]}, '
            f'placed as {self.rule}: its pixel (0, 0) is dataset object pixel '
            f'(x={self.origin_x_px:.4f}, y={self.origin_y_px:.4f})'
        )
