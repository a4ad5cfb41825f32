/*
 * Compiled kernels of the mesh code: the per-node, per-vertex and per-edge loops that numpy
 * can only run as many passes over large temporaries (or sorts).
 *
 * backend/mesh/native.py is the only caller: it checks dtypes, shapes and contiguity, and
 * keeps a numpy implementation of every kernel (the reference the tests compare against,
 * and the path taken when this module was not built). Arrays arrive as contiguous buffers;
 * the GIL is released while a kernel runs, so the backend's HTTP thread keeps answering.
 *
 *   band_distance    exact point-triangle distance at the grid nodes near each triangle,
 *                    keeping a minimum and the nearest face per node (sparse 8^3 blocks)
 *   tangent_normals  the unit normal of the input face a crossing lies on, if any
 *   place_vertices   dual contouring's vertices: mean crossing, then the QEF minimizer
 *   halfedge_links   edge numbers and twins of a polygon mesh's half-edges (the repair of
 *                    backend.mesh.polygons asks for them several times per pass)
 *   sheet_steps      where the vertices of an open sheet's slab move to hug the sheet, and the
 *                    others near the input onto it
 *   turned_over      triangles whose normal a move of their corners turned over
 *   reduce_poles     a quad layout's edge rotations and diagonal collapses toward valence 4
 *                    (the search of backend.mesh.retopo.poles, step for step)
 *   isotropic_remesh split, collapse, flip and smooth a triangle mesh toward one edge length
 *                    (Instant Meshes' input; no numpy twin: without it Instant Meshes takes
 *                    its input as it is)
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK_SHIFT 3
#define BLOCK_MASK 7
#define BLOCK_NODES 512

typedef struct { double x, y, z; } vec3;

static inline vec3 v3(const double *p) { vec3 v = {p[0], p[1], p[2]}; return v; }
static inline vec3 sub(vec3 a, vec3 b) { vec3 v = {a.x - b.x, a.y - b.y, a.z - b.z}; return v; }
static inline vec3 add(vec3 a, vec3 b) { vec3 v = {a.x + b.x, a.y + b.y, a.z + b.z}; return v; }
static inline vec3 scale(vec3 a, double s) { vec3 v = {a.x * s, a.y * s, a.z * s}; return v; }
static inline double dot(vec3 a, vec3 b) { return a.x * b.x + a.y * b.y + a.z * b.z; }
static inline vec3 cross(vec3 a, vec3 b) {
    vec3 v = {a.y * b.z - a.z * b.y, a.z * b.x - a.x * b.z, a.x * b.y - a.y * b.x};
    return v;
}
static inline double clamp01(double t) { return t < 0.0 ? 0.0 : (t > 1.0 ? 1.0 : t); }

/* ------------------------------------------------------------------------------------ */
/* Point-triangle distance                                                               */
/* ------------------------------------------------------------------------------------ */

/* Per triangle: corner a, edges ab, ac, and what the closest-point tests divide by. */
typedef struct {
    vec3 a, ab, ac, unit;       /* unit: the unit normal (zero for degenerate triangles) */
    double abab, abac, acac;
    int degenerate;             /* no usable plane: distance to the three edges */
} Triangle;

/* Triangles whose squared normal is below this fraction of (longest edge^2)^2 are treated
 * as segments (the plane's direction would be rounding noise). */
#define DEGENERATE_SIN2 1e-12

static Triangle triangle_of(vec3 a, vec3 b, vec3 c) {
    Triangle t;
    t.a = a;
    t.ab = sub(b, a);
    t.ac = sub(c, a);
    t.abab = dot(t.ab, t.ab);
    t.abac = dot(t.ab, t.ac);
    t.acac = dot(t.ac, t.ac);
    vec3 bc = sub(c, b);
    double longest = fmax(fmax(t.abab, t.acac), dot(bc, bc));
    vec3 n = cross(t.ab, t.ac);
    double n2 = dot(n, n);
    t.degenerate = !(n2 > DEGENERATE_SIN2 * longest * longest) || longest == 0.0;
    t.unit = t.degenerate ? (vec3){0.0, 0.0, 0.0} : scale(n, 1.0 / sqrt(n2));
    return t;
}

/* p minus its closest point on segment a + s ab, s in [0, 1]. */
static vec3 segment_offset(vec3 p, vec3 a, vec3 ab) {
    double len2 = dot(ab, ab);
    double s = len2 > 0.0 ? clamp01(dot(sub(p, a), ab) / len2) : 0.0;
    return sub(sub(p, a), scale(ab, s));
}

/* p minus its closest point on the triangle: the Voronoi-region tests of Ericson,
 * "Real-Time Collision Detection", 5.1.5, in his order (vertex a, b, edge ab, vertex c,
 * edge ac, edge bc, else the face), as distance.triangle_params; the residual is taken as
 * a vector difference (no expanded quadratic that cancels near zero). Degenerate
 * triangles: the nearest of the three edges. */
static vec3 triangle_offset(vec3 p, const Triangle *t) {
    vec3 ap = sub(p, t->a);
    if (t->degenerate) {
        vec3 best = segment_offset(p, t->a, t->ab);
        vec3 other = segment_offset(p, t->a, t->ac);
        if (dot(other, other) < dot(best, best))
            best = other;
        other = segment_offset(p, add(t->a, t->ab), sub(t->ac, t->ab));
        return dot(other, other) < dot(best, best) ? other : best;
    }
    double d1 = dot(t->ab, ap), d2 = dot(t->ac, ap);
    double d3 = d1 - t->abab, d4 = d2 - t->abac;               /* ab . bp, ac . bp */
    double d5 = d1 - t->abac, d6 = d2 - t->acac;               /* ab . cp, ac . cp */
    double vc = d1 * d4 - d3 * d2, vb = d5 * d2 - d1 * d6, va = d3 * d6 - d5 * d4;
    double s, u;
    if (d1 <= 0.0 && d2 <= 0.0) {
        s = 0.0; u = 0.0;                                      /* vertex a */
    } else if (d3 >= 0.0 && d4 <= d3) {
        s = 1.0; u = 0.0;                                      /* vertex b */
    } else if (vc <= 0.0 && d1 >= 0.0 && d3 <= 0.0) {
        s = d1 / t->abab; u = 0.0;                             /* edge ab */
    } else if (d6 >= 0.0 && d5 <= d6) {
        s = 0.0; u = 1.0;                                      /* vertex c */
    } else if (vb <= 0.0 && d2 >= 0.0 && d6 <= 0.0) {
        s = 0.0; u = d2 / t->acac;                             /* edge ac */
    } else if (va <= 0.0 && (d4 - d3) >= 0.0 && (d5 - d6) >= 0.0) {
        double w = (d4 - d3) / ((d4 - d3) + (d5 - d6));        /* edge bc */
        s = 1.0 - w; u = w;
    } else {
        double inv = 1.0 / (va + vb + vc);                     /* inside the face */
        s = vb * inv; u = vc * inv;
    }
    return sub(sub(ap, scale(t->ab, s)), scale(t->ac, u));
}

static inline double triangle_d2(vec3 p, const Triangle *t) {
    vec3 d = triangle_offset(p, t);
    return dot(d, d);
}

/* band_distance(corners, parent, origin, h, shape, band, slot, coarse, out_distance, out_face)
 *
 * corners (m, 9) float64: triangles a, b, c in the grid's frame; parent (m,) int64: the
 * face id written for each; origin (x, y, z), spacing h, shape (nx, ny, nz): grid nodes
 * origin + ijk h; slot (Cx Cy Cz,) int64: row of each 8^3 block, -1 outside the band;
 * coarse (Cx, Cy, Cz). Every node within ``band`` of a triangle whose block is in the band
 * gets min(out_distance, distance) and, where it is a new minimum, out_face = parent.
 * Nodes are visited per (i, j) column only across the slab within ``band`` of the
 * triangle's plane. */
static PyObject *band_distance(PyObject *self, PyObject *args) {
    Py_buffer corners, parent, slot, out_distance, out_face;
    double ox, oy, oz, h, band;
    Py_ssize_t nx, ny, nz, cx, cy, cz;
    if (!PyArg_ParseTuple(args, "y*y*(ddd)d(nnn)dy*(nnn)w*w*", &corners, &parent, &ox, &oy, &oz, &h,
                          &nx, &ny, &nz, &band, &slot, &cx, &cy, &cz, &out_distance, &out_face))
        return NULL;
    Py_ssize_t m = corners.len / (9 * (Py_ssize_t)sizeof(double));
    Py_ssize_t nodes = out_distance.len / (Py_ssize_t)sizeof(float);
    int ok = parent.len == m * (Py_ssize_t)sizeof(int64_t)
             && slot.len == cx * cy * cz * (Py_ssize_t)sizeof(int64_t)
             && out_face.len == nodes * (Py_ssize_t)sizeof(int32_t);
    if (ok) {
        const double *c = corners.buf;
        const int64_t *par = parent.buf, *slots = slot.buf;
        float *dist = out_distance.buf;
        int32_t *face = out_face.buf;
        const double band2 = band * band, inv_h = 1.0 / h;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t f = 0; f < m; f++) {
            const double *q = c + 9 * f;
            Triangle t = triangle_of(v3(q), v3(q + 3), v3(q + 6));
            double lo[3], hi[3], o[3] = {ox, oy, oz};
            Py_ssize_t start[3], stop[3], n[3] = {nx, ny, nz};
            int empty = 0;
            for (int d = 0; d < 3; d++) {
                lo[d] = fmin(fmin(q[d], q[3 + d]), q[6 + d]);
                hi[d] = fmax(fmax(q[d], q[3 + d]), q[6 + d]);
                double s = ceil((lo[d] - band - o[d]) * inv_h), e = floor((hi[d] + band - o[d]) * inv_h) + 1.0;
                start[d] = s < 0.0 ? 0 : (Py_ssize_t)s;
                stop[d] = e > (double)n[d] ? n[d] : (Py_ssize_t)e;
                empty |= stop[d] <= start[d];
            }
            if (empty)
                continue;
            for (Py_ssize_t i = start[0]; i < stop[0]; i++) {
                for (Py_ssize_t j = start[1]; j < stop[1]; j++) {
                    Py_ssize_t k0 = start[2], k1 = stop[2];
                    vec3 p = {ox + i * h, oy + j * h, oz + k0 * h};
                    if (!t.degenerate && t.unit.z != 0.0) {
                        /* Plane distance along the column: base + k h unit.z, |.| <= band. */
                        double base = dot(sub(p, t.a), t.unit) - k0 * h * t.unit.z;
                        double step = h * t.unit.z;
                        double ka = (-band - base) / step, kb = (band - base) / step;
                        if (ka > kb) { double tmp = ka; ka = kb; kb = tmp; }
                        double first = ceil(ka), last = floor(kb) + 1.0;
                        if (first > (double)k0) k0 = first > (double)k1 ? k1 : (Py_ssize_t)first;
                        if (last < (double)k1) k1 = last < (double)k0 ? k0 : (Py_ssize_t)last;
                    } else if (!t.degenerate && fabs(dot(sub(p, t.a), t.unit)) > band) {
                        continue;
                    }
                    Py_ssize_t row = ((i >> BLOCK_SHIFT) * cy + (j >> BLOCK_SHIFT)) * cz;
                    Py_ssize_t local_ij = ((i & BLOCK_MASK) * 8 + (j & BLOCK_MASK)) * 8;
                    for (Py_ssize_t k = k0; k < k1; k++) {
                        int64_t s = slots[row + (k >> BLOCK_SHIFT)];
                        if (s < 0)
                            continue;
                        p.z = oz + k * h;
                        double d2 = triangle_d2(p, &t);
                        if (d2 > band2)
                            continue;
                        Py_ssize_t at = (Py_ssize_t)s * BLOCK_NODES + local_ij + (k & BLOCK_MASK);
                        float d = (float)sqrt(d2);
                        if (d < dist[at]) {
                            dist[at] = d;
                            face[at] = (int32_t)par[f];
                        }
                    }
                }
            }
        }
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&corners);
    PyBuffer_Release(&parent);
    PyBuffer_Release(&slot);
    PyBuffer_Release(&out_distance);
    PyBuffer_Release(&out_face);
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "band_distance: buffer sizes do not match");
        return NULL;
    }
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------------------------ */
/* Tangent planes at crossings                                                           */
/* ------------------------------------------------------------------------------------ */

/* Upper bound on the distance from p to triangle t: the projection on the plane clamped
 * into the triangle in barycentric coordinates (exact inside; a little high near edges).
 * +inf for degenerate triangles. Same as dual._gap. */
static double gap(vec3 p, const Triangle *t) {
    double det = t->abab * t->acac - t->abac * t->abac;
    if (!(det > 1e-12 * t->abab * t->acac))
        return INFINITY;
    vec3 ap = sub(p, t->a);
    double d1 = dot(ap, t->ab), d2 = dot(ap, t->ac);
    double s = clamp01((t->acac * d1 - t->abac * d2) / det);
    double u = clamp01((t->abab * d2 - t->abac * d1) / det);
    double over = fmax(s + u, 1.0);
    vec3 away = sub(sub(ap, scale(t->ab, s / over)), scale(t->ac, u / over));
    return sqrt(dot(away, away));
}

/* The unit normal of any triangle with a nonzero cross product (gap() is finite only
 * for those), zero otherwise. */
static vec3 plane_normal(const Triangle *t) {
    vec3 n = cross(t->ab, t->ac);
    double len = sqrt(dot(n, n));
    return len > 0.0 ? scale(n, 1.0 / len) : (vec3){0.0, 0.0, 0.0};
}

static Triangle face_triangle(const double *vertices, const int64_t *faces, int64_t f) {
    const int64_t *v = faces + 3 * f;
    return triangle_of(v3(vertices + 3 * v[0]), v3(vertices + 3 * v[1]), v3(vertices + 3 * v[2]));
}

/* tangent_normals(points, face_a, face_b, vertices, faces, on_input, out)
 *
 * points (k, 3) float64; face_a, face_b (k,) int32: the nearest faces of a crossing's two
 * end nodes (-1: none); vertices (n, 3) float64, faces (m, 3) int64. out (k, 3) float64
 * gets the unit normal of face_a if the crossing is within on_input of it, else of face_b
 * if that is closer, else zero when neither is within on_input. */
static PyObject *tangent_normals(PyObject *self, PyObject *args) {
    Py_buffer points, face_a, face_b, vertices, faces, out;
    double on_input;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*dw*", &points, &face_a, &face_b, &vertices, &faces, &on_input, &out))
        return NULL;
    Py_ssize_t k = points.len / (3 * (Py_ssize_t)sizeof(double));
    Py_ssize_t m = faces.len / (3 * (Py_ssize_t)sizeof(int64_t));
    Py_ssize_t n = vertices.len / (3 * (Py_ssize_t)sizeof(double));
    int ok = face_a.len == k * (Py_ssize_t)sizeof(int32_t) && face_b.len == face_a.len && out.len == points.len;
    const int64_t *fc = faces.buf;
    for (Py_ssize_t i = 0; ok && i < 3 * m; i++)
        ok = fc[i] >= 0 && fc[i] < n;
    if (ok) {
        const double *p = points.buf, *vs = vertices.buf;
        const int32_t *fa = face_a.buf, *fb = face_b.buf;
        double *o = out.buf;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t i = 0; i < k; i++) {
            vec3 x = v3(p + 3 * i), normal = {0.0, 0.0, 0.0};
            double best = INFINITY;
            Triangle t;
            if (fa[i] >= 0 && fa[i] < m) {
                t = face_triangle(vs, fc, fa[i]);
                best = gap(x, &t);
                normal = plane_normal(&t);
            }
            if (!(best <= on_input) && fb[i] >= 0 && fb[i] < m) {
                Triangle other = face_triangle(vs, fc, fb[i]);
                double g = gap(x, &other);
                if (g < best) {
                    best = g;
                    normal = plane_normal(&other);
                }
            }
            if (!(best <= on_input))
                normal = (vec3){0.0, 0.0, 0.0};
            o[3 * i] = normal.x; o[3 * i + 1] = normal.y; o[3 * i + 2] = normal.z;
        }
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&points);
    PyBuffer_Release(&face_a);
    PyBuffer_Release(&face_b);
    PyBuffer_Release(&vertices);
    PyBuffer_Release(&faces);
    PyBuffer_Release(&out);
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "tangent_normals: buffer sizes do not match or a face index is out of range");
        return NULL;
    }
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------------------------ */
/* Signing: the regions on both sides of each shell node                                 */
/* ------------------------------------------------------------------------------------ */

/* Coarse id of the 8^3 block holding node (i, j, k), or -1 beyond a (cx, cy, cz) block grid. */
static inline int64_t block_of(int64_t i, int64_t j, int64_t k, Py_ssize_t cx, Py_ssize_t cy, Py_ssize_t cz) {
    if (i < 0 || j < 0 || k < 0 || (i >> BLOCK_SHIFT) >= cx || (j >> BLOCK_SHIFT) >= cy || (k >> BLOCK_SHIFT) >= cz)
        return -1;
    return ((i >> BLOCK_SHIFT) * cy + (j >> BLOCK_SHIFT)) * cz + (k >> BLOCK_SHIFT);
}

/* Position of node (i, j, k) in the rows of band block ``slot`` (slot * 512 + local). */
static inline int64_t band_position(int64_t slot, int64_t i, int64_t j, int64_t k) {
    return slot * BLOCK_NODES + (((i & BLOCK_MASK) << 6) | ((j & BLOCK_MASK) << 3) | (k & BLOCK_MASK));
}

/* Region labels of a block grid (blocks.Regions): per band node, and per block elsewhere. */
typedef struct {
    const int32_t *node, *block;
    const int64_t *slot;
    Py_ssize_t cx, cy, cz, nx, ny, nz;
} RegionGrid;

/* Region of the lattice node (i, j, k), clipped into the grid (as Regions.at). */
static inline int32_t region_of(const RegionGrid *r, int64_t i, int64_t j, int64_t k) {
    i = i < 0 ? 0 : (i >= r->nx ? r->nx - 1 : i);
    j = j < 0 ? 0 : (j >= r->ny ? r->ny - 1 : j);
    k = k < 0 ? 0 : (k >= r->nz ? r->nz - 1 : k);
    int64_t id = block_of(i, j, k, r->cx, r->cy, r->cz);
    int64_t s = r->slot[id];
    return s < 0 ? r->block[id] : r->node[band_position(s, i, j, k)];
}

/* Region of the node nearest point p given in grid index units. */
static inline int32_t region_near(const RegionGrid *r, vec3 p) {
    return region_of(r, (int64_t)rint(p.x), (int64_t)rint(p.y), (int64_t)rint(p.z));
}

/* probe_regions(ijk, face, vertices, faces, origin, h, shape, region_node, region_block,
 *               slot, coarse, eps, probe_voxels, on_surface_voxels, cone, cone_cos,
 *               out_ahead, out_behind, out_facing)
 *
 * Step 5 of backend.mesh.remesh.watertight for shell nodes ijk (k, 3) int64 with nearest face
 * face (k,) int64 (vertices (n, 3) float64 in the grid's frame, faces (m, 3) int64): the
 * direction n from the closest point c to the node (the face's normal for nodes within
 * on_surface_voxels of it, by the float64 offset: the band's float32 distance of a node on a
 * large face is off by more), facing = sign(n . normal), and the region of the
 * nodes nearest c +- L n for L = eps + probe_voxels h, retried at one voxel more while 0.
 * An ahead probe still 0 of a node in front of its face takes the first nonzero region
 * among the lattice offsets cone (c, 3) (sorted nearest first) within the cone
 * n . unit(offset) >= cone_cos. Same arithmetic as watertight._probe_regions. */
static PyObject *probe_regions(PyObject *self, PyObject *args) {
    Py_buffer ijk, face, vertices, faces, region_node, region_block, slot, cone, out_ahead, out_behind, out_facing;
    double ox, oy, oz, h, eps, probe_voxels, on_surface_voxels, cone_cos;
    Py_ssize_t nx, ny, nz, cx, cy, cz;
    if (!PyArg_ParseTuple(args, "y*y*y*y*(ddd)d(nnn)y*y*y*(nnn)dddy*dw*w*w*", &ijk, &face, &vertices, &faces, &ox,
                          &oy, &oz, &h, &nx, &ny, &nz, &region_node, &region_block, &slot, &cx, &cy, &cz, &eps,
                          &probe_voxels, &on_surface_voxels, &cone, &cone_cos, &out_ahead, &out_behind, &out_facing))
        return NULL;
    Py_ssize_t k = face.len / (Py_ssize_t)sizeof(int64_t);
    Py_ssize_t n = vertices.len / (3 * (Py_ssize_t)sizeof(double));
    Py_ssize_t m = faces.len / (3 * (Py_ssize_t)sizeof(int64_t));
    Py_ssize_t c_count = cone.len / (3 * (Py_ssize_t)sizeof(double));
    int ok = ijk.len == 3 * k * (Py_ssize_t)sizeof(int64_t)
             && slot.len == cx * cy * cz * (Py_ssize_t)sizeof(int64_t)
             && region_block.len == cx * cy * cz * (Py_ssize_t)sizeof(int32_t)
             && nx <= cx * 8 && ny <= cy * 8 && nz <= cz * 8
             && out_ahead.len == k * (Py_ssize_t)sizeof(int32_t) && out_behind.len == out_ahead.len
             && out_facing.len == k;
    const int64_t *fc = faces.buf, *fi = face.buf;
    for (Py_ssize_t i = 0; ok && i < 3 * m; i++)
        ok = fc[i] >= 0 && fc[i] < n;
    for (Py_ssize_t i = 0; ok && i < k; i++)
        ok = fi[i] >= 0 && fi[i] < m;
    const int64_t *slots = slot.buf;
    Py_ssize_t rows = region_node.len / (BLOCK_NODES * (Py_ssize_t)sizeof(int32_t));
    for (Py_ssize_t i = 0; ok && i < cx * cy * cz; i++)
        ok = slots[i] < rows;
    if (ok) {
        RegionGrid r = {region_node.buf, region_block.buf, slot.buf, cx, cy, cz, nx, ny, nz};
        const int64_t *node = ijk.buf;
        const double *vs = vertices.buf, *co = cone.buf;
        int32_t *ahead = out_ahead.buf, *behind = out_behind.buf;
        int8_t *facing = out_facing.buf;
        const double inv_h = 1.0 / h, reach0 = eps + probe_voxels * h, reach1 = eps + (probe_voxels + 1.0) * h;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t i = 0; i < k; i++) {
            Triangle t = face_triangle(vs, fc, fi[i]);
            vec3 unit = plane_normal(&t);
            vec3 x = {ox + node[3 * i] * h, oy + node[3 * i + 1] * h, oz + node[3 * i + 2] * h};
            vec3 away = triangle_offset(x, &t);                      /* x - c */
            double di = sqrt(dot(away, away));
            vec3 dir = di <= on_surface_voxels * h ? unit : scale(away, 1.0 / di);
            double f = dot(dir, unit);
            facing[i] = (int8_t)((f > 0.0) - (f < 0.0));
            vec3 c = sub(x, away);
            vec3 c_index = {(c.x - ox) * inv_h, (c.y - oy) * inv_h, (c.z - oz) * inv_h};
            for (int side = 0; side < 2; side++) {
                double sign = side == 0 ? 1.0 : -1.0;
                int32_t found = region_near(&r, add(c_index, scale(dir, sign * reach0 * inv_h)));
                if (found == 0)
                    found = region_near(&r, add(c_index, scale(dir, sign * reach1 * inv_h)));
                if (found == 0 && side == 0 && facing[i] > 0) {
                    for (Py_ssize_t o = 0; o < c_count && found == 0; o++) {
                        vec3 off = v3(co + 3 * o);
                        if (dot(dir, off) < cone_cos * sqrt(dot(off, off)))
                            continue;
                        found = region_of(&r, node[3 * i] + (int64_t)off.x, node[3 * i + 1] + (int64_t)off.y,
                                          node[3 * i + 2] + (int64_t)off.z);
                    }
                }
                (side == 0 ? ahead : behind)[i] = found;
            }
        }
        Py_END_ALLOW_THREADS
    }
    Py_buffer *all[] = {&ijk, &face, &vertices, &faces, &region_node, &region_block, &slot, &cone,
                        &out_ahead, &out_behind, &out_facing};
    for (size_t b = 0; b < sizeof(all) / sizeof(all[0]); b++)
        PyBuffer_Release(all[b]);
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "probe_regions: buffer sizes do not match or an index is out of range");
        return NULL;
    }
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------------------------ */
/* Dual contouring vertices                                                              */
/* ------------------------------------------------------------------------------------ */

/* Eigen-decomposition of a symmetric 3x3 matrix by cyclic Jacobi rotations: a = V diag(w)
 * V^T, columns of v the eigenvectors. Converges to rounding in a handful of sweeps. */
static void symmetric_eigen(const double a_in[3][3], double w[3], double v[3][3]) {
    double a[3][3];
    memcpy(a, a_in, sizeof(a));
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            v[i][j] = i == j;
    for (int sweep = 0; sweep < 16; sweep++) {
        double off = a[0][1] * a[0][1] + a[0][2] * a[0][2] + a[1][2] * a[1][2];
        double diag = a[0][0] * a[0][0] + a[1][1] * a[1][1] + a[2][2] * a[2][2];
        if (off <= 1e-30 * diag || off == 0.0)
            break;
        for (int p = 0; p < 2; p++) {
            for (int q = p + 1; q < 3; q++) {
                if (a[p][q] == 0.0)
                    continue;
                double theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
                double t = (theta >= 0.0 ? 1.0 : -1.0) / (fabs(theta) + sqrt(theta * theta + 1.0));
                double c = 1.0 / sqrt(t * t + 1.0), s = t * c;
                for (int k = 0; k < 3; k++) {               /* a = J^T a J */
                    double akp = a[k][p], akq = a[k][q];
                    a[k][p] = c * akp - s * akq;
                    a[k][q] = s * akp + c * akq;
                }
                for (int k = 0; k < 3; k++) {
                    double apk = a[p][k], aqk = a[q][k];
                    a[p][k] = c * apk - s * aqk;
                    a[q][k] = s * apk + c * aqk;
                }
                for (int k = 0; k < 3; k++) {
                    double vkp = v[k][p], vkq = v[k][q];
                    v[k][p] = c * vkp - s * vkq;
                    v[k][q] = s * vkp + c * vkq;
                }
            }
        }
    }
    for (int i = 0; i < 3; i++)
        w[i] = a[i][i];
}

/* place_vertices(quads, points, normals, cell_corner, flat_ratio, cutoff, margin, out)
 *
 * quads (q, 4) int64: the vertices of each cut edge's quad; points (q, 3) float64: the
 * edge's crossing; normals (q, 3) float64 or None: the tangent plane's unit normal there
 * (zero: none); cell_corner (v, 3) int64: each vertex's cell. out (v, 3) float64: the mean
 * of the vertex's crossings, moved (with normals) to the minimizer of sum (n.(x - p))^2
 * measured from the mean: nearly one plane (|A|_F^2 >= flat_ratio trace^2) along its
 * direction from two power steps, otherwise by the pseudo-inverse that drops eigenvalues
 * below cutoff * the largest; a result more than margin outside its cell keeps the mean.
 * The arithmetic follows dual._place_vertices step for step. */
static PyObject *place_vertices(PyObject *self, PyObject *args) {
    Py_buffer quads, points, normals = {0}, corners, out;
    PyObject *normals_obj;
    double flat_ratio, cutoff, margin;
    if (!PyArg_ParseTuple(args, "y*y*Oy*dddw*", &quads, &points, &normals_obj, &corners, &flat_ratio, &cutoff,
                          &margin, &out))
        return NULL;
    int sharp = normals_obj != Py_None;
    if (sharp && PyObject_GetBuffer(normals_obj, &normals, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&quads);
        PyBuffer_Release(&points);
        PyBuffer_Release(&corners);
        PyBuffer_Release(&out);
        return NULL;
    }
    Py_ssize_t q = quads.len / (4 * (Py_ssize_t)sizeof(int64_t));
    Py_ssize_t count = corners.len / (3 * (Py_ssize_t)sizeof(int64_t));
    int ok = points.len == q * 3 * (Py_ssize_t)sizeof(double) && (!sharp || normals.len == points.len)
             && out.len == count * 3 * (Py_ssize_t)sizeof(double);
    const int64_t *qd = quads.buf;
    for (Py_ssize_t i = 0; ok && i < 4 * q; i++)
        ok = qd[i] >= 0 && qd[i] < count;
    double *acc = NULL;
    /* Per vertex: count, sum p (3), and with normals A (6: xx xy xz yy yz zz), sum n (n.p) (3). */
    const int width = sharp ? 13 : 4;
    if (ok && !(acc = calloc((size_t)count * width, sizeof(double)))) {
        ok = 0;
        PyErr_NoMemory();
    }
    if (ok) {
        const double *p = points.buf, *nrm = sharp ? normals.buf : NULL;
        const int64_t *cc = corners.buf;
        double *o = out.buf;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t e = 0; e < q; e++) {
            double x = p[3 * e], y = p[3 * e + 1], z = p[3 * e + 2];
            double nx = 0, ny = 0, nz = 0, along = 0;
            if (sharp) {
                nx = nrm[3 * e]; ny = nrm[3 * e + 1]; nz = nrm[3 * e + 2];
                along = nx * x + ny * y + nz * z;
            }
            for (int c = 0; c < 4; c++) {
                double *r = acc + (size_t)qd[4 * e + c] * width;
                r[0] += 1.0; r[1] += x; r[2] += y; r[3] += z;
                if (sharp) {
                    r[4] += nx * nx; r[5] += nx * ny; r[6] += nx * nz;
                    r[7] += ny * ny; r[8] += ny * nz; r[9] += nz * nz;
                    r[10] += nx * along; r[11] += ny * along; r[12] += nz * along;
                }
            }
        }
        for (Py_ssize_t i = 0; i < count; i++) {
            const double *r = acc + (size_t)i * width;
            double mean[3] = {r[1] / r[0], r[2] / r[0], r[3] / r[0]};
            double x[3] = {mean[0], mean[1], mean[2]};
            if (sharp) {
                double A[3][3] = {{r[4], r[5], r[6]}, {r[5], r[7], r[8]}, {r[6], r[8], r[9]}};
                double b[3], y[3] = {0.0, 0.0, 0.0};
                for (int d = 0; d < 3; d++)
                    b[d] = r[10 + d] - (A[d][0] * mean[0] + A[d][1] * mean[1] + A[d][2] * mean[2]);
                double trace = A[0][0] + A[1][1] + A[2][2], frob = 0.0;
                for (int u = 0; u < 3; u++)
                    for (int w = 0; w < 3; w++)
                        frob += A[u][w] * A[u][w];
                if (trace > 0.0 && frob >= flat_ratio * trace * trace) {
                    int top = 0;
                    for (int d = 1; d < 3; d++)
                        if (A[d][d] > A[top][top])
                            top = d;
                    double v[3] = {A[top][0], A[top][1], A[top][2]};
                    for (int step = 0; step < 2; step++) {
                        double nv[3], len = 0.0;
                        for (int d = 0; d < 3; d++) {
                            nv[d] = A[d][0] * v[0] + A[d][1] * v[1] + A[d][2] * v[2];
                            len += nv[d] * nv[d];
                        }
                        len = sqrt(len);
                        for (int d = 0; d < 3; d++)
                            v[d] = nv[d] / len;
                    }
                    double Av[3], vAv = 0.0, vb = 0.0;
                    for (int d = 0; d < 3; d++) {
                        Av[d] = A[d][0] * v[0] + A[d][1] * v[1] + A[d][2] * v[2];
                    }
                    for (int d = 0; d < 3; d++) {
                        vAv += v[d] * Av[d];
                        vb += v[d] * b[d];
                    }
                    for (int d = 0; d < 3; d++)
                        y[d] = v[d] * (vb / vAv);
                } else if (trace > 0.0) {
                    double w[3], V[3][3];
                    symmetric_eigen(A, w, V);
                    double largest = fmax(fmax(w[0], w[1]), w[2]);
                    for (int c = 0; c < 3; c++) {
                        if (!(w[c] > cutoff * largest))
                            continue;
                        double along_c = (V[0][c] * b[0] + V[1][c] * b[1] + V[2][c] * b[2]) / w[c];
                        for (int d = 0; d < 3; d++)
                            y[d] += V[d][c] * along_c;
                    }
                }
                int inside = 1;
                for (int d = 0; d < 3; d++) {
                    double s = mean[d] + y[d], corner = (double)cc[3 * i + d];
                    inside &= s >= corner - margin && s <= corner + 1.0 + margin;
                }
                if (inside)
                    for (int d = 0; d < 3; d++)
                        x[d] = mean[d] + y[d];
            }
            o[3 * i] = x[0]; o[3 * i + 1] = x[1]; o[3 * i + 2] = x[2];
        }
        Py_END_ALLOW_THREADS
        free(acc);
    } else if (!PyErr_Occurred()) {
        PyErr_SetString(PyExc_ValueError, "place_vertices: buffer sizes do not match or a quad index is out of range");
    }
    PyBuffer_Release(&quads);
    PyBuffer_Release(&points);
    if (sharp)
        PyBuffer_Release(&normals);
    PyBuffer_Release(&corners);
    PyBuffer_Release(&out);
    if (!ok)
        return NULL;
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------------------------ */
/* Dual contouring: cut cells, quads, triangles                                          */
/* ------------------------------------------------------------------------------------ */

/* A field stored in 8^3 blocks: band blocks have a row of 512 values, other blocks of the
 * grid one value each, and nodes beyond the grid the outside value. */
typedef struct {
    const float *field;          /* (nb, 512) */
    const int32_t *nearest;      /* (nb, 512), may be NULL */
    const int64_t *slot;         /* (Cx Cy Cz,) row of each block, -1 outside the band */
    const float *block_value;    /* (Cx Cy Cz,) */
    float outside;
    Py_ssize_t cx, cy, cz;
} BlockField;

/* Position slot * 512 + local of node (i, j, k) in the band, -1 if its block is not a band
 * block or the node is beyond the grid; *value gets the node's value either way. */
static inline int64_t locate_node(const BlockField *g, int64_t i, int64_t j, int64_t k, float *value) {
    int64_t id = block_of(i, j, k, g->cx, g->cy, g->cz);
    if (id < 0) {
        *value = g->outside;
        return -1;
    }
    int64_t s = g->slot[id];
    if (s < 0) {
        *value = g->block_value[id];
        return -1;
    }
    int64_t at = band_position(s, i, j, k);
    *value = g->field[at];
    return at;
}

/* cell_codes(field, slot, block_value, outside, coarse, blocks, rows, out_code)
 *
 * For every cell of band blocks ``rows`` (its lower corner in the block), the sign code:
 * bit c set when corner c (offset (c>>2&1, c>>1&1, c&1)) is negative. out_code (nb, 512)
 * uint8 is written only for those blocks. blocks (nb, 3) int64: block coordinates. */
static PyObject *cell_codes(PyObject *self, PyObject *args) {
    Py_buffer field, slot, block_value, blocks, rows, out_code;
    float outside;
    Py_ssize_t cx, cy, cz;
    if (!PyArg_ParseTuple(args, "y*y*y*f(nnn)y*y*w*", &field, &slot, &block_value, &outside, &cx, &cy, &cz,
                          &blocks, &rows, &out_code))
        return NULL;
    Py_ssize_t nb = blocks.len / (3 * (Py_ssize_t)sizeof(int64_t));
    Py_ssize_t nr = rows.len / (Py_ssize_t)sizeof(int64_t);
    int ok = field.len == nb * BLOCK_NODES * (Py_ssize_t)sizeof(float) && out_code.len == nb * BLOCK_NODES
             && slot.len == cx * cy * cz * (Py_ssize_t)sizeof(int64_t) && block_value.len == cx * cy * cz * (Py_ssize_t)sizeof(float);
    const int64_t *row = rows.buf;
    for (Py_ssize_t r = 0; ok && r < nr; r++)
        ok = row[r] >= 0 && row[r] < nb;
    if (ok) {
        BlockField g = {field.buf, NULL, slot.buf, block_value.buf, outside, cx, cy, cz};
        const int64_t *bc = blocks.buf;
        uint8_t *code = out_code.buf;
        Py_BEGIN_ALLOW_THREADS
        uint8_t negative[9][9][9];
        for (Py_ssize_t r = 0; r < nr; r++) {
            int64_t b = row[r];
            const float *own = g.field + b * BLOCK_NODES;
            int64_t i0 = bc[3 * b] << BLOCK_SHIFT, j0 = bc[3 * b + 1] << BLOCK_SHIFT, k0 = bc[3 * b + 2] << BLOCK_SHIFT;
            for (int x = 0; x < 9; x++)
                for (int y = 0; y < 9; y++)
                    for (int z = 0; z < 9; z++) {
                        float v;
                        if (x < 8 && y < 8 && z < 8)
                            v = own[(x << 6) | (y << 3) | z];
                        else
                            locate_node(&g, i0 + x, j0 + y, k0 + z, &v);
                        negative[x][y][z] = v < 0.0f;
                    }
            uint8_t *out = code + b * BLOCK_NODES;
            for (int x = 0; x < 8; x++)
                for (int y = 0; y < 8; y++)
                    for (int z = 0; z < 8; z++)
                        out[(x << 6) | (y << 3) | z] = (uint8_t)(
                            negative[x][y][z] | negative[x][y][z + 1] << 1 | negative[x][y + 1][z] << 2
                            | negative[x][y + 1][z + 1] << 3 | negative[x + 1][y][z] << 4
                            | negative[x + 1][y][z + 1] << 5 | negative[x + 1][y + 1][z] << 6
                            | negative[x + 1][y + 1][z + 1] << 7);
        }
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&field);
    PyBuffer_Release(&slot);
    PyBuffer_Release(&block_value);
    PyBuffer_Release(&blocks);
    PyBuffer_Release(&rows);
    PyBuffer_Release(&out_code);
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "cell_codes: buffer sizes do not match or a row is out of range");
        return NULL;
    }
    Py_RETURN_NONE;
}

/* dual_quads(field, nearest, slot, block_value, outside, coarse, blocks, position, cell_code,
 *            first_vertex, patch, rings, out_quads, out_points, out_face_a, out_face_b)
 *
 * Every cut grid edge once, as one of the three edges at the top corner (7) of a cut cell:
 * axis by axis, cells in the order of ``position`` (band positions of the cut cells). For
 * each: the quad of the four cells' patch vertices around it (first_vertex[cell] +
 * patch[code][edge]), reversed when it would face from the positive end to the negative
 * one; the crossing (linear in the field, in grid index coordinates) and the nearest faces
 * of the edge's two end nodes. rings (3, 18) int64 per axis: lower corner, faces_minus,
 * 4 x (dx, dy, dz, edge). Outputs are sized by the caller (the count of cut edges).
 * Returns the number of quads written, or raises when a ring cell is not a cut cell of
 * the band (the band is too narrow). */
static PyObject *dual_quads(PyObject *self, PyObject *args) {
    Py_buffer field, nearest, slot, block_value, blocks, position, cell_code, first_vertex, patch, rings;
    Py_buffer out_quads, out_points, out_fa, out_fb;
    float outside;
    Py_ssize_t cx, cy, cz;
    if (!PyArg_ParseTuple(args, "y*y*y*y*f(nnn)y*y*y*y*y*y*w*w*w*w*", &field, &nearest, &slot, &block_value, &outside,
                          &cx, &cy, &cz, &blocks, &position, &cell_code, &first_vertex, &patch, &rings, &out_quads,
                          &out_points, &out_fa, &out_fb))
        return NULL;
    Py_ssize_t nb = blocks.len / (3 * (Py_ssize_t)sizeof(int64_t));
    Py_ssize_t k = position.len / (Py_ssize_t)sizeof(int64_t);
    Py_ssize_t capacity = out_quads.len / (4 * (Py_ssize_t)sizeof(int64_t));
    int ok = field.len == nb * BLOCK_NODES * (Py_ssize_t)sizeof(float) && nearest.len == nb * BLOCK_NODES * (Py_ssize_t)sizeof(int32_t)
             && cell_code.len == nb * BLOCK_NODES && first_vertex.len == nb * BLOCK_NODES * (Py_ssize_t)sizeof(int32_t)
             && slot.len == cx * cy * cz * (Py_ssize_t)sizeof(int64_t) && block_value.len == cx * cy * cz * (Py_ssize_t)sizeof(float)
             && patch.len == 256 * 12 && rings.len == 3 * 18 * (Py_ssize_t)sizeof(int64_t)
             && out_points.len == capacity * 3 * (Py_ssize_t)sizeof(double)
             && out_fa.len == capacity * (Py_ssize_t)sizeof(int32_t) && out_fb.len == out_fa.len;
    const int64_t *pos = position.buf;
    for (Py_ssize_t c = 0; ok && c < k; c++)
        ok = pos[c] >= 0 && pos[c] < nb * BLOCK_NODES;
    if (!ok)
        PyErr_SetString(PyExc_ValueError, "dual_quads: buffer sizes do not match or a position is out of range");
    Py_ssize_t written = 0;
    int narrow = 0, overflow = 0;
    if (ok) {
        BlockField g = {field.buf, nearest.buf, slot.buf, block_value.buf, outside, cx, cy, cz};
        const int64_t *bc = blocks.buf, *ring = rings.buf;
        const int32_t *first = first_vertex.buf;
        const uint8_t *codes = cell_code.buf;
        const int8_t *table = patch.buf;
        int64_t *quads = out_quads.buf;
        double *points = out_points.buf;
        int32_t *fa = out_fa.buf, *fb = out_fb.buf;
        Py_BEGIN_ALLOW_THREADS
        for (int axis = 0; axis < 3 && !narrow && !overflow; axis++) {
            const int64_t *r = ring + 18 * axis;
            int low = (int)r[0], faces_minus = (int)r[1];
            int64_t li = low >> 2 & 1, lj = low >> 1 & 1, lk = low & 1;
            for (Py_ssize_t c = 0; c < k; c++) {
                int64_t at = pos[c];
                int code = codes[at];
                int lo_neg = code >> low & 1;
                if (lo_neg == (code >> 7 & 1))
                    continue;
                if (written == capacity) {
                    overflow = 1;
                    break;
                }
                int64_t local = at & (BLOCK_NODES - 1), b = at >> 9;
                int64_t i = (bc[3 * b] << BLOCK_SHIFT) + (local >> 6);
                int64_t j = (bc[3 * b + 1] << BLOCK_SHIFT) + (local >> 3 & 7);
                int64_t kk = (bc[3 * b + 2] << BLOCK_SHIFT) + (local & 7);
                int64_t quad[4];
                for (int s = 0; s < 4; s++) {
                    const int64_t *o = r + 2 + 4 * s;
                    float unused;
                    int64_t other = locate_node(&g, i + o[0], j + o[1], kk + o[2], &unused);
                    int patch_of = other >= 0 ? table[12 * codes[other] + o[3]] : -1;
                    if (other < 0 || first[other] < 0 || patch_of < 0) {
                        narrow = 1;
                        break;
                    }
                    quad[s] = (int64_t)first[other] + patch_of;
                }
                if (narrow)
                    break;
                int flip = lo_neg == faces_minus;
                for (int s = 0; s < 4; s++)
                    quads[4 * written + s] = flip ? quad[3 - s] : quad[s];
                float va, vb;
                int64_t na = locate_node(&g, i + li, j + lj, kk + lk, &va);
                int64_t nb_ = locate_node(&g, i + 1, j + 1, kk + 1, &vb);
                double t = (double)va / ((double)va - (double)vb);
                points[3 * written] = (double)(i + li) + t * (double)(1 - li);
                points[3 * written + 1] = (double)(j + lj) + t * (double)(1 - lj);
                points[3 * written + 2] = (double)(kk + lk) + t * (double)(1 - lk);
                fa[written] = na >= 0 ? g.nearest[na] : -1;
                fb[written] = nb_ >= 0 ? g.nearest[nb_] : -1;
                written++;
            }
        }
        Py_END_ALLOW_THREADS
        if (narrow)
            PyErr_SetString(PyExc_RuntimeError,
                            "a cut edge has a neighbouring cell outside the band; the band is too narrow");
        else if (overflow)
            PyErr_SetString(PyExc_ValueError, "dual_quads: more cut edges than the outputs hold");
        ok = !narrow && !overflow;
    }
    Py_buffer *all[] = {&field, &nearest, &slot, &block_value, &blocks, &position, &cell_code, &first_vertex,
                        &patch, &rings, &out_quads, &out_points, &out_fa, &out_fb};
    for (size_t n = 0; n < sizeof(all) / sizeof(all[0]); n++)
        PyBuffer_Release(all[n]);
    if (!ok)
        return NULL;
    return PyLong_FromSsize_t(written);
}

/* exact_at_crossings(field, nearest, slot, coarse, blocks, vertices, faces, origin, h, eps)
 *     -> count
 *
 * In place on field (nb, 512) float32, as watertight._exact_at_crossings: a node off the
 * shell (|value| == eps exactly) with a 6-neighbour in the band that is on the shell and
 * of the other sign gets its distance to the nearest faces of those neighbours (the
 * smallest, never below eps), keeping its sign. All nodes are judged on the field as it
 * was before any of them changed. Walks the shell nodes (the few) and looks at their
 * neighbours. Returns the number of nodes changed. */

/* Whether the faces (m x 3) index n vertices, the nearest-face table (nodes) indexes the m faces
   (-1: none) and the coarse slots (ncoarse) index the nb band blocks (-1: none). */
static int band_indices_valid(const int64_t *fc, Py_ssize_t m, Py_ssize_t n, const int32_t *near, Py_ssize_t nodes,
                              const int64_t *slots, Py_ssize_t ncoarse, Py_ssize_t nb)
{
    for (Py_ssize_t i = 0; i < 3 * m; i++)
        if (fc[i] < 0 || fc[i] >= n)
            return 0;
    for (Py_ssize_t i = 0; i < nodes; i++)
        if (near[i] >= m)
            return 0;
    for (Py_ssize_t i = 0; i < ncoarse; i++)
        if (slots[i] >= nb)
            return 0;
    return 1;
}

static PyObject *exact_at_crossings(PyObject *self, PyObject *args) {
    Py_buffer field, nearest, slot, blocks, vertices, faces;
    double ox, oy, oz, h, eps;
    Py_ssize_t cx, cy, cz;
    if (!PyArg_ParseTuple(args, "w*y*y*(nnn)y*y*y*(ddd)dd", &field, &nearest, &slot, &cx, &cy, &cz, &blocks,
                          &vertices, &faces, &ox, &oy, &oz, &h, &eps))
        return NULL;
    Py_ssize_t nb = blocks.len / (3 * (Py_ssize_t)sizeof(int64_t));
    Py_ssize_t n = vertices.len / (3 * (Py_ssize_t)sizeof(double));
    Py_ssize_t m = faces.len / (3 * (Py_ssize_t)sizeof(int64_t));
    Py_ssize_t nodes = nb * BLOCK_NODES;
    int ok = field.len == nodes * (Py_ssize_t)sizeof(float) && nearest.len == nodes * (Py_ssize_t)sizeof(int32_t)
             && slot.len == cx * cy * cz * (Py_ssize_t)sizeof(int64_t);
    const int64_t *fc = faces.buf;
    const int32_t *near = nearest.buf;
    const int64_t *slots = slot.buf;
    ok = ok && band_indices_valid(fc, m, n, near, nodes, slots, cx * cy * cz, nb);
    float *best = NULL;
    if (ok && !(best = malloc(nodes * sizeof(float)))) {
        ok = 0;
        PyErr_NoMemory();
    }
    Py_ssize_t changed = 0;
    if (ok) {
        const int64_t *bc = blocks.buf;
        const double *vs = vertices.buf;
        float *f = field.buf;
        const float feps = (float)eps;
        static const int steps[6][3] = {{1, 0, 0}, {-1, 0, 0}, {0, 1, 0}, {0, -1, 0}, {0, 0, 1}, {0, 0, -1}};
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t at = 0; at < nodes; at++)
            best[at] = INFINITY;
        for (Py_ssize_t at = 0; at < nodes; at++) {
            float v = f[at];
            if (fabsf(v) == feps || near[at] < 0)
                continue;                                          /* off the shell */
            int64_t b = at >> 9, local = at & (BLOCK_NODES - 1);
            int64_t i = (bc[3 * b] << BLOCK_SHIFT) + (local >> 6);
            int64_t j = (bc[3 * b + 1] << BLOCK_SHIFT) + (local >> 3 & 7);
            int64_t k = (bc[3 * b + 2] << BLOCK_SHIFT) + (local & 7);
            int have = 0;
            Triangle t;
            for (int s = 0; s < 6; s++) {
                int64_t oi = i + steps[s][0], oj = j + steps[s][1], ok_ = k + steps[s][2];
                int64_t id = block_of(oi, oj, ok_, cx, cy, cz);
                if (id < 0 || slots[id] < 0)
                    continue;                                      /* only band nodes can be on the shell */
                int64_t other = band_position(slots[id], oi, oj, ok_);
                float w = f[other];
                if (fabsf(w) != feps || (v < 0.0f) == (w < 0.0f))
                    continue;
                if (!have) {
                    t = face_triangle(vs, fc, near[at]);
                    have = 1;
                }
                vec3 x = {ox + oi * h, oy + oj * h, oz + ok_ * h};
                float d = (float)fmax(sqrt(triangle_d2(x, &t)), eps);
                if (d < best[other])
                    best[other] = d;
            }
        }
        for (Py_ssize_t at = 0; at < nodes; at++) {
            if (best[at] != INFINITY) {
                f[at] = copysignf(best[at], f[at]);
                changed++;
            }
        }
        Py_END_ALLOW_THREADS
    } else if (!PyErr_Occurred()) {
        PyErr_SetString(PyExc_ValueError, "exact_at_crossings: buffer sizes do not match or an index is out of range");
    }
    free(best);
    Py_buffer *all[] = {&field, &nearest, &slot, &blocks, &vertices, &faces};
    for (size_t c = 0; c < sizeof(all) / sizeof(all[0]); c++)
        PyBuffer_Release(all[c]);
    if (!ok)
        return NULL;
    return PyLong_FromSsize_t(changed);
}

/* short_edge_ends(vertices, quads, min_length, out_mark) -> count
 *
 * out_mark (n,) uint8: 1 for every vertex at an end of a quad side or diagonal shorter than
 * min_length (as dual._short_edge_ends), else left as it is. Returns how many quads had one. */
static PyObject *short_edge_ends(PyObject *self, PyObject *args) {
    Py_buffer vertices, quads, out_mark;
    double min_length;
    if (!PyArg_ParseTuple(args, "y*y*dw*", &vertices, &quads, &min_length, &out_mark))
        return NULL;
    Py_ssize_t n = vertices.len / (3 * (Py_ssize_t)sizeof(double));
    Py_ssize_t q = quads.len / (4 * (Py_ssize_t)sizeof(int64_t));
    int ok = out_mark.len == n;
    const int64_t *qd = quads.buf;
    for (Py_ssize_t i = 0; ok && i < 4 * q; i++)
        ok = qd[i] >= 0 && qd[i] < n;
    Py_ssize_t hits = 0;
    if (ok) {
        static const int pairs[6][2] = {{0, 1}, {1, 2}, {2, 3}, {3, 0}, {0, 2}, {1, 3}};
        const double *v = vertices.buf, limit = min_length * min_length;
        uint8_t *mark = out_mark.buf;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t i = 0; i < q; i++) {
            const int64_t *c = qd + 4 * i;
            int hit = 0;
            for (int k = 0; k < 6; k++) {
                int64_t a = c[pairs[k][0]], b = c[pairs[k][1]];
                vec3 d = sub(v3(v + 3 * a), v3(v + 3 * b));
                if (dot(d, d) < limit) {
                    mark[a] = mark[b] = 1;
                    hit = 1;
                }
            }
            hits += hit;
        }
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&vertices);
    PyBuffer_Release(&quads);
    PyBuffer_Release(&out_mark);
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "short_edge_ends: buffer sizes do not match or a quad index is out of range");
        return NULL;
    }
    return PyLong_FromSsize_t(hits);
}

/* split_quads(vertices, quads, tie, out)
 *
 * Two triangles per quad (q, 4) int64, cut along the shorter diagonal; diagonals whose
 * squared lengths differ by at most ``tie`` of the longer count as equal and then the
 * diagonal at the lowest vertex index is cut. out (2q, 3) int64: first triangles of all
 * quads, then the second ones (as dual._split_quads). */
static PyObject *split_quads(PyObject *self, PyObject *args) {
    Py_buffer vertices, quads, out;
    double tie;
    if (!PyArg_ParseTuple(args, "y*y*dw*", &vertices, &quads, &tie, &out))
        return NULL;
    Py_ssize_t n = vertices.len / (3 * (Py_ssize_t)sizeof(double));
    Py_ssize_t q = quads.len / (4 * (Py_ssize_t)sizeof(int64_t));
    int ok = out.len == q * 6 * (Py_ssize_t)sizeof(int64_t);
    const int64_t *qd = quads.buf;
    for (Py_ssize_t i = 0; ok && i < 4 * q; i++)
        ok = qd[i] >= 0 && qd[i] < n;
    if (ok) {
        const double *v = vertices.buf;
        int64_t *first = out.buf, *second = (int64_t *)out.buf + 3 * q;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t i = 0; i < q; i++) {
            const int64_t *c = qd + 4 * i;
            vec3 d02 = sub(v3(v + 3 * c[0]), v3(v + 3 * c[2])), d13 = sub(v3(v + 3 * c[1]), v3(v + 3 * c[3]));
            double l02 = dot(d02, d02), l13 = dot(d13, d13);
            int cut02 = fabs(l02 - l13) <= tie * fmax(l02, l13)
                            ? (c[0] < c[2] ? c[0] : c[2]) < (c[1] < c[3] ? c[1] : c[3])
                            : l02 < l13;
            int s = cut02 ? 0 : 1;                      /* rotate so the cut runs 0-2 */
            int64_t r0 = c[s], r1 = c[(s + 1) & 3], r2 = c[(s + 2) & 3], r3 = c[(s + 3) & 3];
            first[3 * i] = r0; first[3 * i + 1] = r1; first[3 * i + 2] = r2;
            second[3 * i] = r0; second[3 * i + 1] = r2; second[3 * i + 2] = r3;
        }
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&vertices);
    PyBuffer_Release(&quads);
    PyBuffer_Release(&out);
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "split_quads: buffer sizes do not match or a quad index is out of range");
        return NULL;
    }
    Py_RETURN_NONE;
}

/* halfedge_links(src, dst, n_vertices, out_edge_of, out_twin) -> edges
 *
 * Undirected edges of half-edges src[i] -> dst[i] (int64, indices below n_vertices):
 * out_edge_of (h,) int64 numbers them in (min, max) order, as np.unique of the packed keys
 * would (a bucket per smaller end, sorted by the larger); out_twin (h,) int64 is the other
 * half-edge of an edge run once each way, -1 on an edge with one half-edge, -2 on an edge
 * with three or more or two the same way. Returns the number of edges. */
static int compare_int64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static PyObject *halfedge_links(PyObject *self, PyObject *args) {
    Py_buffer src, dst, out_edge_of, out_twin;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "y*y*nw*w*", &src, &dst, &n, &out_edge_of, &out_twin))
        return NULL;
    Py_ssize_t h = src.len / (Py_ssize_t)sizeof(int64_t);
    const int64_t *s = src.buf, *d = dst.buf;
    int ok = n >= 0 && dst.len == src.len && out_edge_of.len == src.len && out_twin.len == src.len;
    for (Py_ssize_t i = 0; ok && i < h; i++)
        ok = s[i] >= 0 && s[i] < n && d[i] >= 0 && d[i] < n;
    int64_t *start = NULL, *slot = NULL;
    if (ok) {
        start = calloc((size_t)n + 1, sizeof(int64_t));
        slot = malloc(((size_t)h + 1) * sizeof(int64_t));
        if (!start || !slot) {
            free(start);
            free(slot);
            PyBuffer_Release(&src);
            PyBuffer_Release(&dst);
            PyBuffer_Release(&out_edge_of);
            PyBuffer_Release(&out_twin);
            return PyErr_NoMemory();
        }
    }
    Py_ssize_t edges = 0;
    if (ok) {
        int64_t *edge_of = out_edge_of.buf, *twin = out_twin.buf;
        Py_BEGIN_ALLOW_THREADS
        /* Bucket the half-edges by their smaller end (a counting sort). */
        for (Py_ssize_t i = 0; i < h; i++)
            start[(s[i] < d[i] ? s[i] : d[i]) + 1]++;
        for (Py_ssize_t v = 0; v < n; v++)
            start[v + 1] += start[v];
        for (Py_ssize_t i = 0; i < h; i++) {
            int64_t lo = s[i] < d[i] ? s[i] : d[i];
            slot[start[lo]++] = i;
        }
        for (Py_ssize_t v = n; v > 0; v--)
            start[v] = start[v - 1];
        start[0] = 0;
        /* In each bucket, order by the larger end (key hi * h + i keeps it stable), then
         * number the runs of equal ends. */
        for (Py_ssize_t v = 0; v < n; v++) {
            int64_t a = start[v], b = start[v + 1];
            for (int64_t j = a; j < b; j++) {
                int64_t i = slot[j];
                slot[j] = (s[i] > d[i] ? s[i] : d[i]) * (int64_t)h + i;
            }
            if (b - a > 16) {
                qsort(slot + a, (size_t)(b - a), sizeof(int64_t), compare_int64);
            } else {
                for (int64_t j = a + 1; j < b; j++) {
                    int64_t key = slot[j], k = j - 1;
                    while (k >= a && slot[k] > key) {
                        slot[k + 1] = slot[k];
                        k--;
                    }
                    slot[k + 1] = key;
                }
            }
            for (int64_t j = a; j < b;) {
                int64_t hi = slot[j] / (int64_t)h, k = j;
                while (k < b && slot[k] / (int64_t)h == hi)
                    k++;
                int64_t first = slot[j] % (int64_t)h;
                for (int64_t m = j; m < k; m++)
                    edge_of[slot[m] % (int64_t)h] = edges;
                if (k - j == 1) {
                    twin[first] = -1;
                } else {
                    int64_t second = slot[j + 1] % (int64_t)h;
                    int paired = k - j == 2 && s[first] == d[second];
                    for (int64_t m = j; m < k; m++)
                        twin[slot[m] % (int64_t)h] = -2;
                    if (paired) {
                        twin[first] = second;
                        twin[second] = first;
                    }
                }
                edges++;
                j = k;
            }
        }
        Py_END_ALLOW_THREADS
    }
    free(start);
    free(slot);
    PyBuffer_Release(&src);
    PyBuffer_Release(&dst);
    PyBuffer_Release(&out_edge_of);
    PyBuffer_Release(&out_twin);
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "halfedge_links: buffer sizes do not match or an index is out of range");
        return NULL;
    }
    return PyLong_FromSsize_t(edges);
}

/* ------------------------------------------------------------------------------------ */
/* Open sheets: the slab around a sheet pulled onto it (backend.mesh.remesh.sheets)        */
/* ------------------------------------------------------------------------------------ */

/* sheet_steps(vertices, field, nearest, sheet, slot, coarse, shape, input_vertices, faces, offset, snap, tie,
 *             out_step, out_movable) -> count
 *
 * vertices (n, 3) float64: the mesher's vertices in grid index units; field, nearest, sheet
 * (nb * 512,) float32, int32 (-1 off the shell), uint8 (1: signed as a sheet); slot, coarse:
 * the band blocks; shape (nx, ny, nz): the grid's nodes; input_vertices (v, 3) float64 in grid
 * index units, faces (m, 3) int64. A vertex whose cell (its floor, clipped into the grid) has
 * all 8 corners in the band and more negative sheet corners than other negative ones, and
 * whose nearest point c on its corners' nearest faces (distances within a fraction tie of the
 * least are tied: the lower face) is farther than
 * offset, gets out_step = c + offset (x - c) / |x - c| - x and out_movable = 1; any other
 * vertex of such a cell whose c is within snap (> 0) gets out_step = c - x and out_movable = 1;
 * the others are left as they are (as sheets._sheet_steps). Returns how many were movable. */
static PyObject *sheet_steps(PyObject *self, PyObject *args) {
    Py_buffer vertices, field, nearest, sheet, slot, input_vertices, faces, out_step, out_movable;
    Py_ssize_t cx, cy, cz, nx, ny, nz;
    double offset, snap, tie;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*(nnn)(nnn)y*y*dddw*w*", &vertices, &field, &nearest, &sheet, &slot, &cx,
                          &cy, &cz, &nx, &ny, &nz, &input_vertices, &faces, &offset, &snap, &tie, &out_step,
                          &out_movable))
        return NULL;
    Py_ssize_t n = vertices.len / (3 * (Py_ssize_t)sizeof(double));
    Py_ssize_t nodes = field.len / (Py_ssize_t)sizeof(float);
    Py_ssize_t nv = input_vertices.len / (3 * (Py_ssize_t)sizeof(double));
    Py_ssize_t m = faces.len / (3 * (Py_ssize_t)sizeof(int64_t));
    int ok = nodes % BLOCK_NODES == 0 && nearest.len == nodes * (Py_ssize_t)sizeof(int32_t) && sheet.len == nodes
             && slot.len == cx * cy * cz * (Py_ssize_t)sizeof(int64_t) && out_step.len == vertices.len
             && out_movable.len == n && nx >= 2 && ny >= 2 && nz >= 2
             && nx <= cx * 8 && ny <= cy * 8 && nz <= cz * 8;
    const int64_t *fc = faces.buf;
    const int32_t *near = nearest.buf;
    const int64_t *slots = slot.buf;
    ok = ok && band_indices_valid(fc, m, nv, near, nodes, slots, cx * cy * cz, nodes / BLOCK_NODES);
    Py_ssize_t count = 0;
    if (ok) {
        const double *x = vertices.buf, *vs = input_vertices.buf;
        const float *f = field.buf;
        const uint8_t *flag = sheet.buf;
        double *step = out_step.buf;
        uint8_t *movable = out_movable.buf;
        const int64_t limit[3] = {nx - 2, ny - 2, nz - 2};
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t i = 0; i < n; i++) {
            vec3 p = v3(x + 3 * i);
            int64_t cell[3];
            for (int a = 0; a < 3; a++) {
                double lo = floor(x[3 * i + a]);
                cell[a] = lo < 0.0 ? 0 : (lo > (double)limit[a] ? limit[a] : (int64_t)lo);
            }
            int sheets = 0, others = 0, in_band = 1;
            int32_t face[8];
            for (int c = 0; c < 8; c++) {
                int64_t ci = cell[0] + (c >> 2 & 1), cj = cell[1] + (c >> 1 & 1), ck = cell[2] + (c & 1);
                int64_t id = block_of(ci, cj, ck, cx, cy, cz);
                if (id < 0 || slots[id] < 0) {
                    in_band = 0;
                    break;
                }
                int64_t at = band_position(slots[id], ci, cj, ck);
                if (f[at] < 0.0f) {
                    if (flag[at])
                        sheets++;
                    else
                        others++;
                }
                face[c] = near[at];
            }
            int is_sheet = sheets > others;
            if (!in_band || (!is_sheet && !(snap > 0.0)))
                continue;
            vec3 offsets[8];
            double gaps[8], least = INFINITY;
            for (int c = 0; c < 8; c++) {
                gaps[c] = INFINITY;
                if (face[c] < 0)
                    continue;
                Triangle t = face_triangle(vs, fc, face[c]);
                offsets[c] = triangle_offset(p, &t);
                gaps[c] = sqrt(dot(offsets[c], offsets[c]));
                least = fmin(least, gaps[c]);
            }
            int32_t best_face = -1;
            vec3 away = {0.0, 0.0, 0.0};
            double d = INFINITY;
            for (int c = 0; c < 8; c++) {
                if (face[c] >= 0 && gaps[c] <= least * (1.0 + tie) && (best_face < 0 || face[c] < best_face)) {
                    best_face = face[c];
                    away = offsets[c];
                    d = gaps[c];
                }
            }
            if (best_face < 0 || (is_sheet ? !(d > offset) : !(d > 0.0 && d <= snap)))
                continue;
            /* x - away is the nearest point c; c + offset away / d - x = away (offset / d - 1);
             * onto c: -away. */
            vec3 s = is_sheet ? scale(away, offset / d - 1.0) : scale(away, -1.0);
            step[3 * i] = s.x; step[3 * i + 1] = s.y; step[3 * i + 2] = s.z;
            movable[i] = 1;
            count++;
        }
        Py_END_ALLOW_THREADS
    }
    Py_buffer *all[] = {&vertices, &field, &nearest, &sheet, &slot, &input_vertices, &faces, &out_step, &out_movable};
    for (size_t c = 0; c < sizeof(all) / sizeof(all[0]); c++)
        PyBuffer_Release(all[c]);
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "sheet_steps: buffer sizes do not match or an index is out of range");
        return NULL;
    }
    return PyLong_FromSsize_t(count);
}

/* turned_over(before, after, triangles, out_mark, min_area) -> count
 *
 * before, after (n, 3) float64: two positions of the same vertices; triangles (t, 3) int64.
 * out_mark (t,) uint8: 1 where the triangle's area after, seen along its normal n before, is at
 * most min_area (turned over: <= 0; or shrunk to a sliver) and n is not zero (as
 * sheets._turned_over), else 0. */
static PyObject *turned_over(PyObject *self, PyObject *args) {
    Py_buffer before, after, triangles, out_mark;
    double min_area;
    if (!PyArg_ParseTuple(args, "y*y*y*w*d", &before, &after, &triangles, &out_mark, &min_area))
        return NULL;
    Py_ssize_t n = before.len / (3 * (Py_ssize_t)sizeof(double));
    Py_ssize_t t = triangles.len / (3 * (Py_ssize_t)sizeof(int64_t));
    int ok = after.len == before.len && out_mark.len == t;
    const int64_t *tri = triangles.buf;
    for (Py_ssize_t i = 0; ok && i < 3 * t; i++)
        ok = tri[i] >= 0 && tri[i] < n;
    Py_ssize_t count = 0;
    if (ok) {
        const double *b = before.buf, *a = after.buf;
        uint8_t *mark = out_mark.buf;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t i = 0; i < t; i++) {
            const int64_t *c = tri + 3 * i;
            vec3 b0 = v3(b + 3 * c[0]), a0 = v3(a + 3 * c[0]);
            vec3 nb = cross(sub(v3(b + 3 * c[1]), b0), sub(v3(b + 3 * c[2]), b0));
            vec3 na = cross(sub(v3(a + 3 * c[1]), a0), sub(v3(a + 3 * c[2]), a0));
            double nb2 = dot(nb, nb);
            mark[i] = nb2 > 0.0 && dot(na, nb) <= 2.0 * min_area * sqrt(nb2);
            count += mark[i];
        }
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&before);
    PyBuffer_Release(&after);
    PyBuffer_Release(&triangles);
    PyBuffer_Release(&out_mark);
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "turned_over: buffer sizes do not match or a vertex index is out of range");
        return NULL;
    }
    return PyLong_FromSsize_t(count);
}

/* ------------------------------------------------------------------------------------ */
/* Closest points among candidate faces (backend.mesh.retopo.artist._Surface)               */
/* ------------------------------------------------------------------------------------ */

/* closest_of_candidates(points, candidates, vertices, faces, out_points, out_face)
 *
 * points (p, 3) float64; candidates (p, k) int64: face ids to try for each point;
 * vertices (n, 3) float64, faces (m, 3) int64. out_points (p, 3) float64 gets the closest
 * point on the nearest candidate, out_face (p,) int64 that face (the first of equals, as
 * numpy's argmin). */
static PyObject *closest_of_candidates(PyObject *self, PyObject *args) {
    Py_buffer points, candidates, vertices, faces, out_points, out_face;
    if (!PyArg_ParseTuple(args, "y*y*y*y*w*w*", &points, &candidates, &vertices, &faces, &out_points, &out_face))
        return NULL;
    Py_ssize_t p = points.len / (3 * (Py_ssize_t)sizeof(double));
    Py_ssize_t n = vertices.len / (3 * (Py_ssize_t)sizeof(double));
    Py_ssize_t m = faces.len / (3 * (Py_ssize_t)sizeof(int64_t));
    Py_ssize_t k = p > 0 ? candidates.len / (p * (Py_ssize_t)sizeof(int64_t)) : 0;
    int ok = (p == 0 || (k > 0 && candidates.len == p * k * (Py_ssize_t)sizeof(int64_t)))
        && out_points.len == points.len && out_face.len == p * (Py_ssize_t)sizeof(int64_t);
    const int64_t *fc = faces.buf, *cand = candidates.buf;
    for (Py_ssize_t i = 0; ok && i < 3 * m; i++)
        ok = fc[i] >= 0 && fc[i] < n;
    for (Py_ssize_t i = 0; ok && i < p * k; i++)
        ok = cand[i] >= 0 && cand[i] < m;
    if (ok) {
        const double *pt = points.buf, *vs = vertices.buf;
        double *o = out_points.buf;
        int64_t *of = out_face.buf;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t i = 0; i < p; i++) {
            vec3 x = v3(pt + 3 * i), best_offset = {0.0, 0.0, 0.0};
            double best = INFINITY;
            int64_t best_face = cand[i * k];
            for (Py_ssize_t j = 0; j < k; j++) {
                int64_t f = cand[i * k + j];
                Triangle t = face_triangle(vs, fc, f);
                vec3 offset = triangle_offset(x, &t);
                double d2 = dot(offset, offset);
                if (d2 < best) {
                    best = d2;
                    best_offset = offset;
                    best_face = f;
                }
            }
            vec3 near = sub(x, best_offset);
            o[3 * i] = near.x; o[3 * i + 1] = near.y; o[3 * i + 2] = near.z;
            of[i] = best_face;
        }
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&points);
    PyBuffer_Release(&candidates);
    PyBuffer_Release(&vertices);
    PyBuffer_Release(&faces);
    PyBuffer_Release(&out_points);
    PyBuffer_Release(&out_face);
    if (!ok) {
        PyErr_SetString(PyExc_ValueError,
                        "closest_of_candidates: buffer sizes do not match or a face or vertex index is out of range");
        return NULL;
    }
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------------------------ */
/* Fewer poles: edge rotations and diagonal collapses (backend.mesh.retopo.poles)           */
/* ------------------------------------------------------------------------------------ */

/* The same search as poles._Rewiring, step for step: faces are visited in the same order
 * (the queue, and every set the Python walks, in ascending face id), so both give the same
 * layout. Faces around a vertex are kept as sorted arrays. */

#define POLE_MAX_DEPTH 8
#define POLE_CHANGED (6 * (POLE_MAX_DEPTH + 1) + 3)

typedef struct {
    int64_t n, k;
    double *v;                  /* (n, 3), the merged vertex of a collapse moves */
    int64_t *p;                 /* (k, 4), -1 corners: a triangle's last, every one of a removed face */
    const uint8_t *special, *frozen, *border;
    const int64_t *lock_start, *lock_to;          /* locked neighbours of each vertex */
    const int64_t *ideal_start, *ideal_key, *ideal_value;  /* sector ideals by bounding neighbour */
    int64_t **around;           /* faces around each vertex, ascending */
    int64_t *alen, *acap;
    uint8_t *touched;
    int64_t *stamp, stamp_now;  /* scratch marks for vertex sets */
    int64_t *ring_buf;          /* scratch list of vertices (n) */
    double min_cosine;          /* a new face's normal against the replaced ones' at least this */
    int64_t rotations, collapses;
    int floor, failed;
} Rewire;

typedef struct {
    int gain, strict;           /* strict: its edge passed the prune of a search without zero-cost moves */
    int64_t g, quads[2][4], ring[6];
} Rotation;

static inline int face_size(const Rewire *r, int64_t f) {
    const int64_t *c = r->p + 4 * f;
    return c[0] < 0 ? 0 : (c[3] < 0 ? 3 : 4);
}

static inline int corner_of(const Rewire *r, int64_t f, int64_t x) {
    const int64_t *c = r->p + 4 * f;
    for (int i = 0; i < 4; i++)
        if (c[i] == x)
            return i;
    return -1;
}

static void around_add(Rewire *r, int64_t x, int64_t f) {
    if (r->alen[x] == r->acap[x]) {
        int64_t cap = r->acap[x] ? 2 * r->acap[x] : 8;
        int64_t *grown = realloc(r->around[x], (size_t)cap * sizeof(int64_t));
        if (!grown) {
            r->failed = 1;
            return;
        }
        r->around[x] = grown;
        r->acap[x] = cap;
    }
    int64_t *a = r->around[x], i = r->alen[x];
    while (i > 0 && a[i - 1] > f) {
        a[i] = a[i - 1];
        i--;
    }
    if (i > 0 && a[i - 1] == f) {               /* already there: undo the shift */
        memmove(a + i, a + i + 1, (size_t)(r->alen[x] - i) * sizeof(int64_t));
        return;
    }
    a[i] = f;
    r->alen[x]++;
}

static void around_remove(Rewire *r, int64_t x, int64_t f) {
    int64_t *a = r->around[x];
    for (int64_t i = 0; i < r->alen[x]; i++)
        if (a[i] == f) {
            memmove(a + i, a + i + 1, (size_t)(r->alen[x] - i - 1) * sizeof(int64_t));
            r->alen[x]--;
            return;
        }
}

/* Faces around both a and b other than f: how many, and the first (ascending). The faces around
 * the one with fewer, in order, that have the other as a corner (four comparisons each: faster
 * than merging the two lists, whose branches the processor cannot predict). */
static int shared_faces(const Rewire *r, int64_t a, int64_t b, int64_t f, int64_t *first) {
    if (r->alen[b] < r->alen[a]) {
        int64_t t = a;
        a = b;
        b = t;
    }
    const int64_t *s = r->around[a];
    int count = 0;
    for (int64_t i = 0; i < r->alen[a]; i++) {
        const int64_t h = s[i], *c = r->p + 4 * h;
        if (h != f && (c[0] == b) + (c[1] == b) + (c[2] == b) + (c[3] == b) && count++ == 0)
            *first = h;
    }
    return count;
}

static inline int is_locked(const Rewire *r, int64_t a, int64_t b) {
    if (!r->special[a])
        return 0;
    for (int64_t i = r->lock_start[a]; i < r->lock_start[a + 1]; i++)
        if (r->lock_to[i] == b)
            return 1;
    return 0;
}

static inline int64_t sector_ideal(const Rewire *r, int64_t x, int64_t key) {
    for (int64_t i = r->ideal_start[x]; i < r->ideal_start[x + 1]; i++)
        if (r->ideal_key[i] == key)
            return r->ideal_value[i];
    return 4;
}

/* The sector of x that face g lies in (poles._Rewiring.sector): the neighbour bounding it
 * (walking on from g's corner after x; -2 all the way round, -1 a free vertex) and its faces
 * (counted up to 64: a border or crease vertex with more is past any ideal anyway). */
static void sector(const Rewire *r, int64_t x, int64_t g, int64_t *key, int64_t *count) {
    if (!r->special[x]) {
        *key = -1;
        *count = r->alen[x];
        return;
    }
    int64_t members[64], m = 1, found = INT64_MIN;
    members[0] = g;
    int whole = 0;
    for (int step = 1; step >= -1 && !whole; step -= 2) {
        int64_t h = g;
        for (int64_t guard = 0; guard <= r->alen[x]; guard++) {
            int size = face_size(r, h), i = corner_of(r, h, x);
            int64_t y = r->p[4 * h + (i + step + size) % size], next = -1;
            if (is_locked(r, x, y) || shared_faces(r, x, y, h, &next) != 1) {
                if (found == INT64_MIN)
                    found = y;
                break;
            }
            h = next;
            if (h == g) {
                whole = 1;
                break;
            }
            int seen = 0;
            for (int64_t j = 0; j < m; j++)
                seen |= members[j] == h;
            if (!seen && m < 64)
                members[m++] = h;
        }
    }
    *key = whole ? -2 : found;
    *count = m;
}

/* x's excess in the sector holding its face g: faces there less the ideal. */
static int64_t excess_now(const Rewire *r, int64_t x, int64_t g) {
    if (!r->special[x])
        return r->alen[x] - 4;
    int64_t key, count;
    sector(r, x, g, &key, &count);
    return count - sector_ideal(r, x, key);
}

/* How x's excess changes when the sector holding its face g gains delta faces. */
static inline int change_from(int64_t now, int delta) { return (int)(delta * (2 * now + delta)); }

static int excess_change(const Rewire *r, int64_t x, int delta, int64_t g) {
    return change_from(excess_now(r, x, g), delta);
}

static int is_off(const Rewire *r, int64_t x) {
    if (!r->special[x])
        return r->alen[x] != 4;
    for (int64_t i = 0; i < r->alen[x]; i++) {
        int64_t key, count;
        sector(r, x, r->around[x][i], &key, &count);
        if (count != sector_ideal(r, x, key))
            return 1;
    }
    return 0;
}

static inline int can_lose(const Rewire *r, int64_t x) { return r->border[x] || r->alen[x] > 3; }

/* Unit normal of a face given by corner indices (a quad's from its diagonals), with one vertex
 * optionally standing in at another place: as poles._normal. */
static vec3 unit_or_zero(vec3 n) {
    double length = sqrt(n.x * n.x + n.y * n.y + n.z * n.z);
    if (length < 1e-300)
        length = 1e-300;
    vec3 u = {n.x / length, n.y / length, n.z / length};
    return u;
}

static vec3 corners_normal(const Rewire *r, const int64_t *c, int size, int64_t moved_a, int64_t moved_b,
                           const double *moved_to) {
    vec3 pt[4];
    for (int i = 0; i < size; i++)
        pt[i] = (c[i] == moved_a || c[i] == moved_b) && moved_to ? v3(moved_to) : v3(r->v + 3 * c[i]);
    vec3 u, w;
    if (size == 4) {
        u = sub(pt[2], pt[0]);
        w = sub(pt[3], pt[1]);
    } else {
        u = sub(pt[1], pt[0]);
        w = sub(pt[2], pt[0]);
    }
    vec3 n = {u.y * w.z - u.z * w.y, u.z * w.x - u.x * w.z, u.x * w.y - u.y * w.x};
    return unit_or_zero(n);
}

static int64_t next_stamp(Rewire *r) { return ++r->stamp_now; }

/* Appends the corners of the faces around y not yet marked to list; returns the new count. */
static int64_t add_ring(Rewire *r, int64_t y, int64_t mark, int64_t *list, int64_t count) {
    for (int64_t j = 0; j < r->alen[y]; j++) {
        int64_t h = r->around[y][j];
        int size = face_size(r, h);
        for (int c = 0; c < size; c++) {
            int64_t z = r->p[4 * h + c];
            if (r->stamp[z] != mark) {
                r->stamp[z] = mark;
                list[count++] = z;
            }
        }
    }
    return count;
}

/* Whether a pole of quad f has one of the other kind within two rings (poles._Rewiring._has_partner). */
static int has_partner(Rewire *r, int64_t f) {
    for (int i = 0; i < 4; i++) {
        int64_t x = r->p[4 * f + i];
        if (r->frozen[x] || !is_off(r, x))
            continue;
        int over = r->special[x] ? -1 : r->alen[x] > 4;
        int64_t mark = next_stamp(r), *list = r->ring_buf;
        r->stamp[x] = mark;                          /* x itself is not its own partner */
        int64_t count = add_ring(r, x, mark, list, 0), first = count;
        for (int64_t s = 0; s < first; s++)
            count = add_ring(r, list[s], mark, list, count);
        for (int64_t s = 0; s < count; s++) {
            int64_t y = list[s];
            if (r->frozen[y] || !is_off(r, y))
                continue;
            if (over < 0 || r->special[y] || (r->alen[y] > 4) != over)
                return 1;
        }
    }
    return 0;
}

/* Merging c into a keeps the mesh manifold and folds no face (poles._Rewiring._can_merge). */
static int can_merge(Rewire *r, int64_t f, int64_t a, int64_t c) {
    int64_t common = -1;
    if (shared_faces(r, a, c, -1, &common) != 1 || common != f)
        return 0;
    int64_t mark = next_stamp(r);
    add_ring(r, a, mark, r->ring_buf, 0);
    const int64_t *q = r->p + 4 * f;
    for (int64_t j = 0; j < r->alen[c]; j++) {
        int64_t h = r->around[c][j];
        int size = face_size(r, h);
        for (int i = 0; i < size; i++) {
            int64_t z = r->p[4 * h + i];
            if (r->stamp[z] == mark && z != q[0] && z != q[1] && z != q[2] && z != q[3])
                return 0;
        }
    }
    double mid[3];
    for (int i = 0; i < 3; i++)
        mid[i] = r->special[a] ? r->v[3 * a + i] : (r->v[3 * a + i] + r->v[3 * c + i]) / 2.0;
    for (int side = 0; side < 2; side++) {
        int64_t x = side ? c : a;
        for (int64_t j = 0; j < r->alen[x]; j++) {
            int64_t h = r->around[x][j];
            if (h == f)
                continue;
            int size = face_size(r, h);
            vec3 before = corners_normal(r, r->p + 4 * h, size, -1, -1, NULL);
            vec3 after = corners_normal(r, r->p + 4 * h, size, a, c, mid);
            if (dot(before, after) < r->min_cosine)
                return 0;
        }
    }
    return 1;
}

/* The best diagonal collapse of quad f, applied; writes the vertices it changed (3) to changed
 * and returns how many, 0 when none lowers the excess (poles._Rewiring._collapse_best). */
static int collapse_best(Rewire *r, int64_t f, int64_t *changed) {
    int64_t q[4];
    memcpy(q, r->p + 4 * f, sizeof q);
    for (int i = 0; i < 4; i++)
        if (r->frozen[q[i]] || is_locked(r, q[i], q[(i + 1) % 4]))
            return 0;
    int have = 0, best_gain = 0;
    int64_t best_a = -1, best_c = -1;
    for (int k = 0; k < 2; k++) {
        int64_t a = q[k], b = q[k + 1], c = q[(k + 2) % 4], d = q[(k + 3) % 4];
        if (r->special[a] && r->special[c])
            continue;
        if (r->special[c]) {                          /* the free vertex merges into the fixed one */
            int64_t t = a;
            a = c;
            c = t;
        }
        if (!(can_lose(r, b) && can_lose(r, d)))
            continue;
        int64_t key, count;
        sector(r, a, f, &key, &count);
        int64_t ideal = sector_ideal(r, a, key), merged = count + r->alen[c] - 2 - ideal;
        int64_t gain = merged * merged - (count - ideal) * (count - ideal) - (r->alen[c] - 4) * (r->alen[c] - 4)
                       + excess_change(r, b, -1, f) + excess_change(r, d, -1, f);
        if (gain < 0 && (!have || gain < best_gain) && can_merge(r, f, a, c)) {
            have = 1;
            best_gain = (int)gain;
            best_a = a;
            best_c = c;
        }
    }
    if (!have)
        return 0;
    int64_t a = best_a, c = best_c, rest[2], m = 0;
    for (int i = 0; i < 4; i++)
        if (q[i] != a && q[i] != c)
            rest[m++] = q[i];
    for (int i = 0; i < 4; i++)
        around_remove(r, q[i], f);
    for (int i = 0; i < 4; i++)
        r->p[4 * f + i] = -1;
    if (!r->special[a])
        for (int i = 0; i < 3; i++)
            r->v[3 * a + i] = (r->v[3 * a + i] + r->v[3 * c + i]) / 2.0;
    for (int64_t j = 0; j < r->alen[c]; j++) {
        int64_t h = r->around[c][j];
        for (int i = 0; i < 4; i++)
            if (r->p[4 * h + i] == c)
                r->p[4 * h + i] = a;
        around_add(r, a, h);
    }
    r->alen[c] = 0;
    r->collapses++;
    changed[0] = a;
    changed[1] = rest[0];
    changed[2] = rest[1];
    for (int i = 0; i < 3; i++)
        r->touched[changed[i]] = 1;
    return 3;
}

static int faces_agree(const Rewire *r, const int64_t *q1, const int64_t *q2, const int64_t new_quads[2][4]) {
    vec3 n1 = corners_normal(r, q1, 4, -1, -1, NULL), n2 = corners_normal(r, q2, 4, -1, -1, NULL);
    vec3 reference = unit_or_zero(add(n1, n2));
    for (int i = 0; i < 2; i++)
        if (dot(corners_normal(r, new_quads[i], 4, -1, -1, NULL), reference) < r->min_cosine)
            return 0;
    return 1;
}

/* Rotations of the edges of quad f that lower the excess (or keep it, with allow_zero), in
 * the Python's order; returns how many were written to out (at most 8). */
static int rotations_of(const Rewire *r, int64_t f, int allow_zero, Rotation *out) {
    const int64_t *q = r->p + 4 * f;
    int found = 0;
    /* The corners' excesses in their sectors holding f, each found once (a corner is an end of
     * two of the edges and across the hexagon from two more). */
    int64_t now[4];
    int known[4] = {0, 0, 0, 0};
#define CORNER_NOW(i) (known[i] ? now[i] : (known[i] = 1, now[i] = excess_now(r, q[i], f)))
    for (int k = 0; k < 4; k++) {
        int64_t a = q[k], b = q[(k + 1) % 4];
        if (r->frozen[a] || r->frozen[b] || is_locked(r, a, b) || !(can_lose(r, a) && can_lose(r, b)))
            continue;
        int lose = change_from(CORNER_NOW(k), -1) + change_from(CORNER_NOW((k + 1) % 4), -1);
        if (lose + 2 * r->floor > (allow_zero ? 0 : -1))
            continue;                                 /* no pair of gainers could make up for it */
        int strict = lose + 2 * r->floor <= -1;
        int64_t g = -1;
        if (shared_faces(r, a, b, f, &g) != 1 || face_size(r, g) != 4)
            continue;
        const int64_t *other = r->p + 4 * g;
        int j = corner_of(r, g, b);
        if (other[(j + 1) % 4] != a)                  /* inconsistent winding: leave it */
            continue;
        int64_t ring[6] = {b, q[(k + 2) % 4], q[(k + 3) % 4], a, other[(j + 2) % 4], other[(j + 3) % 4]};
        int distinct = 1;
        for (int s = 0; s < 6; s++)
            for (int t = s + 1; t < 6; t++)
                distinct &= ring[s] != ring[t];
        if (!distinct)
            continue;
        for (int s = 1; s <= 2; s++) {
            int64_t x = ring[s], y = ring[s + 3];
            if (r->frozen[x] || r->frozen[y])
                continue;
            int gain = lose + change_from(CORNER_NOW((k + 1 + s) % 4), 1) + excess_change(r, y, 1, g);
            if (!(gain < 0 || (allow_zero && gain == 0 && (is_off(r, a) || is_off(r, b) || is_off(r, x)
                                                             || is_off(r, y)))))
                continue;
            int64_t unused;
            if (shared_faces(r, x, y, -1, &unused) > 0)
                continue;
            Rotation *o = out + found;
            for (int i = 0; i < 4; i++) {
                o->quads[0][i] = ring[s + i];
                o->quads[1][i] = ring[(s + 3 + i) % 6];
            }
            if (!faces_agree(r, q, other, (const int64_t(*)[4])o->quads))
                continue;
            o->gain = gain;
            o->strict = strict;
            o->g = g;
            memcpy(o->ring, ring, sizeof ring);
            found++;
        }
    }
#undef CORNER_NOW
    return found;
}

static void rotate(Rewire *r, int64_t f, int64_t g, const int64_t quads[2][4], const int64_t ring[6]) {
    int64_t faces[2] = {f, g};
    for (int t = 0; t < 2; t++) {
        int64_t *c = r->p + 4 * faces[t];
        for (int i = 0; i < 4; i++)
            around_remove(r, c[i], faces[t]);
        memcpy(c, quads[t], 4 * sizeof(int64_t));
        for (int i = 0; i < 4; i++)
            around_add(r, c[i], faces[t]);
    }
    r->rotations++;
    for (int i = 0; i < 6; i++)
        r->touched[ring[i]] = 1;
}

/* The best rotation of quad f that lowers the excess (poles._Rewiring._rotate_best), applied: of
 * found, the list of rotations_of(r, f, allow_zero, ...), those rotations_of(r, f, 0, ...) would
 * list (in the same order; with allow_zero, zero-cost ones come too, and lowering ones from edges
 * only the looser prune lets through). Writes the hexagon's vertices (6) to changed and returns
 * 6, or 0 when there is none. */
static int rotate_best_of(Rewire *r, int64_t f, const Rotation *found, int count, int64_t *changed) {
    int best = -1;
    for (int i = 0; i < count; i++)
        if (found[i].gain < 0 && found[i].strict && (best < 0 || found[i].gain < found[best].gain))
            best = i;
    if (best < 0)
        return 0;
    rotate(r, f, found[best].g, (const int64_t(*)[4])found[best].quads, found[best].ring);
    memcpy(changed, found[best].ring, 6 * sizeof(int64_t));
    return 6;
}

/* A zero-cost rotation kept only when it opens an improvement within depth steps
 * (poles._Rewiring._shift_best); found: rotations_of(r, f, 1, ...), listed by the caller (which
 * first looked in it for a rotation that gains). */
static int shift_over(Rewire *r, int64_t f, int depth, const Rotation *found, int count, int64_t *changed) {
    for (int i = 0; i < count && !r->failed; i++) {
        const Rotation *o = found + i;
        int64_t before[2][4];
        uint8_t was_touched[6];
        memcpy(before[0], r->p + 4 * f, sizeof before[0]);
        memcpy(before[1], r->p + 4 * o->g, sizeof before[1]);
        for (int s = 0; s < 6; s++)
            was_touched[s] = r->touched[o->ring[s]];
        rotate(r, f, o->g, (const int64_t(*)[4])o->quads, o->ring);
        /* The faces around the poles it moved, ascending (up to 64 per pole). */
        int64_t faces[6 * 64], nf = 0;
        for (int s = 0; s < 6; s++) {
            int64_t x = o->ring[s];
            if (r->frozen[x] || !is_off(r, x))
                continue;
            for (int64_t j = 0; j < r->alen[x] && nf < 6 * 64; j++)
                faces[nf++] = r->around[x][j];
        }
        qsort(faces, (size_t)nf, sizeof(int64_t), compare_int64);
        for (int64_t j = 0; j < nf; j++) {
            int64_t h = faces[j];
            if ((j > 0 && faces[j - 1] == h) || face_size(r, h) != 4)
                continue;
            int follow = collapse_best(r, h, changed + 6);
            if (!follow) {
                /* One listing for both the rotation that gains and, failing that, the next shift. */
                Rotation next[8];
                int listed = rotations_of(r, h, depth > 1, next);
                follow = rotate_best_of(r, h, next, listed, changed + 6);
                if (!follow && depth > 1)
                    follow = shift_over(r, h, depth - 1, next, listed, changed + 6);
            }
            if (follow) {
                memcpy(changed, o->ring, 6 * sizeof(int64_t));
                return 6 + follow;
            }
        }
        rotate(r, f, o->g, (const int64_t(*)[4])before, o->ring);   /* no follow-up: undo */
        for (int s = 0; s < 6; s++)
            r->touched[o->ring[s]] = was_touched[s];
        r->rotations -= 2;
    }
    return 0;
}

/* One sweep; it stops after budget_per_face changes per face alive at its start plus budget_extra
 * (poles.SWEEP_CHANGES_PER_FACE and SWEEP_CHANGES_EXTRA: a gain counted on a sector the change
 * reshapes can be off, and two changes can then undo each other for ever). */
static void sweep(Rewire *r, int shifts, int64_t *queue, uint8_t *queued, int budget_per_face, int budget_extra) {
    int floor = -1, top_ideal = 0;
    for (int64_t x = 0; x < r->n; x++)
        if (!r->special[x] && r->alen[x] > 0 && 2 * (r->alen[x] - 4) + 1 < floor)
            floor = (int)(2 * (r->alen[x] - 4) + 1);
    for (int64_t i = 0; i < r->ideal_start[r->n]; i++)
        if (r->ideal_value[i] - 1 > top_ideal)
            top_ideal = (int)(r->ideal_value[i] - 1);
    r->floor = floor < -1 - 2 * top_ideal ? floor : -1 - 2 * top_ideal;
    int64_t size = 0, budget = budget_extra;
    for (int64_t f = 0; f < r->k; f++)
        if (face_size(r, f) >= 3)
            budget += budget_per_face;
    for (int64_t f = 0; f < r->k; f++) {
        queued[f] = 0;
        if (face_size(r, f) != 4)
            continue;
        for (int i = 0; i < 4; i++) {
            int64_t x = r->p[4 * f + i];
            if (!r->frozen[x] && is_off(r, x)) {
                queue[size++] = f;
                queued[f] = 1;
                break;
            }
        }
    }
    int64_t changed[POLE_CHANGED];
    while (size > 0 && !r->failed) {
        int64_t f = queue[--size];
        queued[f] = 0;
        if (face_size(r, f) != 4)
            continue;
        int count = collapse_best(r, f, changed);
        if (!count) {
            Rotation found[8];
            int listed = rotations_of(r, f, shifts > 0, found);
            count = rotate_best_of(r, f, found, listed, changed);
            if (!count && shifts && has_partner(r, f))
                count = shift_over(r, f, shifts, found, listed, changed);
        }
        if (count && --budget < 0)
            break;
        for (int i = 0; i < count; i++) {
            int64_t x = changed[i];
            for (int64_t j = 0; j < r->alen[x]; j++) {
                int64_t g = r->around[x][j];
                if (!queued[g] && face_size(r, g) == 4) {
                    queue[size++] = g;
                    queued[g] = 1;
                }
            }
        }
    }
}

/* reduce_poles(vertices, polygons, special, frozen, border, lock_start, lock_to, ideal_start, ideal_key,
 *              ideal_value, shift_depth, min_cosine, out_touched) -> (rotations, collapses)
 *
 * vertices (n, 3) float64 and polygons (k, 4) int64 (-1 last corner: a triangle) are rewired in
 * place: a removed face becomes a row of -1, a merged vertex moves, a merged-away one is left
 * unused. special, frozen, border (n,) uint8; lock_start (n + 1,) and lock_to: each vertex's
 * neighbours across a locked edge (both directions); ideal_start (n + 1,), ideal_key, ideal_value:
 * each border or crease vertex's sectors, by the neighbour that bounds them (-2: no bound), and
 * their ideal face counts. out_touched (n,) uint8 is set where a neighbourhood changed. */
static PyObject *reduce_poles(PyObject *self, PyObject *args) {
    Py_buffer vertices, polygons, special, frozen, border, lock_start, lock_to, ideal_start, ideal_key, ideal_value,
        out_touched;
    int depth, budget_per_face, budget_extra;
    double min_cosine;
    if (!PyArg_ParseTuple(args, "w*w*y*y*y*y*y*y*y*y*idiiw*", &vertices, &polygons, &special, &frozen, &border,
                          &lock_start, &lock_to, &ideal_start, &ideal_key, &ideal_value, &depth, &min_cosine,
                          &budget_per_face, &budget_extra, &out_touched))
        return NULL;
    Rewire r;
    memset(&r, 0, sizeof r);
    r.min_cosine = min_cosine;
    r.n = vertices.len / (3 * (Py_ssize_t)sizeof(double));
    r.k = polygons.len / (4 * (Py_ssize_t)sizeof(int64_t));
    r.v = vertices.buf;
    r.p = polygons.buf;
    r.special = special.buf;
    r.frozen = frozen.buf;
    r.border = border.buf;
    r.lock_start = lock_start.buf;
    r.lock_to = lock_to.buf;
    r.ideal_start = ideal_start.buf;
    r.ideal_key = ideal_key.buf;
    r.ideal_value = ideal_value.buf;
    r.touched = out_touched.buf;
    int64_t locks = lock_to.len / (Py_ssize_t)sizeof(int64_t), ideals = ideal_key.len / (Py_ssize_t)sizeof(int64_t);
    int ok = depth >= 0 && depth <= POLE_MAX_DEPTH && special.len == r.n && frozen.len == r.n && border.len == r.n
             && out_touched.len == r.n && lock_start.len == (r.n + 1) * (Py_ssize_t)sizeof(int64_t)
             && ideal_start.len == lock_start.len && ideal_value.len == ideal_key.len;
    for (int64_t i = 0; ok && i < 4 * r.k; i++)
        ok = r.p[i] >= -1 && r.p[i] < r.n && (r.p[i] >= 0 || i % 4 == 3) && (i % 4 != 3 || r.p[i - 1] >= 0);
    for (int64_t x = 0; ok && x < r.n; x++)
        ok = r.lock_start[x] <= r.lock_start[x + 1] && r.ideal_start[x] <= r.ideal_start[x + 1];
    ok = ok && r.lock_start[0] == 0 && r.lock_start[r.n] == locks && r.ideal_start[0] == 0 && r.ideal_start[r.n] == ideals;
    for (int64_t i = 0; ok && i < locks; i++)
        ok = r.lock_to[i] >= 0 && r.lock_to[i] < r.n;
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "reduce_poles: buffer sizes do not match or an index is out of range");
    } else {
        int64_t *queue = NULL;
        uint8_t *queued = NULL;
        Py_BEGIN_ALLOW_THREADS
        r.around = calloc((size_t)r.n + 1, sizeof(int64_t *));
        r.alen = calloc((size_t)r.n + 1, sizeof(int64_t));
        r.acap = calloc((size_t)r.n + 1, sizeof(int64_t));
        r.stamp = calloc((size_t)r.n + 1, sizeof(int64_t));
        r.ring_buf = malloc(((size_t)r.n + 1) * sizeof(int64_t));
        queue = malloc(((size_t)r.k + 1) * sizeof(int64_t));
        queued = malloc((size_t)r.k + 1);
        r.failed = !r.around || !r.alen || !r.acap || !r.stamp || !r.ring_buf || !queue || !queued;
        for (int64_t f = 0; f < r.k && !r.failed; f++)
            for (int i = 0; i < face_size(&r, f); i++)
                around_add(&r, r.p[4 * f + i], f);
        for (int shifts = 0; shifts <= depth && !r.failed; shifts++)
            sweep(&r, shifts, queue, queued, budget_per_face, budget_extra);
        for (int64_t x = 0; r.around && x < r.n; x++)
            free(r.around[x]);
        free(r.around);
        free(r.alen);
        free(r.acap);
        free(r.stamp);
        free(r.ring_buf);
        free(queue);
        free(queued);
        Py_END_ALLOW_THREADS
        if (r.failed)
            PyErr_NoMemory();
    }
    PyBuffer_Release(&vertices);
    PyBuffer_Release(&polygons);
    PyBuffer_Release(&special);
    PyBuffer_Release(&frozen);
    PyBuffer_Release(&border);
    PyBuffer_Release(&lock_start);
    PyBuffer_Release(&lock_to);
    PyBuffer_Release(&ideal_start);
    PyBuffer_Release(&ideal_key);
    PyBuffer_Release(&ideal_value);
    PyBuffer_Release(&out_touched);
    if (!ok || r.failed)
        return NULL;
    return Py_BuildValue("LL", (long long)r.rotations, (long long)r.collapses);
}

/* ------------------------------------------------------------------------------------ */
/* Widening flat quad corners (backend.mesh.retopo.relax.widen_flat_corners)                */
/* ------------------------------------------------------------------------------------ */

/* Largest corner angle in degrees of a quad, measured inside it: a corner that turns against
 * the quad's normal (from its diagonals) is concave and counts as 360 minus its angle
 * (backend.mesh.polygons.corner_angles). */
static double quad_largest_angle(const vec3 q[4]) {
    vec3 normal = cross(sub(q[2], q[0]), sub(q[3], q[1]));
    double largest = -INFINITY;
    for (int j = 0; j < 4; j++) {
        vec3 to_prev = sub(q[(j + 3) & 3], q[j]), to_next = sub(q[(j + 1) & 3], q[j]);
        double size = sqrt(dot(to_prev, to_prev)) * sqrt(dot(to_next, to_next));
        double c = dot(to_prev, to_next) / (size > 1e-300 ? size : 1e-300);
        double angle = acos(c < -1.0 ? -1.0 : (c > 1.0 ? 1.0 : c)) * (180.0 / 3.14159265358979323846);
        if (dot(cross(to_next, to_prev), normal) < 0.0)
            angle = 360.0 - angle;
        if (angle > largest)
            largest = angle;
    }
    return largest;
}

/* Dot product summed as numpy 1.26's einsum sums three products: x and z first, then y. */
static inline double dot_xzy(vec3 a, vec3 b) { return (a.x * b.x + a.z * b.z) + a.y * b.y; }

/* Corner angles in degrees of quads q (k, 4, 3) into out (k, 4): the arithmetic of
 * backend.mesh.polygons.corner_angles' numpy, in its order (dot_xzy; the size is the root of
 * the product of the squared lengths), so that the two give the same figures bit for bit. */
static PyObject *corner_angles(PyObject *self, PyObject *args) {
    Py_buffer quads, out;
    if (!PyArg_ParseTuple(args, "y*w*", &quads, &out))
        return NULL;
    Py_ssize_t k = quads.len / (12 * (Py_ssize_t)sizeof(double));
    int ok = quads.len == k * 12 * (Py_ssize_t)sizeof(double) && out.len == k * 4 * (Py_ssize_t)sizeof(double);
    if (ok) {
        const double *q = quads.buf;
        double *angles = out.buf;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t i = 0; i < k; i++) {
            const double *c = q + 12 * i;
            vec3 corner[4] = {v3(c), v3(c + 3), v3(c + 6), v3(c + 9)};
            vec3 normal = cross(sub(corner[2], corner[0]), sub(corner[3], corner[1]));
            for (int j = 0; j < 4; j++) {
                vec3 to_prev = sub(corner[(j + 3) & 3], corner[j]), to_next = sub(corner[(j + 1) & 3], corner[j]);
                double size = sqrt(dot_xzy(to_prev, to_prev) * dot_xzy(to_next, to_next));
                double cosine = dot_xzy(to_prev, to_next) / (size > 1e-300 ? size : 1e-300);
                double angle = acos(cosine < -1.0 ? -1.0 : (cosine > 1.0 ? 1.0 : cosine)) * (180.0 / 3.141592653589793238462643383279502884);
                angles[4 * i + j] = dot_xzy(cross(to_next, to_prev), normal) < 0.0 ? 360.0 - angle : angle;
            }
        }
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&quads);
    PyBuffer_Release(&out);
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "corner_angles: expected quads (k, 4, 3) and out (k, 4) float64");
        return NULL;
    }
    Py_RETURN_NONE;
}

/* Scores vertex x at position `at_x` (its polygons `fs`, m of them): the count of quads above
 * `above` times 1000 plus the largest quad angle, or INFINITY when a polygon turns (its
 * diagonal normal against `normals`, the ones before the move) or shrinks too far. */
static double widen_score(const double *vs, const int64_t *padded, const uint8_t *is_quad, const int64_t *fs,
                          int64_t m, int64_t x, vec3 at_x, const vec3 *normals, double above, double min_cosine,
                          double min_area) {
    int open = 0;
    double largest = -INFINITY;
    for (int64_t a = 0; a < m; a++) {
        const int64_t *c = padded + 4 * fs[a];
        vec3 q[4];
        for (int j = 0; j < 4; j++)
            q[j] = c[j] == x ? at_x : v3(vs + 3 * c[j]);
        if (normals != NULL) {
            vec3 after = cross(sub(q[2], q[0]), sub(q[3], q[1]));
            double before_size = sqrt(dot(normals[a], normals[a])), after_size = sqrt(dot(after, after));
            if (!(dot(after, normals[a]) >= min_cosine * before_size * after_size)
                || !(after_size >= min_area * before_size))
                return INFINITY;
        }
        if (is_quad[fs[a]]) {
            double angle = quad_largest_angle(q);
            open += angle > above;
            if (angle > largest)
                largest = angle;
        }
    }
    return open * 1000.0 + largest;
}

/* widen_in_order(vertices, at, tried, counts, faces_at, start, padded, is_quad, above, min_cosine,
 *                min_area, gain, out_moved): for each vertex x = at[i] in order, with a quad around
 * it still above `above` degrees, the first of its counts[i] points tried[i] that scores within
 * `gain` of the lowest (widen_score), if the lowest is more than `gain` below where it is;
 * moves it there, in place, and marks out_moved[i]. faces_at[start[x]:start[x + 1]]: the polygons around x, rows of padded (f, 4)
 * (a triangle's first corner repeated). The same as relax._widen_in_order's numpy loop. */
static PyObject *widen_in_order(PyObject *self, PyObject *args) {
    Py_buffer vertices, at_b, tried_b, counts_b, faces_at_b, start_b, padded_b, is_quad_b, out_moved;
    double above, min_cosine, min_area, gain;
    if (!PyArg_ParseTuple(args, "w*y*y*y*y*y*y*y*ddddw*", &vertices, &at_b, &tried_b, &counts_b, &faces_at_b, &start_b,
                          &padded_b, &is_quad_b, &above, &min_cosine, &min_area, &gain, &out_moved))
        return NULL;
    Py_ssize_t n = vertices.len / (3 * (Py_ssize_t)sizeof(double));
    Py_ssize_t k = at_b.len / (Py_ssize_t)sizeof(int64_t);
    Py_ssize_t per = k > 0 ? tried_b.len / (k * 3 * (Py_ssize_t)sizeof(double)) : 0;
    Py_ssize_t around = faces_at_b.len / (Py_ssize_t)sizeof(int64_t);
    Py_ssize_t f = padded_b.len / (4 * (Py_ssize_t)sizeof(int64_t));
    const int64_t *at = at_b.buf, *counts = counts_b.buf, *faces_at = faces_at_b.buf, *start = start_b.buf,
                  *padded = padded_b.buf;
    int ok = tried_b.len == k * per * 3 * (Py_ssize_t)sizeof(double) && counts_b.len == at_b.len
        && start_b.len == (n + 1) * (Py_ssize_t)sizeof(int64_t) && is_quad_b.len == f
        && out_moved.len == k;
    for (Py_ssize_t i = 0; ok && i < 4 * f; i++)
        ok = padded[i] >= 0 && padded[i] < n;
    for (Py_ssize_t i = 0; ok && i < around; i++)
        ok = faces_at[i] >= 0 && faces_at[i] < f;
    for (Py_ssize_t i = 0; ok && i < n; i++)
        ok = start[i] >= 0 && start[i] <= start[i + 1] && start[i + 1] <= around;
    int64_t widest = 0;
    for (Py_ssize_t i = 0; ok && i < k; i++) {
        ok = at[i] >= 0 && at[i] < n && counts[i] >= 0 && counts[i] <= per;
        if (ok && start[at[i] + 1] - start[at[i]] > widest)
            widest = start[at[i] + 1] - start[at[i]];
    }
    vec3 *normals = ok ? malloc((size_t)(widest > 0 ? widest : 1) * sizeof(vec3)) : NULL;
    double *scores = ok ? malloc((size_t)(per > 0 ? per : 1) * sizeof(double)) : NULL;
    if (ok && (normals == NULL || scores == NULL)) {
        PyErr_NoMemory();
        ok = -1;
    }
    if (ok == 1) {
        double *vs = vertices.buf;
        const double *tried = tried_b.buf;
        const uint8_t *is_quad = is_quad_b.buf;
        uint8_t *moved = out_moved.buf;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t i = 0; i < k; i++) {
            int64_t x = at[i], m = start[x + 1] - start[x];
            const int64_t *fs = faces_at + start[x];
            vec3 here = v3(vs + 3 * x);
            moved[i] = 0;
            double worst = widen_score(vs, padded, is_quad, fs, m, x, here, NULL, above, min_cosine, min_area);
            if (worst < 1000.0)
                continue;                            /* opened already by a neighbour's move */
            for (int64_t a = 0; a < m; a++) {
                const int64_t *c = padded + 4 * fs[a];
                normals[a] = cross(sub(v3(vs + 3 * c[2]), v3(vs + 3 * c[0])), sub(v3(vs + 3 * c[3]), v3(vs + 3 * c[1])));
            }
            double lowest = INFINITY;
            for (int64_t t = 0; t < counts[i]; t++) {
                scores[t] = widen_score(vs, padded, is_quad, fs, m, x, v3(tried + 3 * (i * per + t)), normals, above,
                                        min_cosine, min_area);
                if (scores[t] < lowest)
                    lowest = scores[t];
            }
            int64_t best_at = 0;
            while (best_at < counts[i] && !(scores[best_at] <= lowest + gain))
                best_at++;
            if (best_at < counts[i] && lowest < worst - gain) {
                memcpy(vs + 3 * x, tried + 3 * (i * per + best_at), 3 * sizeof(double));
                moved[i] = 1;
            }
        }
        Py_END_ALLOW_THREADS
    }
    free(normals);
    free(scores);
    PyBuffer_Release(&vertices);
    PyBuffer_Release(&at_b);
    PyBuffer_Release(&tried_b);
    PyBuffer_Release(&counts_b);
    PyBuffer_Release(&faces_at_b);
    PyBuffer_Release(&start_b);
    PyBuffer_Release(&padded_b);
    PyBuffer_Release(&is_quad_b);
    PyBuffer_Release(&out_moved);
    if (ok == 0) {
        PyErr_SetString(PyExc_ValueError,
                        "widen_in_order: buffer sizes do not match or a vertex, polygon or candidate index is out of range");
        return NULL;
    }
    if (ok < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------------------------ */
/* Isotropic remeshing of Instant Meshes' input (backend.mesh.retopo.isotropic)             */
/* ------------------------------------------------------------------------------------ */

/* Botsch and Kobbelt's loop ("A Remeshing Approach to Multiresolution Modeling", 2004) on a
 * half-edge mesh: split edges above 4/3 of the length, collapse those below 4/5, flip toward
 * valence 6 (4 on borders), move vertices to their neighbours' centroid in the tangent plane
 * (back onto the input in the last round). Creases (dihedral above the angle) and borders are
 * split but never flipped; a vertex on them collapses only along them, a corner (not two of
 * them) never. The input's own vertices neither move nor go: the remesh refines a coarse mesh
 * and evens it out, but never coarsens a fine one (a neck thinner than the edge would go). */

typedef struct {
    int64_t nh, ch, nv, cv, nf, cf;
    int64_t *to, *next, *prev, *twin, *face;  /* per half-edge; face -1: border; to -1: removed */
    uint8_t *feat;                             /* per half-edge, equal on twins: crease or border */
    double *pos;                               /* (nv, 3) */
    int64_t *out;                              /* outgoing half-edge, the border one on a border; -1: removed */
    int64_t *val;                              /* edges at each vertex */
    int64_t *stamp, now;
    int64_t *fhe;                              /* a half-edge of each face; -1: removed */
    int64_t inputs;                            /* vertices below this are the input's: they stay */
} Iso;

static int iso_grow(void **p, int64_t count, size_t size) {
    void *q = realloc(*p, (size_t)(count > 0 ? count : 1) * size);
    if (!q)
        return 0;
    *p = q;
    return 1;
}

/* Room for `more` new half-edges, vertices and faces each. */
static int iso_reserve(Iso *m, int64_t more) {
    if (m->nh + 2 * more > m->ch) {
        int64_t c = 2 * (m->nh + 2 * more);
        if (!iso_grow((void **)&m->to, c, sizeof(int64_t)) || !iso_grow((void **)&m->next, c, sizeof(int64_t))
            || !iso_grow((void **)&m->prev, c, sizeof(int64_t)) || !iso_grow((void **)&m->twin, c, sizeof(int64_t))
            || !iso_grow((void **)&m->face, c, sizeof(int64_t)) || !iso_grow((void **)&m->feat, c, 1))
            return 0;
        m->ch = c;
    }
    if (m->nv + more > m->cv) {
        int64_t c = 2 * (m->nv + more);
        if (!iso_grow((void **)&m->pos, 3 * c, sizeof(double)) || !iso_grow((void **)&m->out, c, sizeof(int64_t))
            || !iso_grow((void **)&m->val, c, sizeof(int64_t)) || !iso_grow((void **)&m->stamp, c, sizeof(int64_t)))
            return 0;
        for (int64_t v = m->cv; v < c; v++)
            m->stamp[v] = 0;
        m->cv = c;
    }
    if (m->nf + more > m->cf) {
        int64_t c = 2 * (m->nf + more);
        if (!iso_grow((void **)&m->fhe, c, sizeof(int64_t)))
            return 0;
        m->cf = c;
    }
    return 1;
}

static void iso_free(Iso *m) {
    free(m->to); free(m->next); free(m->prev); free(m->twin); free(m->face); free(m->feat);
    free(m->pos); free(m->out); free(m->val); free(m->stamp); free(m->fhe);
}

static inline vec3 iso_p(const Iso *m, int64_t v) { return v3(m->pos + 3 * v); }
static inline void iso_set(Iso *m, int64_t v, vec3 p) { m->pos[3 * v] = p.x; m->pos[3 * v + 1] = p.y; m->pos[3 * v + 2] = p.z; }
static inline int64_t iso_from(const Iso *m, int64_t h) { return m->to[m->twin[h]]; }
static inline int iso_on_border(const Iso *m, int64_t v) { return m->face[m->out[v]] < 0; }
static inline int64_t iso_turn(const Iso *m, int64_t h) { return m->twin[m->prev[h]]; }  /* next outgoing */

static double iso_len2(const Iso *m, int64_t h) {
    vec3 d = sub(iso_p(m, m->to[h]), iso_p(m, iso_from(m, h)));
    return dot(d, d);
}

/* Crease and border edges at v; -1 when the walk around it does not close (a broken mesh). */
static int64_t iso_creases_at(const Iso *m, int64_t v) {
    int64_t h = m->out[v], count = 0, steps = 0;
    do {
        count += m->feat[h];
        h = iso_turn(m, h);
        if (++steps > m->nh)
            return -1;
    } while (h != m->out[v]);
    return count;
}

static int64_t iso_new_pair(Iso *m) {
    int64_t h = m->nh;
    m->nh += 2;
    m->twin[h] = h + 1;
    m->twin[h + 1] = h;
    m->feat[h] = m->feat[h + 1] = 0;
    m->face[h] = m->face[h + 1] = -1;
    return h;
}

static void iso_face(Iso *m, int64_t f, int64_t a, int64_t b, int64_t c) {
    m->next[a] = b; m->next[b] = c; m->next[c] = a;
    m->prev[b] = a; m->prev[c] = b; m->prev[a] = c;
    m->face[a] = m->face[b] = m->face[c] = f;
    m->fhe[f] = a;
}

/* Compiled with -DISO_DEBUG, the half-edge invariants are checked after every phase of a round
 * (with -DISO_DEBUG_EACH too, after every split, collapse and flip); a broken one aborts. */
#ifdef ISO_DEBUG
#include <stdio.h>
static int iso_check(const Iso *m, const char *where) {
    for (int64_t h = 0; h < m->nh; h++) {
        if (m->to[h] < 0) continue;
        int64_t t = m->twin[h];
        const char *bad = NULL;
        if (m->to[t] < 0) bad = "dead twin";
        else if (m->twin[t] != h) bad = "twin";
        else if (m->to[m->next[h]] < 0) bad = "dead next";
        else if (m->next[m->prev[h]] != h || m->prev[m->next[h]] != h) bad = "next/prev";
        else if (m->face[m->next[h]] != m->face[h]) bad = "face of next";
        else if (iso_from(m, m->next[h]) != m->to[h]) bad = "next starts elsewhere";
        else if (m->out[m->to[h]] < 0) bad = "to dead vertex";
        else if (m->feat[h] != m->feat[t]) bad = "feat";
        else if (m->face[h] >= 0 && m->fhe[m->face[h]] < 0) bad = "dead face";
        else if (m->face[h] >= 0 && m->next[m->next[m->next[h]]] != h) bad = "not a triangle";
        else if (m->face[h] < 0 && m->out[iso_from(m, h)] != h) bad = "border out";
        if (bad) { fprintf(stderr, "%s: half-edge %lld: %s\n", where, (long long)h, bad); return 0; }
    }
    for (int64_t v = 0; v < m->nv; v++) {
        if (m->out[v] < 0) continue;
        if (m->to[m->out[v]] < 0 || iso_from(m, m->out[v]) != v) { fprintf(stderr, "%s: vertex %lld out\n", where, (long long)v); return 0; }
        int64_t w = m->out[v], c = 0;
        do { c++; w = iso_turn(m, w); } while (w != m->out[v] && c < 1000);
        if (c != m->val[v]) { fprintf(stderr, "%s: vertex %lld valence %lld vs %lld\n", where, (long long)v, (long long)m->val[v], (long long)c); return 0; }
    }
    return 1;
}
#define ISO_CHECK(m, where) do { if (!iso_check(m, where)) abort(); } while (0)
#ifdef ISO_DEBUG_EACH
#define ISO_CHECK_EACH ISO_CHECK
#else
#define ISO_CHECK_EACH(m, where) ((void)0)
#endif
#else
#define ISO_CHECK_EACH(m, where) ((void)0)
#define ISO_CHECK(m, where) ((void)0)
#endif

typedef struct { int64_t h; double len2; } IsoLong;

static int iso_longer_first(const void *x, const void *y) {
    double a = ((const IsoLong *)x)->len2, b = ((const IsoLong *)y)->len2;
    return a < b ? 1 : (a > b ? -1 : (((const IsoLong *)x)->h > ((const IsoLong *)y)->h) - (((const IsoLong *)x)->h < ((const IsoLong *)y)->h));
}

/* Split the edge of h at its midpoint (iso_reserve(m, 3) first). */
static void iso_split(Iso *m, int64_t h) {
    int64_t t = m->twin[h], a = m->to[t], b = m->to[h];
    int64_t v = m->nv++;
    iso_set(m, v, scale(add(iso_p(m, a), iso_p(m, b)), 0.5));
    m->stamp[v] = 0;
    int64_t n = iso_new_pair(m), nt = n + 1;                 /* v -> b, b -> v */
    m->feat[n] = m->feat[nt] = m->feat[h];
    m->to[h] = v; m->to[n] = b; m->to[nt] = v;               /* t: b -> a becomes v -> a */
    if (m->face[h] >= 0) {
        int64_t f = m->face[h], hn = m->next[h], hp = m->prev[h], c = m->to[hn];
        int64_t x = iso_new_pair(m), g = m->nf++;            /* x: v -> c */
        m->to[x] = c; m->to[x + 1] = v;
        iso_face(m, f, h, x, hp);
        iso_face(m, g, n, hn, x + 1);
        m->val[c]++;
    } else {
        int64_t hn = m->next[h];
        m->next[h] = n; m->prev[n] = h; m->next[n] = hn; m->prev[hn] = n;
    }
    if (m->face[t] >= 0) {
        int64_t f = m->face[t], tn = m->next[t], tp = m->prev[t], d = m->to[tn];
        int64_t y = m->nh, g;                                /* y: d -> v */
        iso_new_pair(m);
        g = m->nf++;
        m->to[y] = v; m->to[y + 1] = d;
        iso_face(m, f, t, tn, y);
        iso_face(m, g, nt, y + 1, tp);
        m->val[d]++;
    } else {
        int64_t tp = m->prev[t];
        m->next[tp] = nt; m->prev[nt] = tp; m->next[nt] = t; m->prev[t] = nt;
    }
    m->out[v] = m->face[t] < 0 ? t : n;
    if (m->out[b] == t)
        m->out[b] = nt;
    m->val[v] = 2 + (m->face[h] >= 0) + (m->face[t] >= 0);
}

/* The half-edge of h's face on its longest edge (h itself on a border or a tie). */
static int64_t iso_longest_of_face(const Iso *m, int64_t h) {
    if (m->face[h] < 0)
        return h;
    int64_t best = h;
    double len = iso_len2(m, h);
    for (int64_t x = m->next[h]; x != h; x = m->next[x])
        if (iso_len2(m, x) > len)
            best = x, len = iso_len2(m, x);
    return best;
}

/* Split h's edge if still longer than split2, by longest-edge bisection: a face on it whose
 * longest edge is another is split there first (and so on, along ever longer edges). Split in
 * any other order, a coarse mesh's long slivers are cut into fans of ever thinner ones (a box
 * 10 x 0.05 x 0.05 gave 26,000 vertices at edge 0.07, the truck's 3,600 faces millions).
 * `stack` is scratch space that grows. Returns 0 when out of memory. */
static int iso_split_longest(Iso *m, int64_t h, double split2, int64_t **stack, int64_t *cap) {
    int64_t top = 0;
    if (m->to[h] < 0 || !(iso_len2(m, h) > split2))
        return 1;
    (*stack)[top++] = h;
    while (top > 0) {
        int64_t e = (*stack)[top - 1];
        double len = iso_len2(m, e);
        if (!(len > split2)) {
            top--;
            continue;
        }
        int64_t x = iso_longest_of_face(m, e);
        if (x == e) {
            int64_t t = m->twin[e], y = iso_longest_of_face(m, t);
            x = y == t ? e : y;
        }
        if (x != e && iso_len2(m, x) > len) {
            if (top == *cap) {
                int64_t *grown = realloc(*stack, (size_t)(2 * *cap) * sizeof(int64_t));
                if (!grown)
                    return 0;
                *stack = grown;
                *cap *= 2;
            }
            (*stack)[top++] = x;
            continue;
        }
        if (!iso_reserve(m, 3))
            return 0;
        iso_split(m, e);
        ISO_CHECK_EACH(m, "split");
        top--;
    }
    return 1;
}

/* Whether flipping h's edge (a -> b, far corners c and d) keeps the surface: c and d not joined
 * already, neither new face turned against the old pair, and a fold along the new edge no
 * sharper than min_cos or the old one. */
static int iso_flip_keeps_shape(const Iso *m, int64_t a, int64_t b, int64_t c, int64_t d, double min_cos) {
    int64_t s = m->out[c], w = s, steps = 0;
    do {
        if (m->to[w] == d)
            return 0;
        w = iso_turn(m, w);
        if (++steps > m->nh)
            return 0;
    } while (w != s);
    vec3 pa = iso_p(m, a), pb = iso_p(m, b), pc = iso_p(m, c), pd = iso_p(m, d);
    vec3 n1 = cross(sub(pb, pa), sub(pc, pa)), n2 = cross(sub(pa, pb), sub(pd, pb));
    vec3 k1 = cross(sub(pc, pd), sub(pa, pd)), k2 = cross(sub(pd, pc), sub(pb, pc));
    double l1 = sqrt(dot(n1, n1)), l2 = sqrt(dot(n2, n2)), j1 = sqrt(dot(k1, k1)), j2 = sqrt(dot(k2, k2));
    if (!(j1 > 0.0 && j2 > 0.0 && l1 > 0.0 && l2 > 0.0))
        return 0;
    vec3 mean = add(scale(n1, 1.0 / l1), scale(n2, 1.0 / l2));
    return dot(k1, k2) / (j1 * j2) >= fmin(dot(n1, n2) / (l1 * l2), min_cos) && dot(k1, mean) > 0.0
           && dot(k2, mean) > 0.0;
}

/* Whether h's edge is not locally Delaunay (the angles facing it sum to more than 180 degrees)
 * and may be flipped: not a crease or border, and the flip keeps the shape. */
static int iso_flip_delaunay(Iso *m, int64_t h, double min_cos) {
    int64_t t = m->twin[h];
    if (m->feat[h] || m->face[h] < 0 || m->face[t] < 0)
        return 0;
    int64_t a = m->to[t], b = m->to[h], c = m->to[m->next[h]], d = m->to[m->next[t]];
    if (c == d || m->val[a] <= 3 || m->val[b] <= 3)
        return 0;
    vec3 ca = sub(iso_p(m, a), iso_p(m, c)), cb = sub(iso_p(m, b), iso_p(m, c));
    vec3 da = sub(iso_p(m, a), iso_p(m, d)), db = sub(iso_p(m, b), iso_p(m, d));
    vec3 xc = cross(ca, cb), xd = cross(da, db);
    double sc = sqrt(dot(xc, xc)), sd = sqrt(dot(xd, xd)), cc = dot(ca, cb), cd = dot(da, db);
    /* angle c + angle d > pi  <=>  sin(c + d) = sin c cos d + cos c sin d < 0 */
    if (!(sc * cd + sd * cc < -1e-12 * (sc + sd + fabs(cc) + fabs(cd))))
        return 0;
    return iso_flip_keeps_shape(m, a, b, c, d, min_cos);
}

/* Whether h's edge may be flipped, and would bring valences nearer 6 (4 on borders). */
static int iso_flip_gains(Iso *m, int64_t h, double min_cos) {
    int64_t t = m->twin[h];
    if (m->feat[h] || m->face[h] < 0 || m->face[t] < 0)
        return 0;
    int64_t a = m->to[t], b = m->to[h], c = m->to[m->next[h]], d = m->to[m->next[t]];
    if (c == d)
        return 0;
    int ba = iso_on_border(m, a), bb = iso_on_border(m, b), bc = iso_on_border(m, c), bd = iso_on_border(m, d);
    if (m->val[a] <= 3 - ba || m->val[b] <= 3 - bb)
        return 0;
    int64_t before = llabs(m->val[a] - 6 + 2 * ba) + llabs(m->val[b] - 6 + 2 * bb) + llabs(m->val[c] - 6 + 2 * bc)
                     + llabs(m->val[d] - 6 + 2 * bd);
    int64_t after = llabs(m->val[a] - 7 + 2 * ba) + llabs(m->val[b] - 7 + 2 * bb) + llabs(m->val[c] - 5 + 2 * bc)
                    + llabs(m->val[d] - 5 + 2 * bd);
    return after < before && iso_flip_keeps_shape(m, a, b, c, d, min_cos);
}

static void iso_flip(Iso *m, int64_t h) {
    int64_t t = m->twin[h], f = m->face[h], g = m->face[t];
    int64_t hn = m->next[h], hp = m->prev[h], tn = m->next[t], tp = m->prev[t];
    int64_t a = m->to[t], b = m->to[h], c = m->to[hn], d = m->to[tn];
    m->to[h] = c;                                            /* h: d -> c */
    m->to[t] = d;                                            /* t: c -> d */
    iso_face(m, f, h, hp, tn);
    iso_face(m, g, t, tp, hn);
    if (m->out[a] == h) m->out[a] = tn;
    if (m->out[b] == t) m->out[b] = hn;
    m->val[a]--; m->val[b]--; m->val[c]++; m->val[d]++;
}

/* Whether u may move to `at` when the edge to w collapses: no edge of u's longer than
 * max_len2 (squared) and no face of u's other than the two on the edge turned or folded. */
static int iso_ring_allows(const Iso *m, int64_t u, int64_t w_end, vec3 at, double max_len2) {
    vec3 pu = iso_p(m, u);
    int64_t s = m->out[u], w = s;
    do {
        int64_t x = m->to[w];
        if (x != w_end) {
            vec3 e = sub(iso_p(m, x), at);
            if (dot(e, e) > max_len2)
                return 0;
            if (m->face[w] >= 0) {
                int64_t y = m->to[m->next[w]];               /* face u -> x -> y */
                if (y != w_end) {
                    vec3 px = iso_p(m, x), py = iso_p(m, y);
                    vec3 before = cross(sub(px, pu), sub(py, pu)), after = cross(sub(px, at), sub(py, at));
                    double lb = dot(before, before), la = dot(after, after);
                    if (!(la > 0.0) || dot(before, after) < 0.5 * sqrt(lb * la))
                        return 0;
                }
            }
        }
        w = iso_turn(m, w);
    } while (w != s);
    return 1;
}

/* Whether a may go onto b (the half-edge h: a -> b) as far as the features, valences and the
 * link condition go; where b will be is iso_ring_allows' to check. */
static int iso_may_collapse(Iso *m, int64_t h) {
    int64_t t = m->twin[h], a = m->to[t], b = m->to[h];
    int border_a = iso_on_border(m, a), border_b = iso_on_border(m, b);
    if (a < m->inputs || (!m->feat[h] && border_a))          /* a free vertex leaves a border only along it */
        return 0;
    int k = (m->face[h] >= 0) + (m->face[t] >= 0);
    int64_t c = m->face[h] >= 0 ? m->to[m->next[h]] : -1, d = m->face[t] >= 0 ? m->to[m->next[t]] : -1;
    if ((c >= 0 && m->val[c] - 1 < 3 - iso_on_border(m, c)) || (d >= 0 && m->val[d] - 1 < 3 - iso_on_border(m, d)))
        return 0;
    if (m->val[a] + m->val[b] - k - 2 < 3 - border_b)
        return 0;
    /* One walk around a: its crease and border edges, and its neighbours marked for the link
     * condition (a and b share exactly the far corners of their faces). */
    int64_t mark = ++m->now, creases = 0, shared = 0, steps = 0, s = m->out[a], w = s;
    do {
        m->stamp[m->to[w]] = mark;
        creases += m->feat[w];
        w = iso_turn(m, w);
        if (++steps > m->nh)
            return 0;
    } while (w != s);
    if (m->feat[h] ? creases != 2 : creases != 0)             /* along a crease: not at a corner or its end */
        return 0;
    s = m->out[b]; w = s;
    do {
        shared += m->stamp[m->to[w]] == mark;
        w = iso_turn(m, w);
    } while (w != s);
    return shared == k;
}

/* One side of a collapsing edge: e goes, with its face if it has one (the face's other two
 * edges become one); b is the end that stays. */
static void iso_close_side(Iso *m, int64_t e, int64_t b) {
    if (m->face[e] >= 0) {
        int64_t en = m->next[e], ep = m->prev[e], c = m->to[en];
        int64_t o1 = m->twin[en], o2 = m->twin[ep];          /* c -> b, b -> c */
        m->twin[o1] = o2; m->twin[o2] = o1;
        m->feat[o1] = m->feat[o2] = m->feat[en] | m->feat[ep];
        if (m->out[c] == ep) m->out[c] = o1;
        if (m->out[b] == en || m->out[b] == e) m->out[b] = o2;
        m->fhe[m->face[e]] = -1;
        m->to[en] = m->to[ep] = -1;
        m->val[c]--;
    } else {
        int64_t p = m->prev[e], n = m->next[e];
        m->next[p] = n; m->prev[n] = p;
        if (m->out[b] == e) m->out[b] = n;
    }
}

static void iso_collapse(Iso *m, int64_t h, vec3 at) {
    int64_t t = m->twin[h], a = m->to[t], b = m->to[h];
    int k = (m->face[h] >= 0) + (m->face[t] >= 0);
    int64_t s = m->out[a], w = s;
    do {
        m->to[m->twin[w]] = b;
        w = iso_turn(m, w);
    } while (w != s);
    iso_close_side(m, h, b);
    iso_close_side(m, t, b);
    m->val[b] = m->val[a] + m->val[b] - k - 2;
    m->to[h] = m->to[t] = -1;
    m->out[a] = -1;
    iso_set(m, b, at);
}

/* The input's triangles in a uniform grid, for closest points. */
typedef struct {
    Triangle *tri;
    int64_t m, nx, ny, nz, *start, *item, *seen, now;
    double origin[3], cell;
} IsoGrid;

static int iso_grid_build(IsoGrid *g, const double *vs, const int64_t *fc, int64_t m, double cell) {
    memset(g, 0, sizeof *g);
    g->m = m;
    double lo[3] = {INFINITY, INFINITY, INFINITY}, hi[3] = {-INFINITY, -INFINITY, -INFINITY};
    for (int64_t i = 0; i < 3 * m; i++)
        for (int k = 0; k < 3; k++) {
            lo[k] = fmin(lo[k], vs[3 * fc[i] + k]);
            hi[k] = fmax(hi[k], vs[3 * fc[i] + k]);
        }
    for (;;) {                                               /* at most 2^21 cells */
        double cells = 1.0;
        for (int k = 0; k < 3; k++)
            cells *= floor((hi[k] - lo[k]) / cell) + 3.0;
        if (cells <= 2097152.0)
            break;
        cell *= 1.25;
    }
    g->cell = cell;
    for (int k = 0; k < 3; k++)
        g->origin[k] = lo[k] - cell;
    g->nx = (int64_t)floor((hi[0] - lo[0]) / cell) + 3;
    g->ny = (int64_t)floor((hi[1] - lo[1]) / cell) + 3;
    g->nz = (int64_t)floor((hi[2] - lo[2]) / cell) + 3;
    int64_t cells = g->nx * g->ny * g->nz;
    g->tri = malloc((size_t)(m > 0 ? m : 1) * sizeof(Triangle));
    g->seen = calloc((size_t)(m > 0 ? m : 1), sizeof(int64_t));
    g->start = calloc((size_t)cells + 1, sizeof(int64_t));
    if (!g->tri || !g->seen || !g->start)
        return 0;
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) {
            for (int64_t c = 0; c < cells; c++)
                g->start[c + 1] += g->start[c];
            g->item = malloc((size_t)(g->start[cells] > 0 ? g->start[cells] : 1) * sizeof(int64_t));
            if (!g->item)
                return 0;
        }
        for (int64_t f = 0; f < m; f++) {
            Triangle t = face_triangle(vs, fc, f);
            g->tri[f] = t;
            vec3 p[3] = {t.a, add(t.a, t.ab), add(t.a, t.ac)};
            int64_t a[3], b[3];
            for (int k = 0; k < 3; k++) {
                double l = fmin(fmin((&p[0].x)[k], (&p[1].x)[k]), (&p[2].x)[k]);
                double u = fmax(fmax((&p[0].x)[k], (&p[1].x)[k]), (&p[2].x)[k]);
                a[k] = (int64_t)floor((l - g->origin[k]) / cell);
                b[k] = (int64_t)floor((u - g->origin[k]) / cell);
            }
            /* Only the cells the triangle's plane passes through (a large slanted triangle's
             * box holds many more). */
            double reach = 0.5 * cell * (fabs(t.unit.x) + fabs(t.unit.y) + fabs(t.unit.z));
            for (int64_t i = a[0]; i <= b[0]; i++)
                for (int64_t j = a[1]; j <= b[1]; j++)
                    for (int64_t k = a[2]; k <= b[2]; k++) {
                        vec3 centre = {g->origin[0] + (i + 0.5) * cell, g->origin[1] + (j + 0.5) * cell,
                                       g->origin[2] + (k + 0.5) * cell};
                        if (!t.degenerate && fabs(dot(sub(centre, t.a), t.unit)) > reach * 1.0001)
                            continue;
                        int64_t c = (i * g->ny + j) * g->nz + k;
                        if (pass == 0)
                            g->start[c + 1]++;
                        else
                            g->item[g->start[c]++] = f;
                    }
        }
        if (pass == 1) {
            for (int64_t c = cells; c > 0; c--)
                g->start[c] = g->start[c - 1];
            g->start[0] = 0;
        }
    }
    return 1;
}

static void iso_grid_free(IsoGrid *g) {
    free(g->tri); free(g->seen); free(g->start); free(g->item);
}

/* The closest point of the input to p: rings of cells around p's until the nearest found is
 * nearer than anything outside them. */
static vec3 iso_closest(IsoGrid *g, vec3 p) {
    int64_t n[3] = {g->nx, g->ny, g->nz}, c[3];
    double x[3] = {p.x, p.y, p.z};
    for (int k = 0; k < 3; k++) {
        c[k] = (int64_t)floor((x[k] - g->origin[k]) / g->cell);
        c[k] = c[k] < 0 ? 0 : (c[k] >= n[k] ? n[k] - 1 : c[k]);
    }
    int64_t mark = ++g->now;
    double best = INFINITY;
    vec3 best_offset = {0.0, 0.0, 0.0};
    int64_t most = n[0] > n[1] ? n[0] : n[1];
    most = most > n[2] ? most : n[2];
    for (int64_t r = 0; r <= most; r++) {
        for (int64_t i = c[0] - r; i <= c[0] + r; i++) {
            if (i < 0 || i >= n[0])
                continue;
            for (int64_t j = c[1] - r; j <= c[1] + r; j++) {
                if (j < 0 || j >= n[1])
                    continue;
                int edge_ij = (i == c[0] - r || i == c[0] + r || j == c[1] - r || j == c[1] + r);
                for (int64_t k = c[2] - r; k <= c[2] + r; k += (edge_ij || r == 0) ? 1 : 2 * r) {
                    if (k < 0 || k >= n[2])
                        continue;
                    int64_t cell = (i * n[1] + j) * n[2] + k;
                    for (int64_t q = g->start[cell]; q < g->start[cell + 1]; q++) {
                        int64_t f = g->item[q];
                        if (g->seen[f] == mark)
                            continue;
                        g->seen[f] = mark;
                        vec3 o = triangle_offset(p, &g->tri[f]);
                        double d2 = dot(o, o);
                        if (d2 < best) {
                            best = d2;
                            best_offset = o;
                        }
                    }
                }
            }
        }
        /* Everything outside the searched block is farther than its nearest side. */
        double wall = INFINITY;
        for (int k = 0; k < 3; k++) {
            wall = fmin(wall, x[k] - (g->origin[k] + (c[k] - r) * g->cell));
            wall = fmin(wall, g->origin[k] + (c[k] + r + 1) * g->cell - x[k]);
        }
        if (best < INFINITY && (wall <= 0.0 ? 0 : best <= wall * wall))
            break;
    }
    return best < INFINITY ? sub(p, best_offset) : p;
}

static int iso_build(Iso *m, const double *vs, int64_t n, const int64_t *fc, int64_t nf, double crease_cos) {
    memset(m, 0, sizeof *m);
    int64_t he = 3 * nf;
    typedef struct { int64_t lo, hi, k; } Key;
    Key *keys = malloc((size_t)(he > 0 ? he : 1) * sizeof(Key));
    int64_t *id = malloc((size_t)(he > 0 ? he : 1) * sizeof(int64_t));
    int64_t *border_out = malloc((size_t)(n > 0 ? n : 1) * sizeof(int64_t));
    int ok = keys && id && border_out && iso_reserve(m, 2 * he + n + nf);
    m->nv = m->inputs = n;
    m->nf = nf;
    for (int64_t v = 0; ok && v < n; v++) {
        m->pos[3 * v] = vs[3 * v]; m->pos[3 * v + 1] = vs[3 * v + 1]; m->pos[3 * v + 2] = vs[3 * v + 2];
        m->out[v] = -1;
        m->val[v] = 0;
        m->stamp[v] = 0;
        border_out[v] = -1;
    }
    for (int64_t k = 0; ok && k < he; k++) {
        int64_t a = fc[k], b = fc[3 * (k / 3) + (k % 3 + 1) % 3];
        ok = a != b;
        keys[k].lo = a < b ? a : b;
        keys[k].hi = a < b ? b : a;
        keys[k].k = k;
    }
    if (ok) {
        /* sort by (lo, hi): a radix of two counting passes, hi then lo */
        Key *tmp = malloc((size_t)(he > 0 ? he : 1) * sizeof(Key));
        int64_t *count = calloc((size_t)n + 1, sizeof(int64_t));
        ok = tmp && count;
        for (int pass = 0; ok && pass < 2; pass++) {
            memset(count, 0, ((size_t)n + 1) * sizeof(int64_t));
            for (int64_t k = 0; k < he; k++)
                count[(pass ? keys[k].lo : keys[k].hi) + 1]++;
            for (int64_t v = 0; v < n; v++)
                count[v + 1] += count[v];
            for (int64_t k = 0; k < he; k++)
                tmp[count[pass ? keys[k].lo : keys[k].hi]++] = keys[k];
            memcpy(keys, tmp, (size_t)he * sizeof(Key));
        }
        free(tmp);
        free(count);
    }
    int64_t edges = 0;
    for (int64_t k = 0; ok && k < he;) {
        int64_t e = k + 1;
        while (e < he && keys[e].lo == keys[k].lo && keys[e].hi == keys[k].hi)
            e++;
        int64_t h = 2 * edges++;
        if (e - k == 1) {
            id[keys[k].k] = h;                               /* h + 1: a border half-edge */
        } else if (e - k == 2) {
            int64_t k1 = keys[k].k, k2 = keys[k + 1].k;
            ok = fc[k1] != fc[k2];                           /* opposite directions */
            id[k1] = h;
            id[k2] = h + 1;
        } else {
            ok = 0;                                          /* an edge of three faces or more */
        }
        k = e;
    }
    m->nh = 2 * edges;
    for (int64_t h = 0; ok && h < m->nh; h++) {
        m->twin[h] = h ^ 1;
        m->feat[h] = 0;
        m->face[h] = -1;
    }
    for (int64_t f = 0; ok && f < nf; f++) {
        int64_t h[3] = {id[3 * f], id[3 * f + 1], id[3 * f + 2]};
        for (int i = 0; i < 3; i++) {
            m->to[h[i]] = fc[3 * f + (i + 1) % 3];
            m->out[fc[3 * f + i]] = h[i];
        }
        iso_face(m, f, h[0], h[1], h[2]);
    }
    for (int64_t h = 0; ok && h < m->nh; h++)
        if (m->face[h] < 0) {
            int64_t twin = h ^ 1, tail = m->to[m->prev[twin]];    /* twin: tail -> to[twin] */
            m->to[h] = tail;
            int64_t origin = m->to[twin];
            if (border_out[origin] >= 0)
                ok = 0;                                      /* two border fans at one vertex */
            border_out[origin] = h;
            m->feat[h] = m->feat[twin] = 1;
        }
    for (int64_t h = 0; ok && h < m->nh; h++)
        if (m->face[h] < 0) {
            int64_t next = border_out[m->to[h]];
            ok = next >= 0;
            if (ok) {
                m->next[h] = next;
                m->prev[next] = h;
            }
        }
    for (int64_t v = 0; ok && v < n; v++)
        if (border_out[v] >= 0)
            m->out[v] = border_out[v];
    /* Every vertex's edges in one fan; creases by the dihedral angle. */
    int64_t *degree = ok ? calloc((size_t)n + 1, sizeof(int64_t)) : NULL;
    ok = ok && degree;
    for (int64_t h = 0; ok && h < m->nh; h++)
        degree[iso_from(m, h)]++;
    for (int64_t v = 0; ok && v < n; v++) {
        if (m->out[v] < 0)
            continue;
        int64_t w = m->out[v], count = 0;
        do {
            count++;
            w = iso_turn(m, w);
        } while (w != m->out[v] && count <= degree[v]);
        ok = count == degree[v];
        m->val[v] = count;
    }
    free(degree);
    for (int64_t h = 0; ok && crease_cos < 1.0 && h < m->nh; h += 2) {
        if (m->face[h] < 0 || m->face[h + 1] < 0)
            continue;
        Triangle s = face_triangle(vs, fc, m->face[h]), t = face_triangle(vs, fc, m->face[h + 1]);
        if (!s.degenerate && !t.degenerate && dot(s.unit, t.unit) < crease_cos)
            m->feat[h] = m->feat[h + 1] = 1;
    }
    free(keys);
    free(id);
    free(border_out);
    return ok;
}

/* isotropic_remesh(vertices, faces, length, crease_cos, iterations, max_length)
 *
 * vertices (n, 3) float64, faces (m, 3) int64: a manifold, consistently oriented triangle
 * mesh (open borders allowed); length: the edge length aimed at; crease_cos: edges whose
 * faces' normals have a lower cosine are creases (above 1: none); max_length: every edge is
 * split below it at the end. Returns (vertices bytes, faces bytes) as float64 and int64, or
 * None for a mesh the half-edge structure cannot hold (an edge of three faces, two fans at a
 * vertex, faces turned against each other, a repeated corner). */
static PyObject *isotropic_remesh(PyObject *self, PyObject *args) {
    Py_buffer vertices, faces, cancel = {0};
    double length, crease_cos, max_length;
    int iterations;
    if (!PyArg_ParseTuple(args, "y*y*ddid|y*", &vertices, &faces, &length, &crease_cos, &iterations, &max_length,
                          &cancel))
        return NULL;
    /* Another thread may set the cancel byte: the loops stop at their next check, and the caller
     * gets None (it knows why). */
    const volatile uint8_t *stop = cancel.buf != NULL && cancel.len >= 1 ? (const volatile uint8_t *)cancel.buf : NULL;
#define ISO_STOPPED() (stop != NULL && *stop)
    int64_t n = vertices.len / (3 * (Py_ssize_t)sizeof(double)), nf = faces.len / (3 * (Py_ssize_t)sizeof(int64_t));
    const int64_t *fc = faces.buf;
    const double *vs = vertices.buf;
    int ok = vertices.len == n * 3 * (Py_ssize_t)sizeof(double) && faces.len == nf * 3 * (Py_ssize_t)sizeof(int64_t)
             && length > 0.0 && max_length > 0.0 && iterations >= 0;
    for (int64_t i = 0; ok && i < 3 * nf; i++)
        ok = fc[i] >= 0 && fc[i] < n;
    if (!ok) {
        PyBuffer_Release(&vertices);
        PyBuffer_Release(&faces);
        if (cancel.buf)
            PyBuffer_Release(&cancel);
        PyErr_SetString(PyExc_ValueError, "isotropic_remesh: buffer sizes do not match, a face index is out of range "
                                          "or a length is not positive");
        return NULL;
    }
    if (nf == 0) {                                           /* nothing to remesh */
        PyBuffer_Release(&vertices);
        PyBuffer_Release(&faces);
        if (cancel.buf)
            PyBuffer_Release(&cancel);
        Py_RETURN_NONE;
    }
    Iso m;
    IsoGrid grid;
    memset(&grid, 0, sizeof grid);
    int built = 0, memory = 1, cancelled = 0;
    double *moved = NULL;
    uint8_t *held = NULL;
    int64_t order_cap = 1024;
    IsoLong *order = NULL;
    int64_t stack_cap = 64, *stack = NULL;
    Py_BEGIN_ALLOW_THREADS
    stack = malloc((size_t)stack_cap * sizeof(int64_t));
    order = malloc((size_t)order_cap * sizeof(IsoLong));
    built = iso_build(&m, vs, n, fc, nf, crease_cos);
    if (built)
        ISO_CHECK(&m, "build");
    memory = stack != NULL && order != NULL && (ISO_STOPPED() || iso_grid_build(&grid, vs, fc, nf, length));
    double hi2 = (4.0 / 3.0) * (4.0 / 3.0) * length * length, lo2 = 0.8 * 0.8 * length * length;
    /* a flip may leave a fold of at most half the crease angle (15 degrees without creases) */
    double min_cos = crease_cos < 1.0 ? cos(0.5 * acos(fmax(crease_cos, -1.0))) : 0.96592582628906831 /* cos 15 degrees */;
    for (int it = 0; built && memory && !ISO_STOPPED() && it <= iterations; it++) {
        double split2 = it < iterations ? hi2 : max_length * max_length;
        int64_t before = m.nv;
        /* Splits in passes, longest first, each by longest-edge bisection (new edges wait for
         * the next pass). Each edge once, from the lower of its half-edges (collapses pair
         * twins anew). */
        for (int64_t found = 1; memory && found && !ISO_STOPPED();) {
            /* one pass over the edges lists the long ones (the list grows as it must) */
            found = 0;
            for (int64_t h = 0; memory && h < m.nh; h++)
                if (m.to[h] >= 0 && m.twin[h] > h) {
                    double l2 = iso_len2(&m, h);
                    if (l2 > split2) {
                        if (found == order_cap) {
                            IsoLong *more = realloc(order, (size_t)(2 * order_cap) * sizeof(IsoLong));
                            memory = more != NULL;
                            if (!memory)
                                break;
                            order = more, order_cap *= 2;
                        }
                        order[found].h = h, order[found++].len2 = l2;
                    }
                }
            if (!found || !memory)
                break;
            {
                qsort(order, (size_t)found, sizeof(IsoLong), iso_longer_first);
                for (int64_t i = 0; memory && i < found && !((i & 1023) == 0 && ISO_STOPPED()); i++)
                    memory = iso_split_longest(&m, order[i].h, split2, &stack, &stack_cap);
                /* Bisection keeps a sliver's angles: flips toward Delaunay between the passes
                 * spare a coarse mesh's slivers from being cut into ever more slivers (the truck
                 * at Instant Meshes' 2,041 faces: 43,000 vertices after the first splits, 62,000
                 * without; a box 10 x 0.05 x 0.05 at 0.05: 1,058 vertices after three rounds,
                 * 2,005 with flips only near the vertices a pass adds). */
                for (int64_t h = 0; h < m.nh && !((h & 1023) == 0 && ISO_STOPPED()); h++)
                    if (m.to[h] >= 0 && m.twin[h] > h && iso_flip_delaunay(&m, h, min_cos)) {
                        iso_flip(&m, h);
                        ISO_CHECK_EACH(&m, "delaunay flip");
                    }
            }
        }
        ISO_CHECK(&m, "splits");
        if (it == iterations) {
            for (int64_t v = before; v < m.nv && !((v & 255) == 0 && ISO_STOPPED()); v++)   /* the last splits' midpoints */
                iso_set(&m, v, iso_closest(&grid, iso_p(&m, v)));
            break;
        }
        for (int64_t h = 0; h < m.nh && !((h & 1023) == 0 && ISO_STOPPED()); h++) {
            if (m.to[h] < 0 || m.twin[h] < h || iso_len2(&m, h) >= lo2)
                continue;
            for (int side = 0; side < 2; side++) {
                int64_t e = side ? m.twin[h] : h, a = iso_from(&m, e), b = m.to[e];
                if (!iso_may_collapse(&m, e))
                    continue;
                /* onto the midpoint when both ends are free, else onto the end that is not (the
                 * walk around b only for a collapse that may happen) */
                int free_b = !m.feat[e] && b >= m.inputs && !iso_on_border(&m, b) && iso_creases_at(&m, b) == 0;
                vec3 at = free_b ? scale(add(iso_p(&m, a), iso_p(&m, b)), 0.5) : iso_p(&m, b);
                if (iso_ring_allows(&m, a, b, at, hi2) && iso_ring_allows(&m, b, a, at, hi2)) {
                    iso_collapse(&m, e, at);
                    ISO_CHECK_EACH(&m, "collapse");
                    break;
                }
            }
        }
        ISO_CHECK(&m, "collapses");
        for (int64_t h = 0; h < m.nh && !((h & 1023) == 0 && ISO_STOPPED()); h++)
            if (m.to[h] >= 0 && m.twin[h] > h && iso_flip_gains(&m, h, min_cos)) {
                iso_flip(&m, h);
                ISO_CHECK_EACH(&m, "flip");
            }
        ISO_CHECK(&m, "flips");
        moved = realloc(moved, (size_t)(3 * m.nv) * sizeof(double));
        held = realloc(held, (size_t)m.nv);
        if (!moved || !held) {
            memory = 0;
            break;
        }
        /* The ends of crease and border edges stay (feat is equal on twins, so each edge marks
         * both): one pass over the half-edges instead of a walk around every vertex. */
        memset(held, 0, (size_t)m.nv);
        for (int64_t h = 0; h < m.nh; h++)
            if (m.feat[h] && m.to[h] >= 0)
                held[m.to[h]] = 1;
        for (int64_t v = 0; v < m.nv && !((v & 1023) == 0 && ISO_STOPPED()); v++) {
            vec3 p = m.out[v] >= 0 ? iso_p(&m, v) : (vec3){0.0, 0.0, 0.0};
            if (v >= m.inputs && m.out[v] >= 0 && !held[v]) {
                vec3 centre = {0.0, 0.0, 0.0}, normal = {0.0, 0.0, 0.0};
                int64_t w = m.out[v], count = 0;
                do {
                    int64_t x = m.to[w], y = m.to[m.next[w]];
                    centre = add(centre, iso_p(&m, x));
                    normal = add(normal, cross(sub(iso_p(&m, x), p), sub(iso_p(&m, y), p)));
                    count++;
                    w = iso_turn(&m, w);
                } while (w != m.out[v]);
                vec3 step = sub(scale(centre, 1.0 / count), p);
                double nn = dot(normal, normal);
                if (nn > 0.0)
                    step = sub(step, scale(normal, dot(step, normal) / nn));
                p = add(p, step);
                if (it == iterations - 1)                        /* back onto the input once, at the end */
                    p = iso_closest(&grid, p);
            }
            moved[3 * v] = p.x; moved[3 * v + 1] = p.y; moved[3 * v + 2] = p.z;
        }
        memcpy(m.pos, moved, (size_t)(3 * m.nv) * sizeof(double));
    }
    cancelled = ISO_STOPPED();
    Py_END_ALLOW_THREADS
#undef ISO_STOPPED
    free(moved);
    free(held);
    free(order);
    free(stack);
    iso_grid_free(&grid);
    PyBuffer_Release(&vertices);
    PyBuffer_Release(&faces);
    if (cancel.buf)
        PyBuffer_Release(&cancel);
    if (cancelled) {
        iso_free(&m);
        Py_RETURN_NONE;
    }
    if (!memory) {
        iso_free(&m);
        return PyErr_NoMemory();
    }
    if (!built) {
        iso_free(&m);
        Py_RETURN_NONE;
    }
    int64_t *index = malloc((size_t)(m.nv > 0 ? m.nv : 1) * sizeof(int64_t)), kept = 0, faces_kept = 0;
    if (!index) {
        iso_free(&m);
        return PyErr_NoMemory();
    }
    for (int64_t v = 0; v < m.nv; v++)
        index[v] = m.out[v] >= 0 ? kept++ : -1;
    for (int64_t f = 0; f < m.nf; f++)
        faces_kept += m.fhe[f] >= 0;
    PyObject *vb = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(kept * 3 * sizeof(double)));
    PyObject *fb = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(faces_kept * 3 * sizeof(int64_t)));
    if (vb && fb) {
        double *ov = (double *)PyBytes_AS_STRING(vb);
        int64_t *of = (int64_t *)PyBytes_AS_STRING(fb);
        for (int64_t v = 0; v < m.nv; v++)
            if (index[v] >= 0)
                memcpy(ov + 3 * index[v], m.pos + 3 * v, 3 * sizeof(double));
        for (int64_t f = 0, i = 0; f < m.nf; f++) {
            int64_t h = m.fhe[f];
            if (h < 0)
                continue;
            of[3 * i] = index[iso_from(&m, h)];
            of[3 * i + 1] = index[m.to[h]];
            of[3 * i + 2] = index[m.to[m.next[h]]];
            i++;
        }
    }
    free(index);
    iso_free(&m);
    if (!vb || !fb) {
        Py_XDECREF(vb);
        Py_XDECREF(fb);
        return NULL;
    }
    return Py_BuildValue("NN", vb, fb);
}

static PyMethodDef methods[] = {
    {"band_distance", band_distance, METH_VARARGS, "Exact distances at band nodes (see _native.c)."},
    {"tangent_normals", tangent_normals, METH_VARARGS, "Input normals at crossings (see _native.c)."},
    {"place_vertices", place_vertices, METH_VARARGS, "Dual contouring vertices (see _native.c)."},
    {"probe_regions", probe_regions, METH_VARARGS, "Regions ahead of and behind shell nodes (see _native.c)."},
    {"cell_codes", cell_codes, METH_VARARGS, "Sign codes of the cells of band blocks (see _native.c)."},
    {"dual_quads", dual_quads, METH_VARARGS, "Quads and crossings of the cut edges (see _native.c)."},
    {"exact_at_crossings", exact_at_crossings, METH_VARARGS, "Distances at sign changes off the shell (see _native.c)."},
    {"short_edge_ends", short_edge_ends, METH_VARARGS, "Ends of nearly zero-length quad edges (see _native.c)."},
    {"split_quads", split_quads, METH_VARARGS, "Quads to triangles (see _native.c)."},
    {"halfedge_links", halfedge_links, METH_VARARGS, "Edge numbers and twins of half-edges (see _native.c)."},
    {"sheet_steps", sheet_steps, METH_VARARGS, "Steps of a sheet's slab vertices onto it (see _native.c)."},
    {"turned_over", turned_over, METH_VARARGS, "Triangles whose normal a move turned over (see _native.c)."},
    {"closest_of_candidates", closest_of_candidates, METH_VARARGS, "Closest points among candidate faces (see _native.c)."},
    {"reduce_poles", reduce_poles, METH_VARARGS, "Edge rotations and diagonal collapses toward valence 4 (see _native.c)."},
    {"corner_angles", corner_angles, METH_VARARGS, "Corner angles of quads (see _native.c)."},
    {"widen_in_order", widen_in_order, METH_VARARGS, "Flat quad corners widened vertex by vertex (see _native.c)."},
    {"isotropic_remesh", isotropic_remesh, METH_VARARGS, "Isotropic remeshing of a triangle mesh (see _native.c)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_native", "Compiled kernels of backend.mesh.", -1,
                                    methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__native(void) { return PyModule_Create(&module); }
