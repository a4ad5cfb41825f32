"""Meshes as token sequences: a compact, lossless, prefix-decodable tokenization, with a grammar.

One module for training and serving. A mesh is first *quantized* (:func:`quantize`): its box
scaled into ``levels = 2**bits`` integer steps a side (7 bits, 128 levels, by default), vertices
that land on the same step merged, faces that collapse dropped (and counted). The tokenizer is
lossless on that quantized mesh: ``decode(encode(m))`` gives back the same faces over the same
integer coordinates, each with its orientation, quads as quads.

The encoding: a gate traversal
------------------------------
The mesh is grown face by face from a *loop*: the boundary of the faces emitted so far, a cycle
of vertices whose edges are half-edges of emitted faces, one of which is the *gate*. Every token
either adds the face across the gate (its third vertex named as cheaply as possible) or says
there is none:

============== ====== ==================================================================
token          cost   the face across the gate ``u -> v`` is ``(v, u, w)`` with ``w`` =
============== ====== ==================================================================
block, offset  2      a vertex given by its coordinates (new, or a copy of one seen before)
``L``          1      the loop vertex before ``u``
``R``          1      the loop vertex after ``v``
``E``          1      the loop's last vertex (a loop of three closes)
``S+k``        1      the loop vertex ``k`` steps after ``v`` (the loop splits in two)
``S-k``        1      the loop vertex ``k`` steps before ``u``
``B``          1      no face: the gate is a border; the gate moves on
``Q``          1      the next two faces are one quad ``(v, u, w, y)``
``START``      1      a new piece: three vertices by coordinates (``START_QUAD``: a quad's
                      first three corners; its fourth follows as an op)
``EOS``        1      the end
============== ====== ==================================================================

Coordinates take two tokens, a *block* (the high bits of x, y, z) and an *offset* (the low
bits): 512 + 4,096 tokens at 7 bits. A closed manifold mesh has about half as many vertices as
faces, so about half the faces cost two tokens and the rest one: about 1.5 tokens a face.
Borders cost a ``B`` per border edge, pieces a ``START`` and three vertices.

Anything the traversal cannot reach by ``L``, ``R``, ``E`` or ``S`` (a vertex on another loop,
a non-manifold edge, a face whose neighbour has the other orientation) is named by coordinates:
the decoder merges vertices with equal coordinates at the end, which is exact because the
quantized mesh has one vertex per coordinate. So the encoding never fails on a valid quantized
mesh, whatever its topology; it only gets longer.

Grammar
-------
:class:`Decoder` is the one state machine: the encoder chooses tokens and feeds them through it,
and :meth:`Decoder.allowed` gives, for any prefix, the tokens that keep it decodable (ops the
loop can take; coordinates that make no degenerate face), so a sampler masked by it always
decodes to a mesh (:meth:`Decoder.mesh`, at any point).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_BITS = 7
#: Loop pointers ``S+k`` / ``S-k`` go up to this many steps; farther vertices are named by coordinates.
DEFAULT_MAX_SPLIT = 32


# -- quantization ------------------------------------------------------------------------------


@dataclass
class QuantizedMesh:
    """Integer vertices (unique rows) and faces (each a tuple of 3 or 4 vertex ids), plus the map back.

    ``vertices * scale + offset`` gives the mesh's frame back (to within half a step).
    """

    vertices: np.ndarray          # (n, 3) int64 in [0, levels)
    faces: list[tuple[int, ...]]
    bits: int = DEFAULT_BITS
    scale: float = 1.0
    offset: np.ndarray | None = None
    dropped_faces: int = 0        # faces that collapsed (repeated vertices) when quantized

    @property
    def triangles(self) -> int:
        return sum(len(f) == 3 for f in self.faces)

    @property
    def quads(self) -> int:
        return sum(len(f) == 4 for f in self.faces)

    def dequantized(self) -> np.ndarray:
        offset = np.zeros(3) if self.offset is None else self.offset
        return self.vertices.astype(np.float64) * self.scale + offset


def quantize(vertices: np.ndarray, faces, bits: int = DEFAULT_BITS) -> QuantizedMesh:
    """Scale a mesh's box into ``2**bits`` steps a side (longest side; centred), merge vertices that
    share a step, drop faces that collapse (counted in ``dropped_faces``) and vertices no face uses.

    ``faces``: an (m, 3) / (m, 4) array or a list of 3- or 4-tuples.
    """
    vertices = np.asarray(vertices, dtype=np.float64)
    if vertices.ndim != 2 or vertices.shape[1] != 3 or not len(vertices):
        raise ValueError(f"vertices must be a non-empty (n, 3) array, got shape {vertices.shape}")
    if not np.isfinite(vertices).all():
        raise ValueError("vertices hold NaN or infinite coordinates")
    levels = 1 << bits
    lo, hi = vertices.min(0), vertices.max(0)
    extent = float((hi - lo).max()) or 1.0
    scale = extent / (levels - 1)
    offset = (lo + hi) / 2 - scale * (levels - 1) / 2
    q = np.clip(np.round((vertices - offset) / scale), 0, levels - 1).astype(np.int64)
    unique, inverse = np.unique(q, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    kept, dropped = [], 0
    for face in faces:
        f = tuple(int(inverse[i]) for i in face)
        if len(f) not in (3, 4):
            raise ValueError(f"faces must be triangles or quads, got one with {len(f)} corners")
        if len(set(f)) < len(f):
            dropped += 1
            continue
        kept.append(f)
    used = sorted({i for f in kept for i in f})
    remap = {old: new for new, old in enumerate(used)}
    return QuantizedMesh(unique[used], [tuple(remap[i] for i in f) for f in kept], bits, scale, offset, dropped)


# -- the vocabulary ----------------------------------------------------------------------------


class Vocabulary:
    """Token ids of the gate traversal for a quantization (``bits``) and a split range."""

    SPECIAL = ("PAD", "BOS", "EOS", "START", "START_QUAD", "QUAD", "L", "R", "E", "B")

    def __init__(self, bits: int = DEFAULT_BITS, max_split: int = DEFAULT_MAX_SPLIT):
        if not 2 <= bits <= 10:
            raise ValueError(f"bits must be in 2..10, got {bits}")
        self.bits = bits
        self.levels = 1 << bits
        self.block_bits = bits // 2
        self.offset_bits = bits - self.block_bits
        self.max_split = max_split
        for k, name in enumerate(self.SPECIAL):
            setattr(self, name, k)
        self.split_forward = len(self.SPECIAL)                    # S+k, k = 2 .. max_split + 1
        self.split_back = self.split_forward + max_split         # S-k
        self.block = self.split_back + max_split
        self.blocks = 1 << (3 * self.block_bits)
        self.offset = self.block + self.blocks
        self.offsets = 1 << (3 * self.offset_bits)
        self.size = self.offset + self.offsets

    def __len__(self) -> int:
        return self.size

    def coordinate_tokens(self, xyz) -> tuple[int, int]:
        x, y, z = (int(c) for c in xyz)
        ob, mask = self.offset_bits, (1 << self.offset_bits) - 1
        bb = self.block_bits
        block = ((x >> ob) << (2 * bb)) | ((y >> ob) << bb) | (z >> ob)
        offset = ((x & mask) << (2 * ob)) | ((y & mask) << ob) | (z & mask)
        return self.block + block, self.offset + offset

    def coordinates(self, block_token: int, offset_token: int) -> tuple[int, int, int]:
        b, o = block_token - self.block, offset_token - self.offset
        bb, ob = self.block_bits, self.offset_bits
        bm, om = (1 << bb) - 1, (1 << ob) - 1
        return (((b >> 2 * bb) & bm) << ob | ((o >> 2 * ob) & om),
                ((b >> bb) & bm) << ob | ((o >> ob) & om),
                (b & bm) << ob | (o & om))

    def name(self, token: int) -> str:
        if token < len(self.SPECIAL):
            return self.SPECIAL[token]
        if token < self.split_back:
            return f"S+{token - self.split_forward + 2}"
        if token < self.block:
            return f"S-{token - self.split_back + 2}"
        if token < self.offset:
            return f"block{token - self.block}"
        return f"offset{token - self.offset}"


# -- the state machine -------------------------------------------------------------------------


class DecodeError(ValueError):
    """A token the grammar does not allow at that point."""


class _Loop:
    """A cycle of vertex ids; edge ``i`` runs from ``verts[i]`` to ``verts[i + 1]``; ``open[i]``: not a border."""

    __slots__ = ("verts", "open", "gate")

    def __init__(self, verts: list[int], gate: int = 0):
        self.verts = verts
        self.open = [True] * len(verts)
        self.gate = gate

    def __len__(self) -> int:
        return len(self.verts)

    def at(self, i: int) -> int:
        return self.verts[i % len(self.verts)]

    def is_open(self, i: int) -> bool:
        return self.open[i % len(self.verts)]


class Decoder:
    """The gate traversal's state machine: feed tokens (:meth:`push`), read the mesh (:meth:`mesh`).

    Phases: ``piece`` (expects START / START_QUAD / EOS), ``start`` (the three coordinates of a
    piece's first face), ``op`` (a token for the gate), ``offset`` (after a block token), ``done``.
    """

    def __init__(self, vocab: Vocabulary | None = None):
        self.vocab = vocab or Vocabulary()
        self.vertices: list[tuple[int, int, int]] = []
        self.faces: list[tuple[int, ...]] = []          # decoder vertex ids
        self.loops: list[_Loop] = []                    # a stack; the top is the current loop
        self.phase = "piece"
        self.block_token: int | None = None
        self.pending = ""                               # what the coordinates being read are for: start / op
        self.start: list[int] = []                      # vertex ids of the piece's first face so far
        self.start_quad = False
        self.quad_step = 0                              # 1: next op is a quad's first half; 2: its second
        self._quad_first = -1
        self.tokens: list[int] = []

    # -- reading ---------------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self.phase == "done"

    def face_count(self) -> int:
        return len(self.faces)

    def mesh(self) -> tuple[np.ndarray, list[tuple[int, ...]]]:
        """The faces so far over merged vertices (one per coordinate): (vertices (n, 3) int64, faces)."""
        index: dict[tuple[int, int, int], int] = {}
        verts: list[tuple[int, int, int]] = []
        faces = []
        for face in self.faces:
            out = []
            for v in face:
                xyz = self.vertices[v]
                if xyz not in index:
                    index[xyz] = len(verts)
                    verts.append(xyz)
                out.append(index[xyz])
            faces.append(tuple(out))
        return np.asarray(verts, dtype=np.int64).reshape(-1, 3), faces

    def _gate(self) -> tuple[_Loop, int, int, int]:
        loop = self.loops[-1]
        g = loop.gate
        return loop, g, loop.at(g), loop.at(g + 1)

    # -- the grammar -----------------------------------------------------------------------------

    def _op_choices(self) -> dict[int, int]:
        """Loop ops allowed at the gate: {token: index of the third vertex in the loop}."""
        voc = self.vocab
        loop, g, u, v = self._gate()
        n = len(loop)
        forbidden = self._forbidden_coordinates()
        first_half = self.quad_step == 1

        def distinct(i: int) -> bool:
            return self.vertices[loop.at(i)] not in forbidden

        out: dict[int, int] = {}
        if n == 3:
            if not first_half and loop.is_open(g + 1) and loop.is_open(g + 2) and distinct(g + 2):
                out[voc.E] = g + 2
            return out
        if loop.is_open(g - 1) and distinct(g - 1):
            out[voc.L] = g - 1
        if not first_half and loop.is_open(g + 1) and distinct(g + 2):
            out[voc.R] = g + 2
        for k in range(2, min(n - 3, voc.max_split + 1) + 1):       # forward from v: k <= back distance
            if k <= n - 1 - k and distinct(g + 1 + k):
                out[voc.split_forward + k - 2] = g + 1 + k
        for j in range(2, min(n - 3, voc.max_split + 1) + 1):       # back from u: j < forward distance
            if j < n - 1 - j and distinct(g - j):
                out[voc.split_back + j - 2] = g - j
        return out

    def _forbidden_coordinates(self) -> set[tuple[int, int, int]]:
        """Coordinates the vertex being read may not have: they would make a degenerate face."""
        if self.phase in ("start", "offset") and self.pending == "start":
            return {self.vertices[v] for v in self.start}
        loop, g, u, v = self._gate()
        out = {self.vertices[u], self.vertices[v]}
        if self.quad_step == 2:                          # a quad's fourth corner: none of the other three
            out |= {self.vertices[i] for i in self.faces[self._quad_first]}
        return out

    def allowed(self) -> np.ndarray:
        """A boolean mask over the vocabulary: the tokens that may come next."""
        voc = self.vocab
        mask = np.zeros(voc.size, dtype=bool)
        if self.phase == "done":
            return mask
        if self.phase == "piece":
            mask[[voc.START, voc.START_QUAD]] = True
            mask[voc.EOS] = bool(self.faces)
            return mask
        if self.phase == "offset":
            mask[voc.offset:voc.offset + voc.offsets] = True
            for xyz in self._forbidden_coordinates():
                block, offset = voc.coordinate_tokens(xyz)
                if block == self.block_token:
                    mask[offset] = False
            return mask
        mask[voc.block:voc.block + voc.blocks] = True                  # a vertex by coordinates
        if self.phase == "start":
            return mask
        for token in self._op_choices():
            mask[token] = True
        if self.quad_step == 0:
            mask[[voc.B, voc.QUAD]] = True
        return mask

    # -- feeding ---------------------------------------------------------------------------------

    def push(self, token: int) -> None:
        """Apply one token (raises :class:`DecodeError` if the grammar does not allow it)."""
        voc = self.vocab
        token = int(token)
        phase = self.phase
        if phase == "done":
            raise DecodeError("tokens after EOS")
        if phase == "piece":
            if token == voc.EOS and self.faces:
                self.phase = "done"
            elif token in (voc.START, voc.START_QUAD):
                self.phase, self.start, self.start_quad = "start", [], token == voc.START_QUAD
            else:
                raise DecodeError(f"{voc.name(token)} where a piece starts (START, START_QUAD or EOS)")
        elif phase == "offset":
            if not voc.offset <= token < voc.offset + voc.offsets:
                raise DecodeError(f"{voc.name(token)} after a block token (an offset token must follow)")
            xyz = voc.coordinates(self.block_token, token)
            if xyz in self._forbidden_coordinates():
                raise DecodeError(f"vertex {xyz} would make a degenerate face")
            self.vertices.append(xyz)
            new = len(self.vertices) - 1
            self.block_token = None
            if self.pending == "op":
                self.phase = "op"
                self._apply_face(new, None)
            else:
                self.start.append(new)
                self.phase = "start"
                if len(self.start) == 3:
                    self._start_piece()
        elif voc.block <= token < voc.block + voc.blocks:                # phase start or op
            self.block_token, self.phase, self.pending = token, "offset", phase
        elif phase == "start":
            raise DecodeError(f"{voc.name(token)} in a piece's first face (coordinates must follow)")
        elif token == voc.B and self.quad_step == 0:
            loop, g, _, _ = self._gate()
            loop.open[g % len(loop)] = False
            self._advance(loop, g + 1)
        elif token == voc.QUAD and self.quad_step == 0:
            self.quad_step = 1
        else:
            choices = self._op_choices()
            if token not in choices:
                raise DecodeError(f"{voc.name(token)} is not possible at this gate")
            self._apply_face(None, choices[token], token)
        self.tokens.append(token)

    def _start_piece(self) -> None:
        a, b, c = self.start
        self.faces.append((a, b, c))
        loop = _Loop([a, b, c], gate=2 if self.start_quad else 0)
        self.loops.append(loop)
        self.start = []
        self.phase = "op"
        self.quad_step = 2 if self.start_quad else 0
        self._quad_first = len(self.faces) - 1 if self.start_quad else None

    def _apply_face(self, new: int | None, index: int | None, token: int | None = None) -> None:
        """The face across the gate, third vertex ``new`` (inserted) or the loop vertex at ``index``."""
        voc = self.vocab
        loop, g, u, v = self._gate()
        n = len(loop)
        g %= n
        if new is not None:                                     # C: u, new, v; gate new -> v
            w = new
            loop.verts.insert(g + 1, w)
            loop.open[g] = True
            loop.open.insert(g + 1, True)
            loop.gate = g + 1
        else:
            w = loop.at(index)
            if token == voc.E:
                self.loops.pop()
            elif token == voc.L:                                # drop u; gate w -> v
                del loop.verts[g]
                del loop.open[g]
                i = g - 1 if g > 0 else len(loop) - 1
                loop.open[i] = True
                loop.gate = i
            elif token == voc.R:                                # drop v; gate u -> w
                j = (g + 1) % n
                del loop.verts[j]
                del loop.open[j]
                i = g - 1 if j < g else g                       # u moved down when v was at index 0
                loop.open[i] = True
                loop.gate = i
            else:                                               # S: split at w
                k = (index - g - 1) % n                         # steps from v to w
                order = [(g + 1 + t) % n for t in range(n)]     # v, ..., w, ..., u
                first = order[:k + 1]                           # v .. w, closed by w -> v
                second = order[k:]                              # w .. u, closed by u -> w
                one = _Loop([loop.verts[i] for i in first])
                one.open = [loop.open[i] for i in first[:-1]] + [True]
                one.gate = len(one) - 1
                two = _Loop([loop.verts[i] for i in second])
                two.open = [loop.open[i] for i in second[:-1]] + [True]
                two.gate = len(two) - 1
                self.loops[-1] = two
                self.loops.append(one)
        self.faces.append((v, u, w))
        if self.quad_step == 1:
            self.quad_step = 2
            self._quad_first = len(self.faces) - 1
        elif self.quad_step == 2:                               # merge (v0, u0, w0) + (w0, ?, y): a quad
            first = self.faces[self._quad_first]
            second = self.faces.pop()
            a, b, c = first
            y = second[2]
            self.faces[self._quad_first] = (a, b, c, y)
            self.quad_step = 0
        if not self.loops:
            self.phase = "piece"
        elif not any(self.loops[-1].open):
            self._finish_loop()

    def _advance(self, loop: _Loop, start: int) -> None:
        n = len(loop)
        for t in range(n):
            if loop.open[(start + t) % n]:
                loop.gate = (start + t) % n
                return
        self._finish_loop()

    def _finish_loop(self) -> None:
        self.loops.pop()
        while self.loops and not any(self.loops[-1].open):
            self.loops.pop()
        if not self.loops:
            self.phase = "piece"
        else:
            self._advance(self.loops[-1], self.loops[-1].gate)


# -- encoding and decoding ---------------------------------------------------------------------


def _check(mesh: QuantizedMesh) -> None:
    v = np.asarray(mesh.vertices)
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"vertices must be (n, 3), got {v.shape}")
    if len(v) and (v.min() < 0 or v.max() >= 1 << mesh.bits):
        raise ValueError(f"vertex coordinates must lie in 0..{(1 << mesh.bits) - 1} (quantize the mesh first)")
    if len(np.unique(v, axis=0)) != len(v):
        raise ValueError("two vertices share coordinates: quantize() merges them")
    bad = [i for i, f in enumerate(mesh.faces) if len(f) not in (3, 4)]
    if bad:
        raise ValueError(f"{len(bad)} face(s) are neither triangles nor quads (e.g. face {bad[0]}); triangulate them")
    degenerate = [i for i, f in enumerate(mesh.faces) if len(set(f)) < len(f)]
    if degenerate:
        raise ValueError(f"{len(degenerate)} degenerate face(s) repeat a vertex (e.g. face {degenerate[0]}: "
                         f"{tuple(mesh.faces[degenerate[0]])}); quantize() drops them")
    out = [i for i, f in enumerate(mesh.faces) if min(f) < 0 or max(f) >= len(v)]
    if out:
        raise ValueError(f"{len(out)} face(s) name vertices that do not exist (e.g. face {out[0]})")
    if not mesh.faces:
        raise ValueError("the mesh has no faces")


def face_order(vertices: np.ndarray, faces: list[tuple[int, ...]]) -> tuple[np.ndarray, list[int]]:
    """Vertex ranks (by z, then y, then x) and faces sorted by their ranks, lowest first (as MeshGPT
    orders them): pieces start at the bottom of the mesh."""
    order = np.lexsort((vertices[:, 0], vertices[:, 1], vertices[:, 2]))
    rank = np.empty(len(vertices), dtype=np.int64)
    rank[order] = np.arange(len(vertices))
    keys = [tuple(sorted(rank[list(f)])) for f in faces]
    return rank, sorted(range(len(faces)), key=keys.__getitem__)


def encode(mesh: QuantizedMesh, vocab: Vocabulary | None = None) -> list[int]:
    """The tokens of a quantized mesh (ending with EOS; no BOS). Raises ValueError on degenerate input."""
    voc = vocab or Vocabulary(mesh.bits)
    if voc.bits != mesh.bits:
        raise ValueError(f"the vocabulary is for {voc.bits} bits, the mesh is quantized to {mesh.bits}")
    _check(mesh)
    verts = np.asarray(mesh.vertices, dtype=np.int64)
    faces = [tuple(int(i) for i in f) for f in mesh.faces]
    across: dict[tuple[int, int], list[int]] = {}
    for fi, f in enumerate(faces):
        for i in range(len(f)):
            across.setdefault((f[i], f[(i + 1) % len(f)]), []).append(fi)
    rank, order = face_order(verts, faces)
    emitted = np.zeros(len(faces), dtype=bool)
    dec = Decoder(voc)
    original: list[int] = []                            # decoder vertex id -> mesh vertex id
    preference = {voc.E: 0, voc.L: 1, voc.R: 2}

    def emit(token: int) -> None:
        dec.push(token)

    def by_coordinates(o: int) -> None:
        block, offset = voc.coordinate_tokens(verts[o])
        emit(block)
        emit(offset)
        original.append(o)

    def name(o: int) -> None:
        """The gate's third vertex: by a loop op when the loop holds it, else by coordinates."""
        loop = dec.loops[-1]
        found = [(preference.get(t, 3), abs(((i - loop.gate) % len(loop)) - len(loop) / 2) * -1, t)
                 for t, i in dec._op_choices().items() if original[loop.at(i)] == o]
        if found:
            emit(min(found)[2])
        else:
            by_coordinates(o)

    cursor = 0
    while True:
        if dec.phase == "piece":
            while cursor < len(order) and emitted[order[cursor]]:
                cursor += 1
            if cursor == len(order):
                emit(voc.EOS)
                break
            fi = order[cursor]
            emitted[fi] = True
            f = faces[fi]
            low = min(range(len(f)), key=lambda i: rank[f[i]])
            f = f[low:] + f[:low]
            emit(voc.START_QUAD if len(f) == 4 else voc.START)
            for o in f[:3]:
                by_coordinates(o)
            if len(f) == 4:
                name(f[3])
            continue
        loop, g, u, v = dec._gate()
        ou, ov = original[u], original[v]
        fi = next((c for c in across.get((ov, ou), ()) if not emitted[c]), None)
        if fi is None:
            emit(voc.B)
            continue
        emitted[fi] = True
        f = faces[fi]
        i = next(i for i in range(len(f)) if f[i] == ov and f[(i + 1) % len(f)] == ou)
        f = f[i:] + f[:i]
        if len(f) == 4:
            emit(voc.QUAD)
        for o in f[2:]:
            name(o)
    return dec.tokens


def decode(tokens, vocab: Vocabulary | None = None, *, strict: bool = True) -> tuple[np.ndarray, list[tuple[int, ...]]]:
    """The mesh of a token sequence (a leading BOS and PAD are skipped; stops at EOS).

    ``strict``: a token the grammar refuses raises :class:`DecodeError`; otherwise decoding stops
    there and the faces so far are returned (as a sampler's partial output would be).
    """
    dec = Decoder(vocab)
    voc = dec.vocab
    for token in tokens:
        token = int(token)
        if token in (voc.BOS, voc.PAD) and not dec.tokens:
            continue
        if token == voc.PAD:
            break
        try:
            dec.push(token)
        except DecodeError:
            if strict:
                raise
            break
        if dec.finished:
            break
    return dec.mesh()


def same_mesh(a_vertices, a_faces, b_vertices, b_faces) -> bool:
    """Whether two meshes have the same faces over the same coordinates (orientation and polygon sizes
    included; vertex and face order ignored)."""
    def canonical(vertices, faces):
        out = []
        for f in faces:
            xyz = [tuple(int(c) for c in vertices[i]) for i in f]
            low = min(range(len(xyz)), key=xyz.__getitem__)
            out.append(tuple(xyz[low:] + xyz[:low]))
        return sorted(out)

    return canonical(a_vertices, a_faces) == canonical(b_vertices, b_faces)


# -- reference encodings, for the bench ------------------------------------------------------


def naive_tokens(mesh: QuantizedMesh) -> int:
    """Tokens of the naive encoding: every face as its corners' three coordinates (9 a triangle,
    12 a quad), plus EOS."""
    return sum(3 * len(f) for f in mesh.faces) + 1


def amt_tokens(mesh: QuantizedMesh) -> int:
    """Tokens of an adjacent-mesh encoding in the manner of MeshAnything V2's AMT (our own take):
    faces in the canonical order; a face that shares the last two emitted vertices, in the
    orientation a triangle strip gives, costs the one new vertex (3 coordinate tokens); any other
    face costs a separator and its corners (1 + 3 per corner). Quads count as two triangles."""
    _, order = face_order(np.asarray(mesh.vertices), mesh.faces)
    triangles = []
    for fi in order:
        f = mesh.faces[fi]
        triangles += [f] if len(f) == 3 else [(f[0], f[1], f[2]), (f[0], f[2], f[3])]
    remaining = set(range(len(triangles)))
    by_edge: dict[tuple[int, int], list[int]] = {}
    for ti, (a, b, c) in enumerate(triangles):
        for e in ((a, b), (b, c), (c, a)):
            by_edge.setdefault(e, []).append(ti)
    tokens = 1                                          # EOS
    while remaining:
        ti = min(remaining)
        remaining.discard(ti)
        a, b, c = triangles[ti]
        tokens += 1 + 9
        # A strip leaves each triangle through the edge of its two newest vertices; the next
        # triangle holds that half-edge reversed and adds one vertex.
        leave, last = (b, c), c
        while True:
            nxt = next((t for t in by_edge.get((leave[1], leave[0]), ()) if t in remaining), None)
            if nxt is None:
                break
            remaining.discard(nxt)
            tri = triangles[nxt]
            w = next(x for x in tri if x not in leave)
            k = tri.index(last)
            leave = (last, w) if tri[(k + 1) % 3] == w else (w, last)
            last = w
            tokens += 3
    return tokens
