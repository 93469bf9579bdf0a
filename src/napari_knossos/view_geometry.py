"""Where a napari viewer looks, in the spatial axes (0 z, 1 y, 2 x of its last three dims): the
displayed and hidden axes, the current slice and the 2-D field of view in voxels. Takes a viewer;
no Qt here."""

from __future__ import annotations

import numpy as np

__all__ = ["canvas_size", "current_slice", "displayed_axes", "field_of_view", "hidden_axes", "hidden_axis",
           "slice_world"]


def displayed_axes(viewer) -> list[int]:
    """The spatial axes napari displays, in display order (2 in a 2-D view, 3 in 3-D)."""
    offset = viewer.dims.ndim - 3
    return [a - offset for a in viewer.dims.displayed]


def hidden_axes(viewer) -> list[int]:
    """The spatial axes not displayed, ascending (one in a 2-D view, none in 3-D)."""
    displayed = displayed_axes(viewer)
    return [a for a in range(3) if a not in displayed]


def hidden_axis(viewer) -> int:
    """The spatial axis a 2-D view slices through."""
    hidden = hidden_axes(viewer)
    if not hidden:
        raise ValueError(f"a {viewer.dims.ndisplay}-D view slices through no spatial axis")
    return hidden[0]


def canvas_size(viewer) -> tuple[int, int]:
    """(width, height) of the canvas in pixels (public ``viewer.canvas.size`` in napari 0.9; 800×600
    when the viewer has no canvas)."""
    size = getattr(getattr(viewer, "canvas", None), "size", None)
    if size is not None:
        h, w = size  # napari: (height, width)
        return int(w), int(h)
    return 800, 600


def slice_world(viewer) -> float:
    """World position (nm) of the current slice along the hidden axis."""
    return float(viewer.dims.point[viewer.dims.ndim - 3 + hidden_axis(viewer)])


def current_slice(viewer, scale_zyx) -> float:
    """The current slice in voxels (world position / voxel size of the hidden axis), not rounded."""
    return slice_world(viewer) / np.asarray(scale_zyx, np.float64)[hidden_axis(viewer)]


def field_of_view(viewer, scale_zyx, pad: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) float voxels (z, y, x) of the 2-D view, from the camera's centre and zoom and the
    canvas size, widened by ``pad`` views on each side; the hidden axis holds the current slice."""
    scale = np.asarray(scale_zyx, np.float64)
    cam = viewer.scene.camera
    w, h = canvas_size(viewer)
    half = np.array([h, w], np.float64) / 2 / max(float(cam.zoom), 1e-12) * (1 + 2 * pad)  # rows, columns
    center = np.asarray(cam.center, np.float64)[-2:]
    hidden = hidden_axis(viewer)
    lo, hi = np.zeros(3), np.zeros(3)
    lo[hidden] = hi[hidden] = current_slice(viewer, scale)
    for i, axis in enumerate(displayed_axes(viewer)[-2:]):
        lo[axis] = (center[i] - half[i]) / scale[axis]
        hi[axis] = (center[i] + half[i]) / scale[axis]
    return lo, hi
