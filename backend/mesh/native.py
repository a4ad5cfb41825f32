"""The compiled kernels (``_native.c``) behind typed wrappers, with a switch to turn them off.

``make setup`` compiles ``backend/mesh/_native.c`` (plain C, built by ``setup.py`` through
``pip install -e .``). Every kernel has a numpy twin in the module that calls it; the
compiled one is used when the extension imports and ``MESHSMITH_NATIVE`` is not ``0``.
Tests run both and compare them. The wrappers own the checks the C code relies on:
dtypes, C-contiguity and shapes.
"""

from __future__ import annotations

import logging
import os

import numpy as np

log = logging.getLogger(__name__)

try:
    from backend.mesh import _native
except ImportError as error:  # not built: no C compiler at install time
    _native = None
    _IMPORT_ERROR = str(error)
else:
    _IMPORT_ERROR = ""


def available() -> bool:
    """True when the compiled kernels are built and ``MESHSMITH_NATIVE`` does not turn them off."""
    flag = os.environ.get("MESHSMITH_NATIVE", "").strip()
    if flag not in ("", "0", "1"):
        raise ValueError(f"MESHSMITH_NATIVE must be 0 or 1, got {flag!r}")
    return _native is not None and flag != "0"


def why_unavailable() -> str:
    """Why :func:`available` is False ('' when it is True)."""
    if _native is None:
        return f"backend.mesh._native is not built ({_IMPORT_ERROR}); run `make setup` (needs a C compiler)"
    if not available():
        return "MESHSMITH_NATIVE=0"
    return ""


def _c(array: np.ndarray, dtype, shape_tail: tuple[int, ...] = ()) -> np.ndarray:
    array = np.ascontiguousarray(array, dtype=dtype)
    if array.shape[1:] != shape_tail:
        raise ValueError(f"expected shape (n, {', '.join(map(str, shape_tail))}), got {array.shape}")
    return array


def _check_outputs(**outputs: tuple[np.ndarray, type]) -> None:
    """Outputs are written in place by C: each must be C-contiguous of its dtype."""
    for name, (out, dtype) in outputs.items():
        if out.dtype != dtype or not out.flags.c_contiguous:
            raise ValueError(f"{name} must be a C-contiguous {np.dtype(dtype).name} array")


def band_distance(corners: np.ndarray, parent: np.ndarray, origin: np.ndarray, spacing: float,
                  shape: tuple[int, int, int], band: float, slot: np.ndarray, coarse_shape: tuple[int, int, int],
                  out_distance: np.ndarray, out_face: np.ndarray) -> None:
    """Lower ``out_distance`` (float32) to each triangle's exact distance at band nodes within ``band``.

    ``corners`` (m, 9): triangles in the grid's frame; ``parent`` (m,): the face id written
    into ``out_face`` (int32) where a triangle gives a node its new minimum. ``slot`` maps
    coarse blocks to rows of the ``(nb, 8^3)`` outputs (-1: not stored). Outputs must be
    C-contiguous and are updated in place.
    """
    _check_outputs(out_distance=(out_distance, np.float32), out_face=(out_face, np.int32))
    _native.band_distance(_c(corners, np.float64, (9,)), _c(parent, np.int64), tuple(map(float, origin)),
                          float(spacing), tuple(map(int, shape)), float(band), _c(slot, np.int64),
                          tuple(map(int, coarse_shape)), out_distance, out_face)


def tangent_normals(points: np.ndarray, face_a: np.ndarray, face_b: np.ndarray, vertices: np.ndarray,
                    faces: np.ndarray, on_input: float) -> np.ndarray:
    """Unit input normals (k, 3) at crossings ``points``; see :func:`backend.mesh.remesh.dual._tangent_normals`."""
    points = _c(points, np.float64, (3,))
    out = np.empty_like(points)
    _native.tangent_normals(points, _c(face_a, np.int32), _c(face_b, np.int32), _c(vertices, np.float64, (3,)),
                            _c(faces, np.int64, (3,)), float(on_input), out)
    return out


def place_vertices(quads: np.ndarray, points: np.ndarray, normals: np.ndarray | None, cell_corner: np.ndarray,
                   flat_ratio: float, cutoff: float, margin: float) -> np.ndarray:
    """Dual contouring vertices (v, 3); see :func:`backend.mesh.remesh.dual._place_vertices`."""
    cell_corner = _c(cell_corner, np.int64, (3,))
    out = np.empty((len(cell_corner), 3))
    _native.place_vertices(_c(quads, np.int64, (4,)), _c(points, np.float64, (3,)),
                           None if normals is None else _c(normals, np.float64, (3,)), cell_corner,
                           float(flat_ratio), float(cutoff), float(margin), out)
    return out


def cell_codes(field: np.ndarray, slot: np.ndarray, block_value: np.ndarray, outside_value: float,
               coarse_shape: tuple[int, int, int], blocks: np.ndarray, rows: np.ndarray, out_code: np.ndarray) -> None:
    """Sign code of every cell of band blocks ``rows`` into ``out_code`` ((nb * 8^3,) uint8, in place)."""
    _check_outputs(out_code=(out_code, np.uint8))
    _native.cell_codes(_c(field.reshape(-1), np.float32), _c(slot, np.int64), _c(block_value, np.float32),
                       float(outside_value), tuple(map(int, coarse_shape)), _c(blocks, np.int64, (3,)),
                       _c(rows, np.int64), out_code)


def dual_quads(field: np.ndarray, nearest: np.ndarray, slot: np.ndarray, block_value: np.ndarray, outside_value: float,
               coarse_shape: tuple[int, int, int], blocks: np.ndarray, position: np.ndarray, cell_code: np.ndarray,
               first_vertex: np.ndarray, patch: np.ndarray, rings: np.ndarray, quads: np.ndarray, points: np.ndarray,
               face_a: np.ndarray, face_b: np.ndarray) -> None:
    """Fill the quads, crossings and end-node faces of all cut edges (outputs sized by the caller)."""
    _check_outputs(quads=(quads, np.int64), points=(points, np.float64), face_a=(face_a, np.int32),
                   face_b=(face_b, np.int32))
    written = _native.dual_quads(
        _c(field.reshape(-1), np.float32), _c(nearest.reshape(-1), np.int32), _c(slot, np.int64),
        _c(block_value, np.float32), float(outside_value), tuple(map(int, coarse_shape)), _c(blocks, np.int64, (3,)),
        _c(position, np.int64), _c(cell_code, np.uint8), _c(first_vertex, np.int32), _c(patch.reshape(-1), np.int8),
        _c(rings, np.int64, (18,)), quads, points, face_a, face_b)
    if written != len(quads):
        raise ValueError(f"dual_quads wrote {written} quads, expected {len(quads)}")


def split_quads(vertices: np.ndarray, quads: np.ndarray, tie: float) -> np.ndarray:
    """Triangles (2q, 3); see :func:`backend.mesh.remesh.dual._split_quads`."""
    quads = _c(quads, np.int64, (4,))
    out = np.empty((2 * len(quads), 3), dtype=np.int64)
    _native.split_quads(_c(vertices, np.float64, (3,)), quads, float(tie), out)
    return out


def probe_regions(ijk: np.ndarray, face: np.ndarray, vertices: np.ndarray, faces: np.ndarray,
                  origin: np.ndarray, spacing: float, shape: tuple[int, int, int], region_node: np.ndarray,
                  region_block: np.ndarray, slot: np.ndarray, coarse_shape: tuple[int, int, int], eps: float,
                  probe_voxels: float, on_surface_voxels: float, cone: np.ndarray, cone_cos: float,
                  ahead: np.ndarray, behind: np.ndarray, facing: np.ndarray) -> None:
    """Regions ahead of and behind shell nodes, and their facing, into the given outputs;
    see :func:`backend.mesh.remesh.watertight._probe_regions`."""
    _check_outputs(ahead=(ahead, np.int32), behind=(behind, np.int32), facing=(facing, np.int8))
    _native.probe_regions(
        _c(ijk, np.int64, (3,)), _c(face, np.int64), _c(vertices, np.float64, (3,)),
        _c(faces, np.int64, (3,)), tuple(map(float, origin)), float(spacing), tuple(map(int, shape)),
        _c(region_node.reshape(-1), np.int32), _c(region_block, np.int32), _c(slot, np.int64),
        tuple(map(int, coarse_shape)), float(eps), float(probe_voxels), float(on_surface_voxels),
        _c(cone, np.float64, (3,)), float(cone_cos), ahead, behind, facing)


def exact_at_crossings(field: np.ndarray, nearest: np.ndarray, slot: np.ndarray, coarse_shape: tuple[int, int, int],
                       blocks: np.ndarray, vertices: np.ndarray, faces: np.ndarray, origin: np.ndarray, spacing: float,
                       eps: float) -> int:
    """In place on ``field``; see :func:`backend.mesh.remesh.watertight._exact_at_crossings`. Returns nodes changed."""
    _check_outputs(field=(field, np.float32))
    return _native.exact_at_crossings(
        field.reshape(-1), _c(nearest.reshape(-1), np.int32), _c(slot, np.int64), tuple(map(int, coarse_shape)),
        _c(blocks, np.int64, (3,)), _c(vertices, np.float64, (3,)), _c(faces, np.int64, (3,)),
        tuple(map(float, origin)), float(spacing), float(eps))


def short_edge_ends(vertices: np.ndarray, quads: np.ndarray, min_length: float) -> np.ndarray:
    """(n,) bool: ends of quad sides and diagonals shorter than ``min_length``; see
    :func:`backend.mesh.remesh.dual._short_edge_ends`."""
    vertices = _c(vertices, np.float64, (3,))
    mark = np.zeros(len(vertices), dtype=np.uint8)
    _native.short_edge_ends(vertices, _c(quads, np.int64, (4,)), float(min_length), mark)
    return mark.view(bool)


def halfedge_links(src: np.ndarray, dst: np.ndarray, n_vertices: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Edge numbers, twins and the edge count of half-edges ``src -> dst``; see
    :func:`backend.mesh.polygons.halfedge_links`."""
    src, dst = _c(src, np.int64), _c(dst, np.int64)
    if src.shape != dst.shape:
        raise ValueError(f"src and dst must have the same shape, got {src.shape} and {dst.shape}")
    edge_of = np.empty(len(src), dtype=np.int64)
    twin = np.empty(len(src), dtype=np.int64)
    edges = _native.halfedge_links(src, dst, int(n_vertices), edge_of, twin)
    return edge_of, twin, edges


def sheet_steps(vertices: np.ndarray, field: np.ndarray, nearest: np.ndarray, sheet: np.ndarray, slot: np.ndarray,
                coarse_shape: tuple[int, int, int], shape: tuple[int, int, int], input_vertices: np.ndarray,
                faces: np.ndarray, offset: float, snap: float, tie: float) -> tuple[np.ndarray, np.ndarray]:
    """The vertices (k,) int64 of a sheet's slab, and of the rest within ``snap`` of the input, and
    their steps (k, 3) to the sheet's offset or onto the input; see
    :func:`backend.mesh.remesh.sheets._sheet_steps`."""
    vertices = _c(vertices, np.float64, (3,))
    step = np.zeros_like(vertices)
    movable = np.zeros(len(vertices), dtype=np.uint8)
    sheet = sheet.reshape(-1)
    _native.sheet_steps(vertices, _c(field.reshape(-1), np.float32), _c(nearest.reshape(-1), np.int32),
                        _c(sheet.view(np.uint8) if sheet.dtype == bool else sheet, np.uint8), _c(slot, np.int64),
                        tuple(map(int, coarse_shape)), tuple(map(int, shape)), _c(input_vertices, np.float64, (3,)),
                        _c(faces, np.int64, (3,)), float(offset), float(snap), float(tie), step, movable)
    rows = np.flatnonzero(movable)
    return rows, step[rows]


def turned_over(before: np.ndarray, after: np.ndarray, triangles: np.ndarray, min_area: float = 0.0
                ) -> np.ndarray:
    """(t,) bool: triangles whose normal turned over from ``before`` to ``after`` (or that shrank to
    a sliver); see :func:`backend.mesh.remesh.sheets._turned_over`."""
    triangles = _c(triangles, np.int64, (3,))
    mark = np.zeros(len(triangles), dtype=np.uint8)
    _native.turned_over(_c(before, np.float64, (3,)), _c(after, np.float64, (3,)), triangles, mark,
                        float(min_area))
    return mark.view(bool)


def closest_of_candidates(points: np.ndarray, candidates: np.ndarray, vertices: np.ndarray, faces: np.ndarray
                          ) -> tuple[np.ndarray, np.ndarray]:
    """For each of ``points`` (p, 3), the closest point (p, 3) on the nearest of its ``candidates``
    (p, k) faces of the triangle mesh ``(vertices, faces)``, and that face (p,) int64 (the first of
    equals); see :meth:`backend.mesh.retopo.artist._Surface.nearest`."""
    points = _c(points, np.float64, (3,))
    candidates = np.ascontiguousarray(candidates, dtype=np.int64)
    if candidates.ndim != 2 or len(candidates) != len(points) or (len(points) and candidates.shape[1] == 0):
        raise ValueError(f"expected candidates ({len(points)}, k >= 1), got {candidates.shape}")
    near = np.empty_like(points)
    face = np.empty(len(points), dtype=np.int64)
    _native.closest_of_candidates(points, candidates, _c(vertices, np.float64, (3,)), _c(faces, np.int64, (3,)),
                                  near, face)
    return near, face


def reduce_poles(vertices: np.ndarray, polygons: np.ndarray, special: np.ndarray, frozen: np.ndarray,
                 border: np.ndarray, locked: np.ndarray, sector_ideal: dict[tuple[int, int], int], depth: int,
                 min_cosine: float, out_touched: np.ndarray, *, changes_per_face: int, changes_extra: int
                 ) -> tuple[int, int]:
    """Rewire ``polygons`` (k, 4) int64 and ``vertices`` (n, 3) float64 in place, as
    :meth:`backend.mesh.retopo.poles._Rewiring.run` does (a removed face becomes a row of -1);
    mark ``out_touched`` (n,) bool. ``locked`` (e, 2): edges never rotated or merged;
    ``sector_ideal``: ``(vertex, bounding neighbour or -2) -> faces``; ``depth``: zero-cost rotations a
    walk may chain (at most 8); ``min_cosine``: how far a new face may turn; each sweep stops after
    ``changes_per_face`` changes per face and ``changes_extra`` more. Returns (rotations, collapses)."""
    _check_outputs(vertices=(vertices, np.float64), polygons=(polygons, np.int64), out_touched=(out_touched, np.bool_))
    n = len(vertices)
    if vertices.shape != (n, 3) or polygons.ndim != 2 or polygons.shape[1] != 4:
        raise ValueError(f"expected vertices (n, 3) and polygons (k, 4), got {vertices.shape} and {polygons.shape}")
    locked = np.asarray(locked, dtype=np.int64).reshape(-1, 2)
    lock_start, lock_to = _by_vertex(np.concatenate([locked[:, 0], locked[:, 1]]),
                                     np.concatenate([locked[:, 1], locked[:, 0]]), n)
    keys = np.array(list(sector_ideal), dtype=np.int64).reshape(-1, 2)
    values = np.array(list(sector_ideal.values()), dtype=np.int64)
    ideal_start, order = _by_vertex(keys[:, 0], np.arange(len(keys)), n)
    flags = [_c(np.asarray(a, dtype=bool).view(np.uint8), np.uint8) for a in (special, frozen, border)]
    return _native.reduce_poles(vertices, polygons, *flags, lock_start, lock_to, ideal_start,
                                _c(keys[order, 1], np.int64), _c(values[order], np.int64), int(depth),
                                float(min_cosine), int(changes_per_face), int(changes_extra), out_touched.view(np.uint8))


def _by_vertex(owner: np.ndarray, value: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR rows of ``value`` grouped by ``owner`` in ``[0, n)``: starts (n + 1,) and the values."""
    order = np.argsort(owner, kind="stable")
    start = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(owner, minlength=n), out=start[1:])
    return start, _c(np.asarray(value, dtype=np.int64)[order], np.int64)


def corner_angles(quads: np.ndarray) -> np.ndarray:
    """Corner angles in degrees (k, 4) of quads (k, 4, 3), equal bit for bit to
    :func:`backend.mesh.polygons.corner_angles`' numpy (which calls this when it is built)."""
    quads = _c(np.asarray(quads, dtype=np.float64).reshape(-1, 4, 3), np.float64, (4, 3))
    out = np.empty((len(quads), 4))
    _native.corner_angles(quads, out)
    return out


def widen_in_order(vertices: np.ndarray, at: np.ndarray, candidates: list[np.ndarray], faces_at: np.ndarray,
                   start: np.ndarray, padded: np.ndarray, is_quad: np.ndarray, above_degrees: float,
                   min_cosine: float, min_area: float, gain: float) -> np.ndarray:
    """Move each vertex of ``at`` in turn to the best of its ``candidates`` (a ``(c, 3)`` array
    each) in ``vertices`` (n, 3) float64, in place, as
    :func:`backend.mesh.retopo.relax._widen_in_order` does; returns (len(at),) bool, which moved."""
    _check_outputs(vertices=(vertices, np.float64))
    n = len(vertices)
    at = np.ascontiguousarray(at, dtype=np.int64)
    if vertices.shape != (n, 3) or at.ndim != 1 or len(candidates) != len(at):
        raise ValueError(f"expected vertices (n, 3) and a (c, 3) array of candidates for each of {at.shape} vertices, "
                         f"got {vertices.shape} and {len(candidates)}")
    counts = np.array([len(c) for c in candidates], dtype=np.int64)
    tried = np.zeros((len(at), int(counts.max(initial=0)), 3))
    for i, c in enumerate(candidates):
        tried[i, :len(c)] = c
    moved = np.zeros(len(at), dtype=np.uint8)
    _native.widen_in_order(vertices, at, tried, counts, np.ascontiguousarray(faces_at, dtype=np.int64),
                           np.ascontiguousarray(start, dtype=np.int64), _c(padded, np.int64, (4,)),
                           np.ascontiguousarray(is_quad, dtype=np.uint8), float(above_degrees), float(min_cosine),
                           float(min_area), float(gain), moved)
    return moved.view(bool)


def isotropic_remesh(vertices: np.ndarray, faces: np.ndarray, *, length: float, crease_angle: float | None,
                     iterations: int, max_length: float, cancel: np.ndarray | None = None
                     ) -> tuple[np.ndarray, np.ndarray] | None:
    """A remesh of the triangle mesh with edges near ``length``, creases (dihedral above
    ``crease_angle`` degrees; None: none) and open borders kept as edge rows, every edge under
    ``max_length``. None when the mesh is not a manifold, consistently oriented one (the
    compiled half-edge structure cannot hold it), or when ``cancel`` ((1,) uint8, C-contiguous)
    was set non-zero, by another thread, before it finished. Compiled only: no numpy twin."""
    vertices = _c(vertices, np.float64, (3,))
    faces = _c(faces, np.int64, (3,))
    if not np.isfinite(vertices).all():
        raise ValueError("isotropic_remesh: vertices must be finite")
    crease_cos = 2.0 if crease_angle is None else float(np.cos(np.radians(crease_angle)))
    extra = ()
    if cancel is not None:
        _check_outputs(cancel=(cancel, np.uint8))
        if cancel.shape != (1,):
            raise ValueError(f"cancel must have shape (1,), got {cancel.shape}")
        extra = (cancel,)
    out = _native.isotropic_remesh(vertices, faces, float(length), crease_cos, int(iterations), float(max_length),
                                   *extra)
    if out is None:
        return None
    v, f = out
    return np.frombuffer(v, dtype=np.float64).reshape(-1, 3).copy(), np.frombuffer(f, dtype=np.int64).reshape(-1, 3).copy()
