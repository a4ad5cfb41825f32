"""What the one training loop (:mod:`training.train`) trains: a task names its model, data, loss and
validation. ``views``: posed views -> SDF (:mod:`training.model`); ``mesh_lm``: the mesh language
model on point clouds and captions (:mod:`training.mesh_lm`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


class ViewsTask:
    name = "views"
    architecture = "ViewsToSDF"
    loss_fields = ("sdf_loss", "colour_loss")
    val_fields = ("val_loss", "val_chamfer", "val_fscore")
    selection = "val_chamfer"                 # lower is better
    curve_titles = ("loss (truncated SDF L1 + colour)", "val Chamfer-L1 (median)", "val F-score @2%")
    find_unused_parameters = False

    @staticmethod
    def config_class():
        from training.model import ModelConfig

        return ModelConfig

    @staticmethod
    def build(model_cfg):
        from training.model import ViewsToSDF

        return ViewsToSDF(model_cfg)

    def datasets(self, cfg, data_dirs: list[Path]):
        from training.data import read_index
        from training.dataset import Augment, ViewsDataset

        def items(split: str) -> list[tuple[Path, str]]:
            return [(d / f"packs-{cfg.image_size}", r["name"]) for d in data_dirs for r in read_index(d, split)]

        train_items, val_items = items("train"), items("val")
        if cfg.limit_train:
            train_items = train_items[:cfg.limit_train]
        if not train_items:
            return None, None
        train_set = ViewsDataset(None, train_items, sdf_points=cfg.sdf_points, colour_points=cfg.colour_points,
                                 augment=Augment(normal_dropout=cfg.normal_dropout), seed=cfg.seed)
        val_set = ViewsDataset(None, val_items, sdf_points=cfg.sdf_points, colour_points=cfg.colour_points,
                               augment=Augment.none(), seed=cfg.seed) if val_items else None
        return train_set, val_set

    @staticmethod
    def collate(examples):
        from training.dataset import collate

        return collate(examples)

    @staticmethod
    def loss(net, batch: dict, cfg, step: int = 0):
        """Truncated-SDF L1 (near-surface points weigh as much as the rest), plus on the surface points
        lifted from the views (exact points of the source's surface) |SDF| and colour L1."""
        import torch

        trunc = cfg.model.truncation
        points = torch.cat([batch["points"], batch["colour_points"]], 1)
        sdf, colour = net(batch["images"], batch["world_to_camera"], batch["intrinsics"], points)
        n = batch["points"].shape[1]
        target = batch["sdf"].clamp(-trunc, trunc)
        sdf_loss = (sdf[:, :n] - target).abs().mean() / trunc
        weight = batch["colour_weight"][:, None, None]
        colour_loss = ((colour[:, n:] - batch["colour"]).abs() * weight).sum() / (
            weight.sum() * colour[:, n:].numel() / len(weight) + 1e-8)
        on_surface = (sdf[:, n:].abs() * weight[:, :, 0]).sum() / (weight.sum() * sdf[:, n:].shape[1] + 1e-8) / trunc
        loss = sdf_loss + cfg.surface_weight * on_surface + cfg.colour_weight * colour_loss
        return loss, {"sdf_loss": sdf_loss, "colour_loss": colour_loss}

    def evaluate(self, model, val_set, cfg, device, step: int, out_png: Path | None) -> dict:
        """Validation loss over the val split, and meshes of ``eval_assets`` of it: Chamfer-L1 and F-score."""
        import torch

        from training.infer import mesh_from_state
        from training.metrics import mesh_metrics, reference_mesh
        from training.visual import comparison_sheet

        model.eval()
        losses, chamfers, fscores, panels = [], [], [], []
        with torch.no_grad():
            for i in range(len(val_set)):
                batch = {k: v.to(device) for k, v in self.collate([val_set[i]]).items()}
                losses.append(float(self.loss(model, batch, cfg)[0]))
            # Spread the meshed assets over the val split (every corpus in it), in a fixed order.
            picks = np.linspace(0, len(val_set) - 1, min(cfg.eval_assets, len(val_set))).round().astype(int)
            for i in sorted(set(picks.tolist())):
                pack_dir, name = val_set.items[i]
                batch = {k: v.to(device) for k, v in self.collate([val_set[i]]).items()}
                state = model.encode(batch["images"], batch["world_to_camera"], batch["intrinsics"])
                vertices, faces = mesh_from_state(model, state, cfg.eval_resolution)
                ref_v, ref_f = reference_mesh(pack_dir.parent, name)
                m = mesh_metrics(vertices, faces, ref_v, ref_f)
                chamfers.append(m["chamfer_l1"])
                fscores.append(m["fscore_2"])
                panels.append((name, vertices, faces, ref_v, ref_f))
        model.train()
        if out_png is not None and panels:
            comparison_sheet(panels, out_png, title=f"validation, step {step}")
        return {"val_loss": float(np.mean(losses)),
                "val_chamfer": float(np.median(chamfers)) if chamfers else float("nan"),
                "val_fscore": float(np.median(fscores)) if fscores else float("nan")}


class MeshLMTask:
    name = "mesh_lm"
    architecture = "MeshLM"
    loss_fields = ("points_loss", "caption_loss")
    val_fields = ("val_loss", "val_caption_loss", "val_chamfer", "val_manifold")
    selection = "val_loss"
    curve_titles = ("next-token cross-entropy", "val Chamfer-L1 of samples to their targets (median)",
                    "val share of samples that are manifold")
    find_unused_parameters = True            # a batch may hold no caption-conditioned example

    @staticmethod
    def config_class():
        from training.mesh_lm import MeshLMConfig

        return MeshLMConfig

    @staticmethod
    def build(model_cfg):
        from training.mesh_lm import MeshLM

        return MeshLM(model_cfg)

    def datasets(self, cfg, data_dirs: list[Path]):
        from training.data import read_index
        from training.mesh_corpus import MeshLMDataset

        def items(split: str) -> list[tuple[Path, str]]:
            return [(d, r["name"]) for d in data_dirs for r in read_index(d, split)]

        train_items, val_items = items("train"), items("val")
        if cfg.limit_train:
            train_items = train_items[:cfg.limit_train]
        if not train_items:
            return None, None
        length, vocab = cfg.model.max_tokens, cfg.model.vocab
        train_set = MeshLMDataset(train_items, max_tokens=length, points=cfg.lm_points, augment=True,
                                  point_noise=cfg.point_noise, seed=cfg.seed, vocab=vocab)
        val_set = MeshLMDataset(val_items, max_tokens=length, points=cfg.lm_points, augment=False,
                                seed=cfg.seed, vocab=vocab) if val_items else None
        return train_set, val_set

    @staticmethod
    def collate(examples):
        from training.mesh_corpus import collate_meshlm

        return collate_meshlm(examples)

    @staticmethod
    def loss(net, batch: dict, cfg, step: int = 0):
        """Next-token cross-entropy; each example is conditioned on its points or (a share
        ``caption_share``) on its caption, the other condition absent, so one model learns both."""
        import torch

        from training.mesh_lm import token_loss

        b = len(batch["tokens"])
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        use_caption = torch.rand(b, generator=g) < cfg.caption_share
        logits = net(batch["tokens"][:, :-1], batch["points"], batch["caption"], use_points=~use_caption,
                     use_caption=use_caption)
        per_example = token_loss(logits, batch["tokens"], batch["length"], reduce=False)
        weights = (batch["length"] - 1).float()
        loss = (per_example * weights).sum() / weights.sum()
        uc = use_caption.to(per_example.device)
        nan = torch.tensor(float("nan"))
        parts = {"points_loss": per_example[~uc].mean() if (~uc).any() else nan,
                 "caption_loss": per_example[uc].mean() if uc.any() else nan}
        return loss, parts

    def evaluate(self, model, val_set, cfg, device, step: int, out_png: Path | None) -> dict:
        """Teacher-forced loss on the val split with points and with captions; samples from the points of
        ``eval_assets`` of it: Chamfer-L1 to their targets and the share that is manifold."""
        import torch

        from backend.mesh.metrics import chamfer_l1, surface_area
        from training.mesh_lm import generate, token_loss
        from training.tokenizer import Vocabulary, decode
        from training.visual import comparison_sheet

        model.eval()
        points_losses, caption_losses, chamfers, manifold, panels = [], [], [], [], []
        vocab = Vocabulary(cfg.model.bits, cfg.model.max_split)
        with torch.no_grad():
            for i in range(len(val_set)):
                batch = {k: v.to(device) for k, v in self.collate([val_set[i]]).items()}
                for caption, out in ((False, points_losses), (True, caption_losses)):
                    flag = torch.tensor([caption])
                    logits = model(batch["tokens"][:, :-1], batch["points"], batch["caption"], use_points=~flag,
                                   use_caption=flag)
                    out.append(float(token_loss(logits, batch["tokens"], batch["length"])))
            picks = np.linspace(0, len(val_set) - 1, min(cfg.eval_assets, len(val_set))).round().astype(int)
            for i in sorted(set(picks.tolist())):
                example = val_set[i]
                ref_v, ref_f = decode(example["tokens"][1:int(example["length"])].numpy(), vocab)
                cond = model.condition(points=example["points"][None].to(device))
                sample = generate(model, cond, max_faces=cfg.max_faces, temperature=0.0, seed=step)
                # Grid coordinates 0 .. 2^bits - 1 back to the pack's cube [-1, 1] (the pictures' frame too).
                scale = 2.0 / ((1 << cfg.model.bits) - 1)
                v, f = _triangles(sample.vertices, sample.faces)
                rv, rf = _triangles(ref_v, ref_f)
                v, rv = v * scale - 1.0, rv * scale - 1.0
                manifold.append(float(_is_manifold(sample.faces)))
                if len(f) and surface_area(v, f) > 0:   # all-degenerate samples have no surface to measure
                    chamfers.append(float(chamfer_l1(v, f, rv, rf)))
                panels.append((val_set.items[i][1], v, f, rv, rf))
        model.train()
        if out_png is not None and panels:
            comparison_sheet(panels, out_png, title=f"validation samples (greedy, from points), step {step}")
        return {"val_loss": float(np.mean(points_losses)), "val_caption_loss": float(np.mean(caption_losses)),
                "val_chamfer": float(np.median(chamfers)) if chamfers else float("nan"),
                "val_manifold": float(np.mean(manifold)) if manifold else float("nan")}


def _triangles(vertices, faces) -> tuple[np.ndarray, np.ndarray]:
    tris = [t for f in faces for t in ([f] if len(f) == 3 else [(f[0], f[1], f[2]), (f[0], f[2], f[3])])]
    return np.asarray(vertices, dtype=np.float64).reshape(-1, 3), np.asarray(tris, dtype=np.int64).reshape(-1, 3)


def _is_manifold(faces) -> bool:
    """Every edge in at most two faces, and in opposite directions when in two (oriented, edge-manifold)."""
    directed: dict[tuple[int, int], int] = {}
    for f in faces:
        for i in range(len(f)):
            e = (f[i], f[(i + 1) % len(f)])
            directed[e] = directed.get(e, 0) + 1
            if directed[e] > 1:
                return False
    return bool(faces)


TASKS = {"views": ViewsTask(), "mesh_lm": MeshLMTask()}
