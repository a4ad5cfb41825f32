"""Marching cubes in numpy: the closed surface where a sampled field crosses a level.

The same triangles as PyMCubes, cell for cell: its case table is written out in ``_TRIANGLES``
so that nothing compiled is needed (the extension zips run on Blender's Python, for which
PyMCubes publishes no build on Python 3.13). A vertex is placed on
each cut grid edge by linear interpolation and shared by the cells around that edge, so a
field that is below the level inside a closed region gives a closed, manifold surface.
``tests/backend/mesh/remesh/test_marching.py`` derives the table again from PyMCubes and compares
whole meshes with it.
"""

from __future__ import annotations

import functools

import numpy as np

from backend.mesh.remesh.dual import CORNERS, EDGES

#: Per sign code (bit ``c`` set when corner ``c`` of the cell is below the level; 8 codes a
#: line), the cell's triangles as triples of edge indices (hex digits into ``EDGES``), "-" for none.
_TRIANGLES = (
    "- 201 430 412314 156 256052 043156 543564624",
    "375 120537 704507 175127247 361763 320372762 061046476 246476",
    "298 901809 298043 498439319 982615 956985805 829043615 435845856869",
    "298537 098019537 075047829 847871819517 637613298 976907980037 982614647410 984946647",
    "8a4 8a4201 830a38 8128a1a31 8a4615 25620548a 38a308156 8a3836862635",
    "48a375 20148a537 78a758508 1752712a728a 361376a48 8a4207276703 a08a60a76106 8a7872276",
    "2a49a2 0a401a19a 2302939a3 9a11a3 2a429a615 69a6a060540a 6152909309a3 56959339a",
    "a29a42375 5370141a419a 2502a529aa75 75171aa19 1761379a2a42 76070369040a9a0 9a0902a70106760 9a7697",
    "96b 20196b 96b043 14312496b 1b95b1 2b920b05b 1b915b304 95b945924354",
    "b96753 96b120753 7047506b9 96b125275247 b37b93913 b3793b903920 0910790477b9 b92b27724",
    "86b268 6016b0b80 86b826043 6b8683631384 1821585b8 80bb05 43082585b521 43545885b",
    "6826b8753 7536b1b01b80 4504752686b8 b81b16841517471 21323b2b87b3 37b3b00b8 4714107b1218b81 b847b4",
    "96b8a4 12096b48a 8308a3b96 b968a2a12a31 b15b918a4 48a2090b905b 8a00a3b91b15 a32a2835292b5b2",
    "8a4b96375 75396b20148a 96b8a58505a7 251275287a7896b 8a4b97937913 97b9379230328a4 91797b107a78087 b92b278a2a72",
    "a6ba46426 6ba16a1a4140 02606a0a3ba6 6ba6a11a3 a42a25a5b521 a40a0bb05 5b2521ba2023a32 5ba35a",
    "375a4b46b426 1401a416aba6537 50a5a702aba626a 75171a6b1ba1 42b4ba21b7b313b 37b3b0a4b40b 210a7b ba7",
    "b7a 201ab7 ab7430 4124317ab 615b7a 520562b7a 156304b7a ab7436462635",
    "5ab3a5 5ab53a012 a04ab0b50 a24a52ab5512 6ab61a13a 0620a603ab6a 6ab1a614a104 ab6a64462",
    "829ab7 901980ab7 982ab7043 b7a983931384 298615ab7 ab7986856805 298430615ab7 869856845354ab7",
    "a53ab5982 b3ab53809019 29804b0b5b4a b54b4a514849194 829ab1a131b6 806869036b6a3a6 1b61ab10a4a0298 ab6a64986846",
    "b4874b 4b748b201 3b730b08b 2312b328b73b b48b74561 20660548b4b7 615b70b08073 62363528373b8b3",
    "4534858b5 2014838538b5 8b0b50 12818558b 68b638613348 8b3834b63032623 61060bb08 8b6286",
    "b29b72742 01909707479b b739b3930902 b73b39931 15629727479b 74979b409695059 9029309b373b615 569593b79739",
    "9b5954942345 1941409b4345b54 29b2b00b5 19b51b 13b1b634b9b242b 9b6034 61060b2909b0 9b6",
    "97a679 97a967120 7967a9430 96aa67124143 7157a1a91 20525a2a9a57 04315a1a9a57 a95a57925354245",
    "5965393a9 20196393a365 6a960a6504a0 2452514a5659a95 91a13a 20323993a 04a0a11a9 24a92a",
    "87a827267 a80a06a67160 04382a27a267 318384168a87678 15721727a2a8 7a8785580 2a827a217571043 7a8785438358",
    "83a863826653 3a6365a86160806 26a2a865a4a050a 84a651 82181aa13 803a83 04a0a182a21a 84a",
    "948964674 120968648674 967970908073 678689738281318 874817891571 059092579894749 087073897571917 289573",
    "453854865896 834853895659201 965958850 128185968658 489493391 489493209039 910890 289",
    "264467 016064467 302327726 316736 157172274 740570 302327152572 357",
    "534546642 534546014164 265025 165 421341 403 210 -",
)


@functools.lru_cache(maxsize=1)
def triangle_table() -> tuple[np.ndarray, np.ndarray]:
    """``(256, 5, 3)`` int64 edge indices of each code's triangles (-1 past the last) and ``(256,)`` counts."""
    rows = " ".join(_TRIANGLES).split()
    table = np.full((256, 5, 3), -1, dtype=np.int64)
    counts = np.zeros(256, dtype=np.int64)
    for code, row in enumerate(rows):
        if row != "-":
            edges = [int(ch, 16) for ch in row]
            counts[code] = len(edges) // 3
            table[code, : counts[code]] = np.reshape(edges, (-1, 3))
    table.flags.writeable = counts.flags.writeable = False
    return table, counts


def marching_cubes(volume: np.ndarray, level: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Triangles of the level set of ``volume`` (nx, ny, nz): ``(vertices (n, 3) float64, faces (m, 3) int64)``.

    Vertices are in index coordinates (node ``(i, j, k)`` at ``(i, j, k)``), as PyMCubes gives them;
    faces are oriented as PyMCubes orients them. Nodes equal to the level count as above it.
    """
    v = np.asarray(volume, dtype=np.float64)
    if v.ndim != 3 or min(v.shape) < 2:
        raise ValueError(f"volume must be 3D with at least 2 nodes a side, got shape {v.shape}")
    nx, ny, nz = v.shape
    below = v < level
    code = np.zeros((nx - 1, ny - 1, nz - 1), dtype=np.int64)
    for c, (x, y, z) in enumerate(CORNERS):
        code |= below[x:nx - 1 + x, y:ny - 1 + y, z:nz - 1 + z].astype(np.int64) << c
    cells = np.argwhere((code != 0) & (code != 255))
    table, counts = triangle_table()
    codes = code[tuple(cells.T)]
    per_cell = counts[codes]
    owner = np.repeat(np.arange(len(cells)), per_cell)
    slot = np.arange(len(owner)) - np.repeat(np.cumsum(per_cell) - per_cell, per_cell)
    local = table[codes[owner], slot]                                     # (m, 3) edge of the cell
    # A cut edge, wherever it is met, is named by its lower node and its axis.
    lower = cells[owner][:, None, :] + CORNERS[EDGES[local, 0]]            # (m, 3, 3)
    axis = np.argmax(CORNERS[EDGES[local, 1]] - CORNERS[EDGES[local, 0]], axis=-1)
    key = ((lower[..., 0] * ny + lower[..., 1]) * nz + lower[..., 2]) * 3 + axis
    unique, faces = np.unique(key.ravel(), return_inverse=True)
    node, axis = np.divmod(unique, 3)
    i, rest = np.divmod(node, ny * nz)
    j, k = np.divmod(rest, nz)
    start = np.stack([i, j, k], axis=1)
    end = start + np.eye(3, dtype=np.int64)[axis]
    a, b = v[tuple(start.T)], v[tuple(end.T)]
    t = (level - a) / (b - a)
    vertices = start + t[:, None] * (end - start)
    return vertices, faces.reshape(-1, 3).astype(np.int64)
