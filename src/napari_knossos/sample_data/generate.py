"""Generate the bundled synthetic EM-neuropil sample (KNOSSOS cubes + a webKnossos zarr3 copy).

    python -m napari_knossos.sample_data.generate OUT
    python src/napari_knossos/sample_data/generate.py OUT

writes ``OUT/knossos/`` (PNG image cubes, ``.seg.sz.zip`` segmentation cubes, ``.k.toml`` and
legacy confs, mags 1, 2, 4) and ``OUT/webknossos/`` (the same voxels as sharded Zarr v3).

The volume imitates serial-block-face EM of neuropil: densely packed neurites running mostly
along z with gentle curvature (an additively weighted Voronoi partition of moving, slightly
deformed circles), dark membranes on the borders between them, a few oblique neurites with
elongated profiles, mitochondria with cristae, axonal boutons full of vesicles, microtubules
in dendrites, textured cytoplasm and quantized noise. The segmentation holds one id per
neurite and 0 on the membranes.

Deterministic across machines: one ``numpy.random.default_rng(SEED)`` (``random``, ``integers``
and ``choice`` draws), and the volume is computed with ``+ - * /``, ``sqrt``, ``floor``, integer
arithmetic and comparisons only (no transcendental functions, FFTs or float reductions), which
IEEE 754 rounds identically everywhere. Only the compressed bytes may differ between zlib/zstd
versions; the decoded voxels do not.

To keep the bundled copy small (both copies together under 10 MB) the image is built from flat
gray shapes, blurred with an integer kernel, and its grain and cytoplasm granules are renewed
every ``GRAIN_PERIOD_Z`` slices: unchanged structure then repeats exactly from slice to slice,
which PNG/deflate and zstd exploit.
"""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from napari_knossos.formats.knossos_writer import KnossosLayerSpec, pyramid, write_knossos_dataset
from napari_knossos.formats.wk_writer import WkLayerSpec, write_webknossos_dataset

SEED = 20250611
SHAPE_XYZ = (256, 256, 128)
VOXEL_SIZE_NM = (10.0, 10.0, 25.0)
EXPERIMENT = "synthetic_neuropil"
CUBE_EDGE = 128
N_MAGS = 3  # mags 1, 2, 4

# geometry (pixels of mag 1 unless noted)
SIZE = 1.4  # scales all neurite radii
AXON_RADIUS_MIN, AXON_RADIUS_MAX, AXON_CANDIDATES = 4.0, 15.0, 1400
FIELD_MARGIN = 48  # neurites are seeded this far outside the field of view too
WINDOW_MARGIN = 30.0  # how far beyond its radius a neurite competes for pixels
MEMBRANE_HALF_WIDTH = 1.15  # pixels closer than this to a cell border are membrane (id 0)
GLIA_GAP = 2.5  # pixels farther than this outside every neurite belong to glia
N_GLIA = 8

# gray values (integers: the image is built from flat shapes, blurred, plus grain)
MEMBRANE_VALUE = 18
MITO_VALUE = 110
MITO_CRISTA_VALUE = 80
MITO_ENVELOPE_VALUE = 55
VESICLE_VALUE = 95
MICROTUBULE_VALUE = 110
GRANULE_THRESHOLD = 0.45  # granular cytoplasm: darker specks where the granule field is high
GRANULE_DEPTH = 14
# grain: GRAIN_LEVELS values, GRAIN_STEP apart, renewed every GRAIN_PERIOD_Z slices (so that
# unchanged structure repeats exactly from slice to slice and the cubes compress well)
GRAIN_LEVELS = 2
GRAIN_STEP = 5
GRAIN_PERIOD_Z = 8


@dataclass
class Neurite:
    seg_id: int
    kind: str  # "axon", "dendrite", "oblique"
    cx: np.ndarray  # center x per slice
    cy: np.ndarray  # center y per slice
    r: np.ndarray  # radius per slice (in the plane perpendicular to the neurite)
    ux: float  # unit tilt direction in xy
    uy: float
    cos_tilt: float  # cos of the angle to z: cross-sections are stretched by 1/cos_tilt along u
    harmonics: tuple[float, float, float, float]  # cos2, sin2, cos3, sin3 shape coefficients
    wiggle: tuple[float, float]  # weights of the two boundary-noise fields
    gray: int  # cytoplasm gray value
    mitos: list = field(default_factory=list)
    vesicles: list = field(default_factory=list)
    microtubules: list = field(default_factory=list)


# ----------------------------------------------------------------------------- helpers


def _uniform(rng, lo, hi, size=None):
    return lo + (hi - lo) * rng.random(size)


def _bspline_upsample(coarse: np.ndarray, n_out: int, cell: float, axis: int) -> np.ndarray:
    """Cubic B-spline interpolation of ``coarse`` along ``axis`` at ``n_out`` points ``cell`` apart."""
    t = (np.arange(n_out, dtype=np.float64) + 0.5) / cell
    k = np.floor(t).astype(np.int64)
    f = t - k
    g = 1.0 - f
    weights = (g * g * g / 6.0, (3.0 * f * f * f - 6.0 * f * f + 4.0) / 6.0,
               (-3.0 * f * f * f + 3.0 * f * f + 3.0 * f + 1.0) / 6.0, f * f * f / 6.0)
    shape = [1] * coarse.ndim
    shape[axis] = n_out
    out = None
    for j, w in enumerate(weights):
        term = np.take(coarse, k + j, axis=axis) * w.astype(coarse.dtype).reshape(shape)
        out = term if out is None else out + term
    return out


def smooth_noise(rng, shape_zyx, cell_zyx) -> np.ndarray:
    """Smooth float32 noise of roughly unit amplitude with feature size ``cell_zyx`` voxels."""
    coarse_shape = [int(np.ceil(n / c)) + 4 for n, c in zip(shape_zyx, cell_zyx)]
    field_ = (2.0 * rng.random(coarse_shape) - 1.0).astype(np.float32)
    for axis, (n, c) in enumerate(zip(shape_zyx, cell_zyx)):
        field_ = _bspline_upsample(field_, n, c, axis)
    return field_ * np.float32(1.8)  # B-spline smoothing shrinks the spread; bring it back near [-1, 1]


def _catmull_rom(points: np.ndarray, spacing: float, n: int, start: float) -> np.ndarray:
    """Catmull-Rom curve through ``points`` (control point i at ``start + i*spacing``), sampled at 0..n-1."""
    t = (np.arange(n, dtype=np.float64) - start) / spacing
    i = np.floor(t).astype(np.int64)
    f = t - i
    p0, p1, p2, p3 = points[i - 1], points[i], points[i + 1], points[i + 2]
    return 0.5 * (2.0 * p1 + (p2 - p0) * f + (2.0 * p0 - 5.0 * p1 + 4.0 * p2 - p3) * f * f
                  + (3.0 * p1 - p0 - 3.0 * p2 + p3) * f * f * f)


def _smooth_track(rng, n_slices: int, amplitude: float, spacing: float = 32.0) -> np.ndarray:
    """A gentle random curve over the slices (Catmull-Rom through random control points)."""
    n_points = int(np.ceil(n_slices / spacing)) + 4
    points = _uniform(rng, -amplitude, amplitude, n_points)
    return _catmull_rom(points, spacing, n_slices, start=-spacing)


def _bump(t: np.ndarray) -> np.ndarray:
    """Smooth bump, 1 at 0 and 0 for |t| >= 1."""
    s = np.clip(1.0 - t * t, 0.0, None)
    return s * s


# ----------------------------------------------------------------------------- neurites


def _place_neurites(rng, nx: int, ny: int, nz: int) -> list[Neurite]:
    """Dart-throw neurite cross-sections in the middle slice, then give each a 3-D path."""
    lo_x, hi_x = -FIELD_MARGIN, nx + FIELD_MARGIN
    lo_y, hi_y = -FIELD_MARGIN, ny + FIELD_MARGIN
    cap = 6 + AXON_CANDIDATES
    pos_x, pos_y, rad = np.zeros(cap), np.zeros(cap), np.zeros(cap)
    kinds: list[str] = []

    def fits(x, y, r, slack):
        n = len(kinds)
        dx, dy, reach = pos_x[:n] - x, pos_y[:n] - y, slack * (rad[:n] + r)
        return not bool(np.any(dx * dx + dy * dy < reach * reach))

    def place(x, y, r, kind):
        n = len(kinds)
        pos_x[n], pos_y[n], rad[n] = x, y, r
        kinds.append(kind)

    for _ in range(400):  # dendrites: few, thick
        if len(kinds) >= 5:
            break
        x, y, r = _uniform(rng, lo_x, hi_x), _uniform(rng, lo_y, hi_y), SIZE * _uniform(rng, 20.0, 32.0)
        if fits(x, y, r, 1.1):
            place(x, y, r, "dendrite")
    # axons from thick to thin, each tried many times, so thin ones fill the gaps (dense packing)
    spread = rng.random(AXON_CANDIDATES)
    radii = SIZE * np.sort(AXON_RADIUS_MIN + (AXON_RADIUS_MAX - AXON_RADIUS_MIN) * spread * spread * spread)[::-1]
    for r in radii:
        for _ in range(60):
            x, y = _uniform(rng, lo_x, hi_x), _uniform(rng, lo_y, hi_y)
            if fits(x, y, r, 1.0):
                place(x, y, float(r), "axon")
                break
    # inflate each axon (in placement order) until it touches its nearest neighbour
    n = len(kinds)
    for k in range(n):
        if kinds[k] != "axon":
            continue
        dx, dy = pos_x[:n] - pos_x[k], pos_y[:n] - pos_y[k]
        room = np.sqrt(dx * dx + dy * dy) - rad[:n]
        room[k] = np.inf
        rad[k] = max(rad[k], min(float(room.min()), 1.2 * rad[k]))
    placed = [(float(pos_x[k]), float(pos_y[k]), float(rad[k]), kinds[k]) for k in range(n)]

    # the bundle drifts and bends as a whole; each neurite deviates a little from it
    drift_x, drift_y = 0.12, -0.05
    bend_x, bend_y = _smooth_track(rng, nz, 9.0, spacing=48.0), _smooth_track(rng, nz, 9.0, spacing=48.0)
    ids = rng.choice(np.arange(1, 5000), size=len(placed) + 12, replace=False)
    z = np.arange(nz, dtype=np.float64)
    zc = (nz - 1) / 2.0
    neurites = []
    for k, (x, y, r0, kind) in enumerate(placed):
        vx = drift_x + _uniform(rng, -0.02, 0.02)
        vy = drift_y + _uniform(rng, -0.02, 0.02)
        cx = x + vx * (z - zc) + bend_x + _smooth_track(rng, nz, 1.5)
        cy = y + vy * (z - zc) + bend_y + _smooth_track(rng, nz, 1.5)
        radius = r0 * (1.0 + 0.12 * _smooth_track(rng, nz, 1.0, spacing=40.0))
        if kind == "dendrite":
            gray = _uniform(rng, 135.0, 160.0)
        else:
            gray = _uniform(rng, 160.0, 205.0)
        neurite = _make_neurite(rng, int(ids[k]), kind, cx, cy, radius, vx, vy, gray)
        neurites.append(neurite)
    # oblique neurites crossing the bundle: elongated profiles that travel through the field
    for k in range(12):
        # random direction via the rational parametrisation of the unit circle (no sin/cos)
        s = _uniform(rng, -1.0, 1.0)
        ux, uy = (1.0 - s * s) / (1.0 + s * s), 2.0 * s / (1.0 + s * s)
        if rng.random() < 0.5:
            ux = -ux
        tan_tilt = _uniform(rng, 0.9, 2.2)  # 42°..66° from z
        speed = tan_tilt * VOXEL_SIZE_NM[2] / VOXEL_SIZE_NM[0]  # px per slice in xy
        z_cross = _uniform(rng, 10.0, nz - 10.0)
        x0, y0 = _uniform(rng, 40.0, nx - 40.0), _uniform(rng, 40.0, ny - 40.0)
        cx = x0 + ux * speed * (z - z_cross) + _smooth_track(rng, nz, 2.0)
        cy = y0 + uy * speed * (z - z_cross) + _smooth_track(rng, nz, 2.0)
        radius = SIZE * _uniform(rng, 5.0, 9.0) * (1.0 + 0.1 * _smooth_track(rng, nz, 1.0, spacing=40.0))
        gray = _uniform(rng, 172.0, 200.0)
        neurites.append(_make_neurite(rng, int(ids[len(placed) + k]), "oblique", cx, cy, radius,
                                      ux * speed, uy * speed, gray))
    return neurites


def _make_neurite(rng, seg_id, kind, cx, cy, radius, vx, vy, gray) -> Neurite:
    nz = len(cx)
    # physical tilt: xy speed (px/slice) against the slice thickness
    sx, sy = vx * VOXEL_SIZE_NM[0], vy * VOXEL_SIZE_NM[1]
    horizontal = np.sqrt(sx * sx + sy * sy)
    length = np.sqrt(horizontal * horizontal + VOXEL_SIZE_NM[2] ** 2)
    ux, uy = (sx / horizontal, sy / horizontal) if horizontal > 0 else (1.0, 0.0)
    harmonic_amp = 0.10 if kind == "dendrite" else 0.14
    neurite = Neurite(
        seg_id=seg_id, kind=kind, cx=cx, cy=cy, r=radius.copy(), ux=float(ux), uy=float(uy),
        cos_tilt=float(VOXEL_SIZE_NM[2] / length),
        harmonics=tuple(float(v) for v in _uniform(rng, -harmonic_amp, harmonic_amp, 4)),
        wiggle=tuple(float(v) for v in _uniform(rng, -2.2, 2.2, 2)),
        gray=int(gray),
    )
    z = np.arange(nz, dtype=np.float64)
    typical_radius = float(radius[nz // 2])
    if kind == "axon" and rng.random() < 0.25:  # a bouton: swelling full of vesicles
        zb = _uniform(rng, 8.0, nz - 8.0)
        half = _uniform(rng, 7.0, 14.0)
        target = _uniform(rng, 15.0, 24.0)
        r_mid = float(radius[int(zb)])
        factor = max(target / r_mid - 1.0, 0.3)
        neurite.r = radius * (1.0 + factor * _bump((z - zb) / half))
        vesicles = np.zeros((0, 3))
        for _ in range(int(_uniform(rng, 250, 400))):
            vz = _uniform(rng, zb - 0.6 * half, zb + 0.6 * half)
            rr = float(neurite.r[int(np.clip(np.floor(vz), 0, nz - 1))])
            ox, oy = _uniform(rng, -1.0, 1.0), _uniform(rng, -1.0, 1.0)
            if ox * ox + oy * oy > 1.0:
                continue
            ox, oy = 0.75 * rr * ox, 0.75 * rr * oy
            d = vesicles - np.array([ox, oy, vz])
            if np.any((d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1] < 16.0) & (np.abs(d[:, 2]) < 1.0)):
                continue  # vesicles do not overlap
            vesicles = np.vstack([vesicles, [ox, oy, vz]])
            neurite.vesicles.append((vz, ox, oy, _uniform(rng, 17.0, 24.0)))
    if kind == "dendrite":
        for _ in range(int(_uniform(rng, 2, 5))):
            neurite.mitos.append(_make_mito(rng, nz, typical_radius, SIZE * _uniform(rng, 6.0, 10.0)))
        for _ in range(int(_uniform(rng, 14, 28))):
            while True:
                ox, oy = _uniform(rng, -1.0, 1.0), _uniform(rng, -1.0, 1.0)
                if ox * ox + oy * oy <= 1.0:
                    break
            neurite.microtubules.append((0.8 * ox, 0.8 * oy))
    elif kind == "axon" and typical_radius >= 10.0 * SIZE and rng.random() < 0.35:
        neurite.mitos.append(_make_mito(rng, nz, typical_radius, 0.5 * typical_radius))
    return neurite


def _make_mito(rng, nz, r_neurite, r_mito):
    """(z center, half length in slices, offset fraction x/y, radius px, aspect, stripe direction)."""
    zc = _uniform(rng, 0.0, nz)
    half = _uniform(rng, 10.0, 32.0)
    room = max(r_neurite - r_mito - 3.0, 0.0) / r_neurite
    while True:
        ox, oy = _uniform(rng, -1.0, 1.0), _uniform(rng, -1.0, 1.0)
        if ox * ox + oy * oy <= 1.0:
            break
    s = _uniform(rng, -1.0, 1.0)
    stripe = ((1.0 - s * s) / (1.0 + s * s), 2.0 * s / (1.0 + s * s))
    return (zc, half, room * ox, room * oy, r_mito, _uniform(rng, 1.0, 1.6), stripe, _uniform(rng, 4.0, 5.5))


@dataclass
class Glia:
    seg_id: int
    cx: np.ndarray  # center x per slice
    cy: np.ndarray
    gray: int


def _place_glia(rng, nx: int, ny: int, nz: int) -> list[Glia]:
    """A few glial cells whose processes fill the space the neurites leave free."""
    ids = rng.choice(np.arange(5000, 6000), size=N_GLIA, replace=False)
    z = np.arange(nz, dtype=np.float64)
    glia = []
    for k in range(N_GLIA):
        x, y = _uniform(rng, 0.0, nx), _uniform(rng, 0.0, ny)
        vx, vy = _uniform(rng, -0.2, 0.2), _uniform(rng, -0.2, 0.2)
        cx = x + vx * (z - nz / 2) + _smooth_track(rng, nz, 8.0)
        cy = y + vy * (z - nz / 2) + _smooth_track(rng, nz, 8.0)
        glia.append(Glia(int(ids[k]), cx, cy, int(_uniform(rng, 184.0, 200.0))))
    return glia


# ----------------------------------------------------------------------------- rendering


def make_volumes(seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """The sample's image (uint8) and segmentation (uint64), both ``(z, y, x)``."""
    rng = np.random.default_rng(seed)
    nx, ny, nz = SHAPE_XYZ
    neurites = _place_neurites(rng, nx, ny, nz)
    glia = _place_glia(rng, nx, ny, nz)
    wiggle_a = smooth_noise(rng, (nz, ny, nx), (12.0, 14.0, 14.0))
    wiggle_b = smooth_noise(rng, (nz, ny, nx), (10.0, 9.0, 9.0))
    n_blocks = -(-nz // GRAIN_PERIOD_Z)
    granule_field = smooth_noise(rng, (n_blocks, ny, nx), (0.5, 2.2, 2.2))
    grain_field = rng.integers(0, GRAIN_LEVELS, (n_blocks, ny, nx)) - (GRAIN_LEVELS - 1) // 2

    image = np.empty((nz, ny, nx), np.uint8)
    segmentation = np.zeros((nz, ny, nx), np.uint64)
    # owner index 0 = membrane, 1..N neurites, N+1.. glia
    id_table = np.array([0] + [n.seg_id for n in neurites] + [g.seg_id for g in glia], np.uint64)
    gray_table = np.array([MEMBRANE_VALUE] + [n.gray for n in neurites] + [g.gray for g in glia], np.int32)
    for z in range(nz):
        owner, border, local = _partition_slice(neurites, glia, wiggle_a[z], wiggle_b[z], z)
        owner[border < np.float32(MEMBRANE_HALF_WIDTH)] = 0
        segmentation[z] = id_table[owner]
        gray = gray_table[owner]
        granules = (granule_field[z // GRAIN_PERIOD_Z] > np.float32(GRANULE_THRESHOLD)) & (owner > 0)
        gray[granules] -= GRANULE_DEPTH
        _draw_organelles(gray, owner, neurites, local, z)
        gray = _blur(gray) + GRAIN_STEP * grain_field[z // GRAIN_PERIOD_Z]
        image[z] = np.clip(gray, 0, 255)
    return image, segmentation


def _partition_slice(neurites, glia, wiggle_a, wiggle_b, z):
    """Owner index per pixel of slice ``z``, the distance to the nearest cell border and each
    neurite's window."""
    ny, nx = wiggle_a.shape
    xs = np.arange(nx, dtype=np.float32)
    ys = np.arange(ny, dtype=np.float32)
    d1 = np.full((ny, nx), np.inf, np.float32)
    d2 = np.full((ny, nx), np.inf, np.float32)
    owner = np.zeros((ny, nx), np.int32)
    local = {}
    for index, n in enumerate(neurites, start=1):
        cx, cy, r = np.float32(n.cx[z]), np.float32(n.cy[z]), float(n.r[z])
        reach = (r * 1.3 + WINDOW_MARGIN) / n.cos_tilt
        x0, x1 = max(int(np.floor(cx - reach)), 0), min(int(np.ceil(cx + reach)) + 1, nx)
        y0, y1 = max(int(np.floor(cy - reach)), 0), min(int(np.ceil(cy + reach)) + 1, ny)
        if x0 >= x1 or y0 >= y1:
            continue
        dx = (xs[x0:x1] - cx)[None, :]
        dy = (ys[y0:y1] - cy)[:, None]
        ux, uy = np.float32(n.ux), np.float32(n.uy)
        along = (dx * ux + dy * uy) * np.float32(n.cos_tilt)
        across = dy * ux - dx * uy
        dist = np.sqrt(along * along + across * across)
        inv = np.float32(1.0) / (dist + np.float32(1e-3))
        ca, sa = along * inv, across * inv
        c2s, s2s, c3s, s3s = (np.float32(v) for v in n.harmonics)
        shape = (np.float32(1.0) + c2s * (ca * ca - sa * sa) + s2s * (np.float32(2.0) * ca * sa)
                 + c3s * (ca * ca * ca - np.float32(3.0) * ca * sa * sa)
                 + s3s * (np.float32(3.0) * ca * ca * sa - sa * sa * sa))
        d = (dist - np.float32(r) * shape + np.float32(n.wiggle[0]) * wiggle_a[y0:y1, x0:x1]
             + np.float32(n.wiggle[1]) * wiggle_b[y0:y1, x0:x1])
        w1, w2, wo = d1[y0:y1, x0:x1], d2[y0:y1, x0:x1], owner[y0:y1, x0:x1]
        nearer = d < w1
        w2[...] = np.where(nearer, w1, np.minimum(w2, d))
        w1[...] = np.where(nearer, d, w1)
        wo[...] = np.where(nearer, index, wo)
        local[index] = (x0, x1, y0, y1)
    if not np.isfinite(d2).all() or float(d1.max()) > WINDOW_MARGIN - 6.0:
        raise RuntimeError(f"slice {z}: neurites do not cover the field densely enough")

    # glial processes fill the gaps farther than GLIA_GAP from every neurite
    g1 = np.full((ny, nx), np.inf, np.float32)
    g2 = np.full((ny, nx), np.inf, np.float32)
    gowner = np.zeros((ny, nx), np.int32)
    for k, g in enumerate(glia):
        dx = (xs - np.float32(g.cx[z]))[None, :]
        dy = (ys - np.float32(g.cy[z]))[:, None]
        d = np.sqrt(dx * dx + dy * dy) + np.float32(6.0) * wiggle_b
        nearer = d < g1
        g2 = np.where(nearer, g1, np.minimum(g2, d))
        g1 = np.where(nearer, d, g1)
        gowner = np.where(nearer, len(neurites) + 1 + k, gowner)
    in_glia = d1 > np.float32(GLIA_GAP)
    owner = np.where(in_glia, gowner, owner)
    to_glia_edge = _distance_to_border(np.abs(d1 - np.float32(GLIA_GAP)))
    border = np.where(in_glia, np.minimum(to_glia_edge, _distance_to_border(g2 - g1)),
                      np.minimum(to_glia_edge, _distance_to_border(d2 - d1)))
    return owner, border, local


def _blur(plane: np.ndarray) -> np.ndarray:
    """Integer [1, 2, 1] x [1, 2, 1] / 16 smoothing (the microscope's blur), edges repeated."""
    p = np.pad(plane.astype(np.int32), 1, mode="edge")
    p = p[:-2] + 2 * p[1:-1] + p[2:]
    p = p[:, :-2] + 2 * p[:, 1:-1] + p[:, 2:]
    return (p + 8) >> 4


def _distance_to_border(gap: np.ndarray) -> np.ndarray:
    """Approximate distance (px) to the nearest cell border from the gap between the two nearest
    neurites' distances: the gap divided by its slope (the steeper one-sided difference per axis,
    which stays correct at the V-shaped minimum on the border itself)."""
    def slope(axis):
        step = np.abs(np.diff(gap, axis=axis))
        pad_lo = [(0, 0), (0, 0)]
        pad_hi = [(0, 0), (0, 0)]
        pad_lo[axis], pad_hi[axis] = (1, 0), (0, 1)
        return np.maximum(np.pad(step, pad_lo, mode="edge"), np.pad(step, pad_hi, mode="edge"))

    sy, sx = slope(0), slope(1)
    return gap / np.maximum(np.sqrt(sx * sx + sy * sy), np.float32(0.4))


def _draw_organelles(gray, owner, neurites, local, z) -> None:
    """Mitochondria, vesicles and microtubules as flat gray shapes inside their neurite."""
    for index, n in enumerate(neurites, start=1):
        if index not in local or not (n.mitos or n.vesicles or n.microtubules):
            continue
        x0, x1, y0, y1 = local[index]
        mine = owner[y0:y1, x0:x1] == index
        if not mine.any():
            continue
        target = gray[y0:y1, x0:x1]
        cx, cy, r = float(n.cx[z]), float(n.cy[z]), float(n.r[z])
        yy = np.arange(y0, y1, dtype=np.float32)[:, None]
        xx = np.arange(x0, x1, dtype=np.float32)[None, :]
        for zc, half, ox, oy, r_mito, aspect, stripe, period in n.mitos:
            t = (z - zc) / half
            if abs(t) >= 1.0:
                continue
            rm = r_mito * (0.35 + 0.65 * float(np.sqrt(1.0 - t * t)))
            px, py = xx - np.float32(cx + ox * r), yy - np.float32(cy + oy * r)
            a = px * np.float32(stripe[0]) + py * np.float32(stripe[1])
            b = py * np.float32(stripe[0]) - px * np.float32(stripe[1])
            rho = np.sqrt(a * a / np.float32(aspect * aspect) + b * b) / np.float32(rm)
            inside = (rho < 1.0) & mine
            if not inside.any():
                continue
            phase = b / np.float32(period) + np.float32(0.37 * zc)
            crista = (phase - np.floor(phase)) < np.float32(0.35)
            value = np.where(crista, MITO_CRISTA_VALUE, MITO_VALUE)
            value = np.where(rho > np.float32(1.0 - 1.6 / rm), MITO_ENVELOPE_VALUE, value)
            target[inside] = value[inside]
        for vz, ox, oy, r_nm in n.vesicles:
            dz_nm = (z - vz) * VOXEL_SIZE_NM[2]
            if abs(dz_nm) < r_nm:
                rv = float(np.sqrt(r_nm * r_nm - dz_nm * dz_nm)) / VOXEL_SIZE_NM[0]
                _stamp_disk(gray, owner, index, cx + ox, cy + oy, max(rv, 1.0), VESICLE_VALUE)
        for ox, oy in n.microtubules:
            _stamp_disk(gray, owner, index, cx + ox * r, cy + oy * r, 1.2, MICROTUBULE_VALUE)


def _stamp_disk(gray, owner, index, x, y, radius, value) -> None:
    """Set a small disk around (x, y) to ``value``, only inside neurite ``index``."""
    ny, nx = owner.shape
    reach = int(radius) + 2
    xi, yi = int(np.floor(x)), int(np.floor(y))
    x0, x1 = max(xi - reach, 0), min(xi + reach + 2, nx)
    y0, y1 = max(yi - reach, 0), min(yi + reach + 2, ny)
    if x0 >= x1 or y0 >= y1:
        return
    px = np.arange(x0, x1, dtype=np.float32)[None, :] - np.float32(x)
    py = np.arange(y0, y1, dtype=np.float32)[:, None] - np.float32(y)
    disk = (px * px + py * py < np.float32(radius * radius)) & (owner[y0:y1, x0:x1] == index)
    gray[y0:y1, x0:x1][disk] = value


# ----------------------------------------------------------------------------- writing


def write_sample(out: str | Path) -> dict:
    """Regenerate ``out/knossos`` and ``out/webknossos``; returns timing and size facts."""
    out = Path(out)
    t0 = time.perf_counter()
    image, segmentation = make_volumes()
    image_mags = pyramid(image, N_MAGS, segmentation=False)
    seg_mags = pyramid(segmentation, N_MAGS, segmentation=True)
    t_volume = time.perf_counter() - t0

    knossos_root = out / "knossos"
    if knossos_root.exists():
        shutil.rmtree(knossos_root)
    description = "synthetic EM neuropil, napari-knossos sample (see README.md)"
    write_knossos_dataset(
        knossos_root, EXPERIMENT, VOXEL_SIZE_NM,
        [KnossosLayerSpec(".png", image_mags, description=f"{description}: image"),
         KnossosLayerSpec(".seg.sz.zip", seg_mags, description=f"{description}: neurite segmentation")],
        cube_shape_xyz=CUBE_EDGE, png_filter="none",
    )
    write_webknossos_dataset(
        out / "webknossos", VOXEL_SIZE_NM,
        [WkLayerSpec("color", "color", {2**i: m for i, m in enumerate(image_mags)}),
         WkLayerSpec("segmentation", "segmentation", {2**i: m for i, m in enumerate(seg_mags)})],
        overwrite=True, name=EXPERIMENT,
    )
    return {"seconds_volume": t_volume, "seconds_total": time.perf_counter() - t0,
            "segments": int(np.unique(segmentation).size - 1)}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(__doc__.strip().splitlines()[0])
        print("usage: python -m napari_knossos.sample_data.generate OUT")
        return 2
    facts = write_sample(argv[0])
    print(f"wrote {argv[0]}: {facts['segments']} segments, volume {facts['seconds_volume']:.1f} s, "
          f"total {facts['seconds_total']:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
