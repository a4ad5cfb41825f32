"""A mesh language model: a decoder-only transformer over :mod:`training.tokenizer`'s tokens,
conditioned on a point cloud (MeshAnything-style) or a caption (LLaMA-Mesh-style).

Safe to import: nothing but torch at import time.

Layout of one sequence: ``[point tokens] [caption tokens] BOS t_1 ... t_n``. The point tokens come
from a point-cloud encoder (perceiver-style: learned latents cross-attend to the points' Fourier
features and normals, then self-attend), the caption tokens from a caption encoder (UTF-8 bytes
through a small transformer); a condition that is absent is a learned null (trained by dropping
each: one model serves both points-to-mesh and text-to-mesh);
the decoder attends causally over the whole sequence (rotary positions, PyTorch's
``scaled_dot_product_attention``), and the loss is on the mesh tokens. Sampling (:func:`generate`)
keeps a key/value cache and masks every step by the tokenizer's grammar, so it always decodes to
a mesh.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

from training.tokenizer import Decoder, Vocabulary

#: Caption bytes kept (UTF-8), and the byte vocabulary (+ PAD).
CAPTION_BYTES = 96
BYTE_VOCAB = 257


@dataclass
class MeshLMConfig:
    """Every size of :class:`MeshLM`; stored beside the weights, it rebuilds the model alone."""

    bits: int = 7
    max_split: int = 32
    width: int = 256
    layers: int = 6
    heads: int = 8
    max_tokens: int = 2048            # mesh tokens (BOS included)
    point_latents: int = 64           # condition tokens from a point cloud
    point_layers: int = 2
    point_frequencies: int = 8
    text_layers: int = 2
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.width % self.heads or (self.width // self.heads) % 2:
            raise ValueError("width / heads must be an even integer (rotary embeddings)")

    @property
    def vocab(self) -> Vocabulary:
        return Vocabulary(self.bits, self.max_split)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "MeshLMConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown mesh_lm config key(s): {', '.join(unknown)}")
        return cls(**data)


def caption_bytes(captions: list[str]) -> torch.Tensor:
    """(B, CAPTION_BYTES) int64: UTF-8 bytes + 1, 0 padding."""
    out = torch.zeros(len(captions), CAPTION_BYTES, dtype=torch.long)
    for i, text in enumerate(captions):
        data = text.encode("utf-8")[:CAPTION_BYTES]
        if data:
            out[i, :len(data)] = torch.tensor(list(data), dtype=torch.long) + 1
    return out


# -- layers -----------------------------------------------------------------------------------


def _rotary(positions: torch.Tensor, dim: int, base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    inv = 1.0 / (base ** (torch.arange(0, dim, 2, device=positions.device, dtype=torch.float32) / dim))
    angles = positions.float()[:, None] * inv[None]
    return angles.cos(), angles.sin()


def _apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (B, H, T, D): rotate pairs (even, odd) by the angles of each position."""
    x1, x2 = x[..., 0::2], x[..., 1::2]
    out = torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], -1)
    return out.flatten(-2).to(x.dtype)


class _Attention(nn.Module):
    def __init__(self, width: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.out = nn.Linear(width, width, bias=False)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None, *, causal: bool,
                cache: dict | None = None) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        if rope is not None:
            q, k = _apply_rotary(q, *rope), _apply_rotary(k, *rope)
        if cache is not None:
            if "k" in cache:
                k = torch.cat([cache["k"], k], 2)
                v = torch.cat([cache["v"], v], 2)
            cache["k"], cache["v"] = k, v
        # With a cache, a single new query sees every key: no mask. Several new queries (the
        # prompt) on an empty cache: causal as in training.
        is_causal = causal and q.shape[2] > 1
        y = F.scaled_dot_product_attention(q, k, v, is_causal=is_causal,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(b, t, c))


class _Block(nn.Module):
    def __init__(self, width: int, heads: int, dropout: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attn = _Attention(width, heads, dropout)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x, rope=None, *, causal: bool = False, cache: dict | None = None):
        x = x + self.attn(self.norm1(x), rope, causal=causal, cache=cache)
        return x + self.mlp(self.norm2(x))


class _CrossBlock(nn.Module):
    """Latents attend to a set (the points)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.norm_q = nn.LayerNorm(width)
        self.norm_kv = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, latents: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        kv = self.norm_kv(points)
        latents = latents + self.attn(self.norm_q(latents), kv, kv, need_weights=False)[0]
        return latents + self.mlp(self.norm2(latents))


class PointEncoder(nn.Module):
    """(B, N, 6) points + normals in ``[-1, 1]^3`` -> (B, point_latents, width) condition tokens."""

    def __init__(self, cfg: MeshLMConfig):
        super().__init__()
        self.frequencies = cfg.point_frequencies
        self.embed = nn.Sequential(nn.Linear(3 + 6 * cfg.point_frequencies + 3, cfg.width), nn.GELU(),
                                   nn.Linear(cfg.width, cfg.width))
        self.latents = nn.Parameter(torch.randn(1, cfg.point_latents, cfg.width) * 0.02)
        self.cross = _CrossBlock(cfg.width, cfg.heads)
        self.blocks = nn.ModuleList([_Block(cfg.width, cfg.heads, 0.0) for _ in range(cfg.point_layers)])

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        xyz, normals = points[..., :3], points[..., 3:6]
        scales = (2.0 ** torch.arange(self.frequencies, device=xyz.device, dtype=xyz.dtype)) * math.pi
        angles = (xyz[..., None] * scales).flatten(-2)
        feats = self.embed(torch.cat([xyz, angles.sin(), angles.cos(), normals], -1))
        x = self.cross(self.latents.expand(len(points), -1, -1), feats)
        for block in self.blocks:
            x = block(x)
        return x


class CaptionEncoder(nn.Module):
    """(B, CAPTION_BYTES) bytes -> (B, CAPTION_BYTES, width) condition tokens (padding zeroed)."""

    def __init__(self, cfg: MeshLMConfig):
        super().__init__()
        self.embed = nn.Embedding(BYTE_VOCAB, cfg.width, padding_idx=0)
        self.position = nn.Parameter(torch.randn(1, CAPTION_BYTES, cfg.width) * 0.02)
        self.blocks = nn.ModuleList([_Block(cfg.width, cfg.heads, 0.0) for _ in range(cfg.text_layers)])

    def forward(self, caption: torch.Tensor) -> torch.Tensor:
        x = self.embed(caption) + self.position
        for block in self.blocks:
            x = block(x)
        return x * (caption > 0)[..., None].to(x.dtype)


class MeshLM(nn.Module):
    def __init__(self, cfg: MeshLMConfig):
        super().__init__()
        self.config = cfg
        vocab = cfg.vocab
        self.vocab_size = len(vocab)
        self.bos = vocab.BOS
        self.tokens = nn.Embedding(self.vocab_size, cfg.width)
        self.points = PointEncoder(cfg)
        self.caption = CaptionEncoder(cfg)
        self.kind = nn.Embedding(2, cfg.width)           # 0: points, 1: caption
        self.null = nn.Parameter(torch.zeros(2, cfg.width))  # an absent condition: 0 points, 1 caption
        self.blocks = nn.ModuleList([_Block(cfg.width, cfg.heads, cfg.dropout) for _ in range(cfg.layers)])
        self.norm = nn.LayerNorm(cfg.width)
        self.head = nn.Linear(cfg.width, self.vocab_size, bias=False)
        self.apply(self._init)

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)

    @property
    def condition_length(self) -> int:
        return self.config.point_latents + CAPTION_BYTES

    def condition(self, points: torch.Tensor | None = None, caption: torch.Tensor | None = None, *,
                  use_points: torch.Tensor | None = None, use_caption: torch.Tensor | None = None) -> torch.Tensor:
        """Condition tokens (B, point_latents + CAPTION_BYTES, width) from points (B, N, 6) and caption
        bytes (B, CAPTION_BYTES); either may be None (absent), or absent per example where
        ``use_points`` / ``use_caption`` (B,) bool are False."""
        if points is None and caption is None:
            raise ValueError("give points, a caption or both")
        b = len(points) if points is not None else len(caption)
        device = (points if points is not None else caption).device
        cfg = self.config
        null_p = (self.null[0] + self.kind.weight[0]).expand(b, cfg.point_latents, -1)
        null_c = (self.null[1] + self.kind.weight[1]).expand(b, CAPTION_BYTES, -1)
        if points is None:
            p = null_p
        else:
            p = self.points(points) + self.kind.weight[0]
            if use_points is not None:
                p = torch.where(use_points.to(device)[:, None, None], p, null_p)
        if caption is None:
            c = null_c
        else:
            c = self.caption(caption) + self.kind.weight[1]
            if use_caption is not None:
                c = torch.where(use_caption.to(device)[:, None, None], c, null_c)
        return torch.cat([p, c], 1)

    def _run(self, x: torch.Tensor, start: int, caches: list[dict] | None) -> torch.Tensor:
        head_dim = self.config.width // self.config.heads
        rope = _rotary(torch.arange(start, start + x.shape[1], device=x.device), head_dim)
        for i, block in enumerate(self.blocks):
            x = block(x, rope, causal=True, cache=None if caches is None else caches[i])
        return self.head(self.norm(x))

    def logits(self, cond: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Logits (B, T, vocab) for the next token at every position of ``tokens`` (B, T; BOS first)."""
        x = torch.cat([cond, self.tokens(tokens)], 1)
        return self._run(x, 0, None)[:, cond.shape[1]:]

    def forward(self, tokens: torch.Tensor, points: torch.Tensor | None = None, caption: torch.Tensor | None = None,
                use_points: torch.Tensor | None = None, use_caption: torch.Tensor | None = None) -> torch.Tensor:
        """Logits as :meth:`logits`, from the raw conditions (one call: what DDP wraps)."""
        cond = self.condition(points, caption, use_points=use_points, use_caption=use_caption)
        return self.logits(cond, tokens)


def token_loss(logits: torch.Tensor, tokens: torch.Tensor, lengths: torch.Tensor, reduce: bool = True) -> torch.Tensor:
    """Next-token cross-entropy of ``logits`` (of ``tokens[:, :-1]``) over the real tokens (BOS + mesh, padded);
    per example (B,) unless ``reduce``."""
    target = tokens[:, 1:]
    valid = (torch.arange(target.shape[1], device=tokens.device)[None] < (lengths[:, None] - 1)).float()
    ce = F.cross_entropy(logits.transpose(1, 2), target, reduction="none") * valid
    if reduce:
        return ce.sum() / valid.sum().clamp(min=1)
    return ce.sum(1) / valid.sum(1).clamp(min=1)


def lm_loss(model: MeshLM, cond: torch.Tensor, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy over the real tokens (``tokens`` is BOS + mesh tokens, padded)."""
    return token_loss(model.logits(cond, tokens[:, :-1]), tokens, lengths)


@dataclass
class Sample:
    tokens: list[int]
    vertices: object                   # (n, 3) int64 quantized coordinates
    faces: list[tuple[int, ...]]
    finished: bool                     # ended by EOS (not the budget, the length or a cancel)
    seconds: float
    tokens_per_second: float


@torch.no_grad()
def generate(model: MeshLM, cond: torch.Tensor, *, max_faces: int = 800, temperature: float = 0.8,
             top_p: float = 0.95, seed: int = 0, use_cache: bool = True, should_stop=None,
             on_progress=None) -> Sample:
    """Sample one mesh (batch of one ``cond``), every token masked by the grammar.

    ``should_stop()`` is asked between tokens (cancel); ``on_progress(decoder)`` is called after
    each face. Stops at EOS, at ``max_faces`` faces, or at the model's token limit; the faces so
    far are the result either way.
    """
    model.eval()
    cfg = model.config
    dec = Decoder(cfg.vocab)
    generator = torch.Generator().manual_seed(seed)
    caches = [dict() for _ in model.blocks] if use_cache else None
    seq = [model.bos]
    start = time.perf_counter()
    x = torch.cat([cond, model.tokens(torch.tensor([[model.bos]], device=cond.device))], 1)
    logits = model._run(x, 0, caches)[0, -1]
    faces_seen = 0
    while len(seq) < cfg.max_tokens and dec.face_count() < max_faces:
        if should_stop is not None and should_stop():
            break
        allowed = torch.from_numpy(dec.allowed()).to(logits.device)
        if not allowed.any():
            break
        logits = logits.float().masked_fill(~allowed, float("-inf"))
        token = _sample(logits, temperature, top_p, generator)
        dec.push(token)
        seq.append(token)
        if dec.face_count() != faces_seen:
            faces_seen = dec.face_count()
            if on_progress is not None:
                on_progress(dec)
        if dec.finished:
            break
        if use_cache:
            logits = model._run(model.tokens(torch.tensor([[token]], device=cond.device)), cond.shape[1] + len(seq) - 1,
                                caches)[0, -1]
        else:
            x = torch.cat([cond, model.tokens(torch.tensor([seq], device=cond.device))], 1)
            logits = model._run(x, 0, None)[0, -1]
    seconds = time.perf_counter() - start
    vertices, faces = dec.mesh()
    return Sample(seq[1:], vertices, faces, dec.finished, seconds, (len(seq) - 1) / max(seconds, 1e-9))


def _sample(logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator) -> int:
    if temperature <= 0:
        return int(logits.argmax())
    probs = torch.softmax(logits / temperature, -1)
    if top_p < 1.0:
        sorted_p, order = probs.sort(descending=True)
        keep = sorted_p.cumsum(0) - sorted_p < top_p
        keep[0] = True
        probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_p[keep])
    return int(torch.multinomial(probs / probs.sum(), 1, generator=generator))
