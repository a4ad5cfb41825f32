"""Train Meshsmith's models: one loop, from a laptop CPU to a multi-GPU node.

    python -m training.train --config training/configs/views_cpu.json [--key=value ...]
    torchrun --nproc_per_node 2 -m training.train --config ... [--key=value ...]

Configuration: the fields of :class:`TrainConfig` (and ``model.<field>`` of the task's model
config: :class:`~training.model.ModelConfig` for ``task: views``,
:class:`~training.mesh_lm.MeshLMConfig` for ``task: mesh_lm``; :mod:`training.tasks`), read
from a JSON file and then from ``--key=value`` overrides, in that order. The run writes into ``out``:

- ``ckpt/``: the last checkpoint: ``model.safetensors`` (weights), ``config.json`` (the model
  config, enough to rebuild the model alone, and the run's config), ``state.pt`` (optimizer,
  scheduler, RNG, step) and a copy of ``metrics.csv`` (so a checkpoint carried to another
  machine resumes its curves too). A run whose ``out`` holds a checkpoint resumes from it exactly: the same
  examples in the same order with the same augmentations, so an interrupted run and an
  uninterrupted one give the same losses.
- ``best/``: the checkpoint with the best validation figure so far (the task's ``selection``:
  Chamfer for views, loss for the mesh LM; model selection uses the val split only; the test
  split is never read here).
- ``metrics.csv`` (one row per logged step or validation), ``curves.png``, ``val/step_N.png``
  (validation reconstructions beside their references).

``--max_minutes`` stops cleanly (after a checkpoint) once that much wall time has passed, so a
long run proceeds in chunks: run the same command again to go on. Distributed data parallel
runs under ``torchrun`` (gloo on CPU, nccl on GPU); bf16 autocast on GPU.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from training.model import ModelConfig
from training.tasks import TASKS


@dataclass
class TrainConfig:
    """Every setting of a run; see the module doc for how they are given."""

    task: str = "views"                       # views | mesh_lm (training.tasks)
    data: str = "data/furniture-train"        # `training.data samples` (views) / `meshlm` folders, comma-separated
    out: str = "runs/views"
    image_size: int = 128                     # views: packs-<image_size> under data
    model: object = field(default_factory=ModelConfig)
    batch_size: int = 4                       # per process
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_steps: int = 100
    max_steps: int = 5000
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    sdf_points: int = 4096
    colour_points: int = 1024
    colour_weight: float = 0.2
    surface_weight: float = 0.5               # |SDF| at the surface points lifted from the views (target 0)
    normal_dropout: float = 0.3
    log_interval: int = 10
    eval_interval: int = 250
    eval_assets: int = 8                      # val assets meshed for Chamfer / F-score
    eval_resolution: int = 64
    ckpt_interval: int = 50
    max_minutes: float = 0.0                  # stop (and checkpoint) after this wall time; 0: no limit
    steps_this_run: int = 0                   # stop (and checkpoint) after this many steps; 0: no limit
    seed: int = 0
    threads: int = 0                          # torch intra-op threads; 0: torch's default
    device: str = "auto"                      # auto, cpu, cuda
    dtype: str = "bfloat16"                   # autocast dtype on GPU (CPU runs float32)
    limit_train: int = 0                      # use only the first N train assets (0: all)
    progress: bool = True
    lm_points: int = 2048                     # mesh_lm: conditioning points per example
    point_noise: float = 0.005                # mesh_lm: noise on them (box units, [-1, 1])
    caption_share: float = 0.4                # mesh_lm: examples conditioned on the caption instead
    max_faces: int = 800                      # mesh_lm: face budget of validation samples

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; known: {', '.join(TASKS)}")
        if isinstance(self.model, dict):
            self.model = TASKS[self.task].config_class().from_dict(self.model)


def parse_config(argv: list[str]) -> TrainConfig:
    """``--config FILE`` then ``--key=value`` (or ``--key value``) overrides; unknown keys are errors."""
    parser = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.splitlines()[0],
                                     add_help=True)
    parser.add_argument("--config", type=Path, default=None, help="a JSON file of TrainConfig fields")
    args, rest = parser.parse_known_args(argv)
    data: dict = json.loads(args.config.read_text()) if args.config else {}
    model: dict = dict(data.pop("model", {}))
    overrides: dict = {}
    i = 0
    while i < len(rest):
        item = rest[i]
        if not item.startswith("--"):
            raise SystemExit(f"error: unexpected argument {item!r} (overrides are --key=value)")
        key, eq, value = item[2:].partition("=")
        if not eq:
            if i + 1 >= len(rest):
                raise SystemExit(f"error: --{key} needs a value")
            value = rest[i + 1]
            i += 1
        overrides[key.replace("-", "_")] = value
        i += 1
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    task = overrides.get("task", data.get("task", "views"))
    if task not in TASKS:
        raise SystemExit(f"error: unknown task {task!r}; known: {', '.join(TASKS)}")
    model_class = TASKS[task].config_class()
    model_fields = {f.name: f for f in dataclasses.fields(model_class)}
    for key, text in overrides.items():
        if key.startswith("model."):
            name = key[len("model."):]
            if name not in model_fields:
                raise SystemExit(f"error: unknown model setting {name!r}; known: {', '.join(model_fields)}")
            model[name] = _parse_value(text, getattr(model_class(), name))
        elif key in fields and key != "model":
            data[key] = _parse_value(text, getattr(TrainConfig(), key))
        else:
            raise SystemExit(f"error: unknown setting {key!r}; known: {', '.join(fields)}")
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise SystemExit(f"error: unknown setting(s) in {args.config}: {', '.join(unknown)}")
    try:
        return TrainConfig(**data, model=model_class.from_dict(model))
    except (TypeError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from None


def _parse_value(text: str, default):
    if isinstance(default, bool):
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise SystemExit(f"error: expected true/false, got {text!r}")
    if isinstance(default, (tuple, list)):
        return tuple(json.loads(text if text.startswith("[") else f"[{text}]"))
    try:
        return type(default)(text)
    except ValueError:
        raise SystemExit(f"error: expected {type(default).__name__}, got {text!r}") from None


def config_dict(cfg: TrainConfig) -> dict:
    return dataclasses.asdict(cfg)


# -- schedule and data order -----------------------------------------------------------------


def learning_rate(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to ``min_lr`` at ``max_steps``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1.0 + math.cos(math.pi * progress))


def batch_indices(step: int, n: int, global_batch: int, seed: int) -> list[tuple[int, int]]:
    """The (epoch, index) pairs of the global batch at ``step``: a seeded permutation per epoch.

    The data position is a function of the step alone, so resuming at a step resumes the data.
    """
    out = []
    for position in range(step * global_batch, (step + 1) * global_batch):
        epoch, offset = divmod(position, n)
        order = np.random.default_rng([seed, epoch]).permutation(n)
        out.append((epoch, int(order[offset])))
    return out


# -- checkpoints -----------------------------------------------------------------------------


def save_checkpoint(folder: Path, model, cfg: TrainConfig, state: dict | None = None, extra: dict | None = None) -> None:
    """Weights (safetensors) + config.json (+ state.pt), written to a temporary folder then renamed in."""
    import torch
    from safetensors.torch import save_file

    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    weights = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    save_file(weights, tmp / "model.safetensors", metadata={"format": "pt"})
    record = {"architecture": TASKS[cfg.task].architecture, "task": cfg.task, "model": model.config.to_dict(),
              "train": config_dict(cfg), **(extra or {})}
    (tmp / "config.json").write_text(json.dumps(record, indent=1))
    if state is not None:
        torch.save(state, tmp / "state.pt")
    old = folder.with_name(f".{folder.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    for note in ("HISTORY.md",):          # notes people keep beside a checkpoint survive its rewrite
        if (folder / note).is_file():
            shutil.copy(folder / note, tmp / note)
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def load_model(folder: str | os.PathLike, device: str = "cpu", architecture: str | None = None):
    """Rebuild a model from a checkpoint folder (config.json alone) and its weights: (model, record).

    ``architecture`` (``ViewsToSDF``, ``MeshLM``): refuse a checkpoint of another kind.
    """
    from safetensors.torch import load_file

    folder = Path(folder)
    record = json.loads((folder / "config.json").read_text())
    found = record.get("architecture")
    task = next((t for t in TASKS.values() if t.architecture == found), None)
    if task is None or (architecture is not None and found != architecture):
        raise ValueError(f"{folder}: not a {architecture or 'Meshsmith'} checkpoint (architecture {found!r})")
    model = task.build(task.config_class().from_dict(record["model"]))
    model.load_state_dict(load_file(folder / "model.safetensors", device=device))
    return model.to(device).eval(), record


# -- metrics, curves, pictures ---------------------------------------------------------------

def csv_fields(task) -> list[str]:
    return ["step", "seconds", "lr", "loss", *task.loss_fields, *task.val_fields, "examples_per_s"]


class MetricsLog:
    """``metrics.csv``, cut after the resumed step (rows a killed run wrote past its last checkpoint go)."""

    def __init__(self, path: Path, resume_step: int, fields: list[str]):
        self.path = path
        self.fields = fields
        rows = []
        if path.is_file() and resume_step > 0:
            with open(path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_step]
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fields, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)

    def write(self, **row) -> None:
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, self.fields).writerow({k: row.get(k, "") for k in self.fields})

    def rows(self) -> list[dict]:
        with open(self.path, newline="") as f:
            return list(csv.DictReader(f))


def plot_curves(rows: list[dict], path: Path, title: str = "", task=None) -> None:
    """Training loss (and its running mean), validation loss and the task's validation figures against
    the step, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def series(key):
        pts = [(int(r["step"]), float(r[key])) for r in rows if r.get(key) not in ("", None)]
        return [p[0] for p in pts], [p[1] for p in pts]

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    s, loss = series("loss")
    if s:
        axes[0].plot(s, loss, color="0.75", lw=0.8, label="train loss")
        k = max(1, len(loss) // 30)
        smooth = np.convolve(loss, np.ones(k) / k, mode="valid")
        axes[0].plot(s[k - 1:], smooth, color="C0", label=f"train loss (mean of {k})")
    s, val = series("val_loss")
    if s:
        axes[0].plot(s, val, "o-", color="C1", label="val loss")
    axes[0].set_yscale("log")
    axes[0].set_xlabel("step")
    axes[0].legend()
    task = task or TASKS["views"]
    first, second = task.val_fields[-2:]
    axes[0].set_title(task.curve_titles[0])
    s, ch = series(first)
    if s:
        axes[1].plot(s, ch, "o-", color="C2", label=task.curve_titles[1])
        axes[1].set_ylabel(first)
        twin = axes[1].twinx()
        s2, f = series(second)
        twin.plot(s2, f, "s--", color="C3", label=task.curve_titles[2])
        twin.set_ylabel(second)
        axes[1].legend(loc="upper left")
        twin.legend(loc="upper right")
    axes[1].set_xlabel("step")
    axes[1].set_title("validation meshes")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# -- the loop ----------------------------------------------------------------------------------


def train(cfg: TrainConfig) -> dict:
    import torch
    import torch.distributed as dist

    task = TASKS[cfg.task]
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    distributed = world > 1
    device_name = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    if distributed:
        dist.init_process_group("nccl" if device_name == "cuda" else "gloo")
    if device_name == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    main_process = rank == 0
    out = Path(cfg.out)
    data_dirs = [Path(d) for d in cfg.data.split(",") if d.strip()]
    train_set, val_set = task.datasets(cfg, data_dirs)
    if train_set is None:
        raise SystemExit(f"error: no train assets in {', '.join(str(d / 'index.jsonl') for d in data_dirs)}")

    torch.manual_seed(cfg.seed)
    model = task.build(cfg.model).to(device)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "position" not in n]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2 or "position" in n]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.99))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: learning_rate(s, cfg) / cfg.lr)

    step, best, elapsed_before = 0, float("inf"), 0.0
    ckpt = out / "ckpt"
    if (ckpt / "state.pt").is_file():
        from safetensors.torch import load_file

        state = torch.load(ckpt / "state.pt", map_location="cpu", weights_only=False)
        model.load_state_dict(load_file(ckpt / "model.safetensors", device=str(device)))
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        step, best, elapsed_before = state["step"], state["best"], state["seconds"]
        if main_process:
            print(f"resuming from {ckpt} at step {step}", file=sys.stderr)
        if state.get("data", cfg.data) != cfg.data:
            # Other data, other validation assets: earlier bests are not comparable.
            best = float("inf")
            if main_process:
                print(f"the data changed ({state.get('data')} -> {cfg.data}): model selection starts afresh",
                      file=sys.stderr)
    net = (torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=task.find_unused_parameters)
           if distributed else model)

    if main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / "val").mkdir(exist_ok=True)
        (out / "config.json").write_text(json.dumps(config_dict(cfg), indent=1))
    if main_process and not (out / "metrics.csv").is_file() and (ckpt / "metrics.csv").is_file():
        shutil.copy(ckpt / "metrics.csv", out / "metrics.csv")        # a checkpoint carried to a new machine
    log = MetricsLog(out / "metrics.csv", step, csv_fields(task)) if main_process else None
    autocast = (torch.autocast("cuda", dtype=getattr(torch, cfg.dtype)) if device.type == "cuda"
                else torch.autocast("cpu", enabled=False))

    def checkpoint(path: Path, with_state: bool, **extra) -> None:
        state = None
        if with_state:
            state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                     "rng": torch.get_rng_state(), "step": step, "best": best, "data": cfg.data,
                     "seconds": elapsed_before + time.perf_counter() - start}
        save_checkpoint(path, model, cfg, state, {"step": step, **extra})
        if with_state:   # the curves travel with the checkpoint that resumes them
            shutil.copy(out / "metrics.csv", path / "metrics.csv")

    from tqdm import tqdm

    bar = tqdm(total=cfg.max_steps, initial=step, unit="step", desc="train",
               disable=not (cfg.progress and main_process), dynamic_ncols=True)
    start = time.perf_counter()
    first_step = step
    stopped = "finished"
    global_batch = cfg.batch_size * world
    window: list[float] = []
    window_t = time.perf_counter()
    while step < cfg.max_steps:
        if cfg.max_minutes and time.perf_counter() - start > 60.0 * cfg.max_minutes:
            stopped = "time"
            break
        if cfg.steps_this_run and step - first_step >= cfg.steps_this_run:
            stopped = "steps"
            break
        pairs = batch_indices(step, len(train_set), global_batch, cfg.seed)[rank::world]
        examples = []
        for epoch, index in pairs:
            train_set.set_epoch(epoch)
            examples.append(train_set[index])
        batch = {k: v.to(device, non_blocking=True) for k, v in task.collate(examples).items()}
        with autocast:
            loss, parts = task.loss(net, batch, cfg, step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        lr = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        step += 1
        value = float(loss.detach())
        if distributed:
            t = torch.tensor([value], device=device)
            dist.all_reduce(t)
            value = float(t) / world
        window.append(value)
        bar.update(1)
        bar.set_postfix(loss=f"{value:.4f}")
        if main_process and (step % cfg.log_interval == 0 or step == cfg.max_steps):
            rate = len(window) * global_batch / max(time.perf_counter() - window_t, 1e-9)
            log.write(step=step, seconds=round(elapsed_before + time.perf_counter() - start, 1), lr=f"{lr:.3e}",
                      loss=f"{value:.5f}", examples_per_s=f"{rate:.2f}",
                      **{k: f"{float(v.detach()):.5f}" for k, v in parts.items() if not math.isnan(float(v.detach()))})
            window, window_t = [], time.perf_counter()
        if main_process and val_set is not None and (step % cfg.eval_interval == 0 or step == cfg.max_steps):
            metrics = task.evaluate(model, val_set, cfg, device, step, out / "val" / f"step_{step}.png")
            log.write(step=step, seconds=round(elapsed_before + time.perf_counter() - start, 1),
                      **{k: f"{v:.5f}" for k, v in metrics.items()})
            bar.write(f"step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
            if metrics[task.selection] < best:
                best = metrics[task.selection]
                checkpoint(out / "best", False, val=metrics)
            plot_curves(log.rows(), out / "curves.png", title=f"{out.name}: {step} steps", task=task)
        if main_process and (step % cfg.ckpt_interval == 0 or step == cfg.max_steps):
            checkpoint(ckpt, True)
    bar.close()
    if main_process:
        checkpoint(ckpt, True)
        plot_curves(log.rows(), out / "curves.png", title=f"{out.name}: {step} steps", task=task)
    if distributed:
        dist.barrier()
        dist.destroy_process_group()
    seconds = elapsed_before + time.perf_counter() - start
    return {"step": step, "stopped": stopped, "seconds": seconds, "best_val": best, "selection": task.selection}


def main(argv: list[str] | None = None) -> int:
    cfg = parse_config(sys.argv[1:] if argv is None else argv)
    result = train(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        if result["stopped"] != "finished":
            limit = f"--max_minutes {cfg.max_minutes:g}" if result["stopped"] == "time" else \
                f"--steps_this_run {cfg.steps_this_run}"
            print(f"stopped after {limit} at step {result['step']} of {cfg.max_steps}; "
                  f"run the same command again to resume from {Path(cfg.out) / 'ckpt'}")
        else:
            print(f"finished {result['step']} steps in {result['seconds'] / 60:.1f} min (all sessions); "
                  f"best {result['selection']} {result['best_val']:.4f}; weights: {Path(cfg.out) / 'best'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
