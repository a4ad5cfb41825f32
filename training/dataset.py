"""Training examples of the views-to-mesh model: packed per asset, served by a torch ``Dataset``.

A *pack* (:func:`pack_asset`) joins what two earlier steps wrote for one asset:

- ``render.dataset``'s folder (six ``zero123pp`` views at 320 px: RGBA, world normals, masks,
  depth, ``cameras.json``): the inputs, shrunk to ``image_size`` pixels by area averaging;
- ``backend preprocess``'s ``.npz`` of the rendered ``mesh.glb`` (exact signed distances of the
  watertight remesh, near and away from the surface): SDF supervision, moved into the cameras'
  world frame (glTF Y-up -> Blender Z-up, and the preprocess normalization undone);
- surface colours: the pixels of the views, lifted to 3D by their exact depth, so each sample
  is a point of the textured source's surface with the colour it was rendered with.

Arrays of a pack (``.npz``, written atomically):

================ ================= ======== =================================================
array            shape             dtype    contents
================ ================= ======== =================================================
rgb              (V, S, S, 3)      uint8    sRGB composited over grey (0.5)
normal           (V, S, S, 3)      uint8    world normal, ``(n + 1) / 2`` in 0..255; 128 empty
mask             (V, S, S)         uint8    coverage (area-averaged), 0..255
world_to_camera  (V, 4, 4)         float32  OpenCV, world (Blender) frame
intrinsics       (V, 3, 3)         float32  at S x S pixels
sdf_points       (K, 3)            float16  world frame
sdf_values       (K,)              float16  signed distance, negative inside
colour_points    (C, 3)            float16  world frame, on the surface
colour_values    (C, 3)            uint8    sRGB
depth            (V, S, S)         float16  camera z of the surface each view's normal map
                                            describes (:func:`training.baseline.view_depths`,
                                            from the packed 128 px views); 0 where unknown
================ ================= ======== =================================================

The ``depth`` maps are what a learned model cannot easily get from normal maps on its own (an
integration over the whole image), so they are computed once here, as the baseline does, and
given to the model as depth cues (version 2 of the pack; ``training.data samples`` upgrades
older packs in place).

:class:`ViewsDataset` turns packs into model inputs. Each example draws its SDF points from three
strata: half near the surface (``|sdf| < 0.05``), a quarter deep inside, the rest far outside:
a thin-walled object has almost no deep-inside samples among uniform ones, and without them a
model learns shells. Augmentations are applied to the views
and the supervision alike (a rotation about the up axis by a multiple of 90 degrees, a
uniform scale, a permutation of the views, a brightness / colour gain, and normal-map
dropout), all drawn from ``(seed, epoch, index)`` so that a resumed run sees the same examples.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backend.conventions import BLENDER_FROM_GLTF, intrinsics_matrix

#: Background grey behind the objects (sRGB), as in Zero123++'s grids.
GREY = 0.5
PACK_VERSION = 2
#: Grid of the visual hull that anchors the depth maps' integration (its voxel, 2/127 of the box,
#: bounds how far the anchors can sit off the surface).
HULL_RESOLUTION = 128


def _area_resize(image: np.ndarray, size: int) -> np.ndarray:
    """Area-average resize of an (H, W[, C]) float image to (size, size[, C])."""
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
    chw = t[None, None] if t.ndim == 2 else t.permute(2, 0, 1)[None]
    out = F.interpolate(chw, size=(size, size), mode="area")[0]
    return (out[0] if t.ndim == 2 else out.permute(1, 2, 0)).numpy()


def scaled_intrinsics(intrinsics: dict, size: int) -> np.ndarray:
    """``K`` of a view resized to ``size`` x ``size`` (pixel centres stay at integer coordinates)."""
    k = intrinsics_matrix(intrinsics)
    sx, sy = size / intrinsics["width"], size / intrinsics["height"]
    return np.array([[k[0, 0] * sx, 0.0, (k[0, 2] + 0.5) * sx - 0.5],
                     [0.0, k[1, 1] * sy, (k[1, 2] + 0.5) * sy - 0.5],
                     [0.0, 0.0, 1.0]])


def views_to_arrays(folder: Path, size: int) -> dict:
    """The views of one ``render.views`` folder as pack arrays (rgb, normal, mask, cameras)."""
    from PIL import Image

    cameras = json.loads((folder / "cameras.json").read_text())
    rgb, normal, mask, w2c, intr = [], [], [], [], []
    for view in cameras["views"]:
        files = view["files"]
        alpha = np.asarray(Image.open(folder / files["mask"]), dtype=np.float32) / 255.0
        if "rgb" in files:
            rgba = np.asarray(Image.open(folder / files["rgb"]).convert("RGBA"), dtype=np.float32) / 255.0
            colour = rgba[..., :3] * rgba[..., 3:] + GREY * (1.0 - rgba[..., 3:])
        else:
            colour = np.full(alpha.shape + (3,), GREY, dtype=np.float32)
        n = np.load(folder / files["normal_world"]).astype(np.float32) * alpha[..., None]
        small_alpha = _area_resize(alpha, size)
        small_n = _area_resize(n, size)
        length = np.linalg.norm(small_n, axis=-1, keepdims=True)
        small_n = np.where(length > 1e-6, small_n / np.maximum(length, 1e-6), 0.0)
        rgb.append(np.round(_area_resize(colour, size) * 255))
        normal.append(np.round((small_n + 1.0) * 127.5))
        mask.append(np.round(small_alpha * 255))
        w2c.append(np.asarray(view["world_to_camera"], dtype=np.float64))
        intr.append(scaled_intrinsics(view["intrinsics"], size))
    return {
        "rgb": np.clip(rgb, 0, 255).astype(np.uint8),
        "normal": np.clip(normal, 0, 255).astype(np.uint8),
        "mask": np.clip(mask, 0, 255).astype(np.uint8),
        "world_to_camera": np.asarray(w2c, dtype=np.float32),
        "intrinsics": np.asarray(intr, dtype=np.float32),
    }


def surface_colours(folder: Path, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``count`` surface points (world) with their rendered sRGB colour, lifted from the views' exact depth."""
    from PIL import Image

    cameras = json.loads((folder / "cameras.json").read_text())
    points, colours = [], []
    for view in cameras["views"]:
        files = view["files"]
        if "rgb" not in files:
            continue
        depth = np.load(folder / files["depth"])
        rgba = np.asarray(Image.open(folder / files["rgb"]).convert("RGBA"))
        v, u = np.nonzero((depth > 0) & (rgba[..., 3] == 255))   # interior pixels: no edge blending
        k = intrinsics_matrix(view["intrinsics"])
        z = depth[v, u].astype(np.float64)
        cam = np.stack([(u - k[0, 2]) * z / k[0, 0], (v - k[1, 2]) * z / k[1, 1], z], 1)
        w2c = np.asarray(view["world_to_camera"], dtype=np.float64)
        points.append((cam - w2c[:3, 3]) @ w2c[:3, :3])           # R^T (x - t), row form
        colours.append(rgba[v, u, :3])
    if not points or sum(len(p) for p in points) == 0:
        return np.zeros((0, 3), np.float16), np.zeros((0, 3), np.uint8)
    points, colours = np.concatenate(points), np.concatenate(colours)
    pick = rng.choice(len(points), size=min(count, len(points)), replace=False)
    return points[pick].astype(np.float16), colours[pick]


def arrays_to_views(arrays: dict):
    """Pack arrays (rgb, normal, mask, cameras) as :class:`PosedViews` (normals where present)."""
    from backend.mesh.texture.projection import PosedViews, View

    views = []
    size = arrays["rgb"].shape[1]
    for k in range(len(arrays["rgb"])):
        alpha = arrays["mask"][k].astype(np.float32) / 255.0
        image = np.concatenate([arrays["rgb"][k].astype(np.float32) / 255.0, alpha[..., None]], -1)
        normal = arrays["normal"][k].astype(np.float32) / 127.5 - 1.0
        has_normals = bool(np.abs(normal[alpha > 0.5]).sum(-1).min(initial=1.0) > 0.5)
        kk = np.asarray(arrays["intrinsics"][k], dtype=np.float64)
        intrinsics = {"fx": kk[0, 0], "fy": kk[1, 1], "cx": kk[0, 2], "cy": kk[1, 2], "width": size, "height": size}
        views.append(View(image=image, intrinsics=intrinsics,
                          world_to_camera=np.asarray(arrays["world_to_camera"][k], dtype=np.float64),
                          normal_world=normal if has_normals else None))
    return PosedViews(views)


def depth_maps(arrays: dict) -> np.ndarray:
    """The ``depth`` array of a pack (V, S, S; float16, 0 where unknown) from its other arrays."""
    from training.baseline import view_depths

    depths = view_depths(arrays_to_views(arrays), resolution=HULL_RESOLUTION)
    return np.nan_to_num(np.asarray(depths, dtype=np.float64), nan=0.0).astype(np.float16)


def sdf_in_world(samples: dict) -> tuple[np.ndarray, np.ndarray]:
    """SDF samples of a preprocess ``.npz`` of a render's ``mesh.glb``, in the cameras' world frame.

    The preprocess normalization is a similarity (``canonical = (glb - center) * scale``), so
    distances scale by ``1 / scale``; the GLB is glTF Y-up, the cameras' world Blender Z-up.
    """
    scale = float(samples["scale"])
    glb = samples["sdf_points"].astype(np.float64) / scale + samples["center"]
    return (glb @ BLENDER_FROM_GLTF.T).astype(np.float32), (samples["sdf_values"] / scale).astype(np.float32)


def pack_asset(view_folder: Path, samples_npz: Path, out: Path, *, image_size: int = 128,
               colour_points: int = 8192, seed: int = 0) -> dict:
    """Write the pack of one asset to ``out`` (atomically); returns its sizes."""
    arrays = views_to_arrays(Path(view_folder), image_size)
    with np.load(samples_npz) as samples:
        points, values = sdf_in_world(samples)
    rng = np.random.default_rng([seed, PACK_VERSION])
    cpoints, cvalues = surface_colours(Path(view_folder), colour_points, rng)
    arrays.update(sdf_points=points.astype(np.float16), sdf_values=values.astype(np.float16),
                  colour_points=cpoints, colour_values=cvalues, depth=depth_maps(arrays),
                  version=np.int64(PACK_VERSION))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return {"views": len(arrays["rgb"]), "sdf": len(points), "colour": len(cpoints)}


def pack_version(path: Path) -> int:
    """The version of a pack file (0 when unreadable: it will be made again)."""
    try:
        with np.load(path) as z:
            return int(z["version"]) if "version" in z.files else 1
    except Exception:
        return 0


# -- the torch Dataset -----------------------------------------------------------------------


@dataclass
class Augment:
    """Augmentation settings (all on by default for training; :meth:`none` for evaluation)."""

    rotate: bool = True               # about world +Z, by a multiple of 90 degrees (keeps the box)
    scale: tuple[float, float] = (0.8, 1.0)
    permute_views: bool = True
    colour_gain: float = 0.15         # per-channel gain in [1 - g, 1 + g]
    normal_dropout: float = 0.3       # share of examples without normal maps

    @classmethod
    def none(cls) -> "Augment":
        return cls(rotate=False, scale=(1.0, 1.0), permute_views=False, colour_gain=0.0, normal_dropout=0.0)


class ViewsDataset:
    """Examples from folders of packs, for the names given (one split).

    ``names`` are pack names in ``pack_dir``, or ``(pack folder, name)`` pairs (several corpora
    in one dataset).

    ``dataset[i]`` with ``set_epoch`` decides the augmentation: the random draws derive from
    ``(seed, epoch, i)`` only. Packs are read once and kept in memory (uint8 / float16: about
    1 MB an asset at 128 px).
    """

    def __init__(self, pack_dir: Path | None, names: list, *, sdf_points: int = 4096, colour_points: int = 1024,
                 near_share: float = 0.5, inside_share: float = 0.25, augment: Augment | None = None, seed: int = 0,
                 cache: bool = True):
        self.items = [(Path(n[0]), n[1]) if isinstance(n, tuple) else (Path(pack_dir), n) for n in names]
        self.names = [name for _, name in self.items]
        missing = [folder / f"{n}.npz" for folder, n in self.items if not (folder / f"{n}.npz").is_file()]
        if missing:
            raise FileNotFoundError(f"{len(missing)} pack(s) missing, e.g. {missing[0]}")
        self.sdf_points = sdf_points
        self.colour_points = colour_points
        self.near_share = near_share
        self.inside_share = inside_share
        self.augment = augment if augment is not None else Augment()
        self.seed = seed
        self.epoch = 0
        self._cache: dict[str, dict] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.names)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def load(self, index: int) -> dict:
        folder, name = self.items[index]
        key = f"{folder}/{name}"
        if self._cache is not None and key in self._cache:
            return self._cache[key]
        with np.load(folder / f"{name}.npz") as z:
            pack = {k: z[k] for k in z.files}
        # Three strata: near the surface, deep inside, far outside. Deep-inside samples are rare
        # (a thin-walled object has almost none among uniform samples) but they are what tells
        # a solid from a shell, so every example draws a fixed share of them.
        values = pack["sdf_values"].astype(np.float32)
        near = np.abs(values) < 0.05
        pack["near"] = np.nonzero(near)[0]
        pack["inside"] = np.nonzero(~near & (values < 0))[0]
        pack["far"] = np.nonzero(~near & (values >= 0))[0]
        if self._cache is not None:
            self._cache[key] = pack
        return pack

    def __getitem__(self, index: int) -> dict:
        import torch

        pack = self.load(index)
        aug = self.augment
        rng = np.random.default_rng([self.seed, self.epoch, index])
        v = len(pack["rgb"])
        order = rng.permutation(v) if aug.permute_views else np.arange(v)
        quarter_turns = int(rng.integers(4)) if aug.rotate else 0
        scale = float(rng.uniform(*aug.scale))
        gain = 1.0 + rng.uniform(-aug.colour_gain, aug.colour_gain, size=3) if aug.colour_gain else np.ones(3)
        with_normals = not (aug.normal_dropout and rng.random() < aug.normal_dropout)

        # A similarity of the world: p' = s R p. Cameras follow: x_cam = W p = W (s R)^-1 p'.
        c, s_ = [(1, 0), (0, 1), (-1, 0), (0, -1)][quarter_turns]
        rot = np.array([[c, -s_, 0], [s_, c, 0], [0, 0, 1]], dtype=np.float64)
        similarity_inv = np.eye(4)
        similarity_inv[:3, :3] = rot.T / scale
        w2c = pack["world_to_camera"][order].astype(np.float64) @ similarity_inv
        # Scaling the world scales the camera frame too: keep the rotation part orthonormal by
        # scaling x_cam, which leaves the pixels where they were.
        w2c[:, :3, :] *= scale

        rgb = pack["rgb"][order].astype(np.float32) / 255.0
        rgb = np.clip((rgb - GREY) * gain + GREY, 0.0, 1.0)           # gain on the object, grey stays
        mask = pack["mask"][order].astype(np.float32) / 255.0
        normal = pack["normal"][order].astype(np.float32) / 127.5 - 1.0
        normal = normal @ rot.T if with_normals else np.zeros_like(normal)
        flag = np.full(mask.shape, 1.0 if with_normals else 0.0, dtype=np.float32)
        if "depth" not in pack:
            raise ValueError(f"pack {self.items[index][1]} has no depth maps (an older pack version): run "
                             f"`python -m training.data samples` again over its corpus to upgrade it")
        # Depth from the normal maps: gone with them; the camera frame scales with the world.
        depth = pack["depth"][order].astype(np.float32) * scale if with_normals else np.zeros_like(mask)
        known = (depth > 0).astype(np.float32)
        images = np.concatenate([rgb, normal, mask[..., None], flag[..., None], depth[..., None], known[..., None]],
                                -1).transpose(0, 3, 1, 2)

        n_inside = int(round(self.sdf_points * self.inside_share)) if len(pack["inside"]) else 0
        n_near = int(round(self.sdf_points * self.near_share))
        n_far = self.sdf_points - n_near - n_inside
        strata = [(pack["near"], n_near), (pack["inside"], n_inside), (pack["far"], n_far)]
        fallback = pack["near"] if len(pack["near"]) else np.arange(len(pack["sdf_values"]))
        pick = np.concatenate([rng.choice(pool if len(pool) else fallback, count) for pool, count in strata
                               if count > 0]).astype(np.int64)
        points = pack["sdf_points"][pick].astype(np.float64) @ rot.T * scale
        values = pack["sdf_values"][pick].astype(np.float64) * scale
        cpick = rng.choice(len(pack["colour_points"]), self.colour_points) if len(pack["colour_points"]) else None
        if cpick is None:
            cpoints = np.zeros((self.colour_points, 3))
            cvalues = np.zeros((self.colour_points, 3))
            cweight = 0.0
        else:
            cpoints = pack["colour_points"][cpick].astype(np.float64) @ rot.T * scale
            cvalues = np.clip((pack["colour_values"][cpick] / 255.0 - GREY) * gain + GREY, 0.0, 1.0)
            cweight = 1.0
        return {
            "images": torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)),
            "world_to_camera": torch.from_numpy(w2c.astype(np.float32)),
            "intrinsics": torch.from_numpy(pack["intrinsics"][order].astype(np.float32)),
            "points": torch.from_numpy(points.astype(np.float32)),
            "sdf": torch.from_numpy(values.astype(np.float32)),
            "colour_points": torch.from_numpy(cpoints.astype(np.float32)),
            "colour": torch.from_numpy(cvalues.astype(np.float32)),
            "colour_weight": torch.tensor(cweight, dtype=torch.float32),
        }


def collate(examples: list[dict]) -> dict:
    import torch

    return {k: torch.stack([e[k] for e in examples]) for k in examples[0]}
