"""The views-to-mesh model: posed views (+ normal maps) lifted into a voxel grid, a 3D U-Net with a
transformer at its bottleneck, and a point decoder for signed distance and colour.

Safe to import: no work at import time, nothing but torch.

Shapes (``B`` assets, ``V`` views, ``H x W`` pixels, ``N`` query points, ``G`` grid nodes a side):

==================== ===================== ================================================
input                shape                 meaning
==================== ===================== ================================================
``images``           (B, V, 10, H, W)      RGB on grey (3), world normals (3, zero when
                                           absent), mask (1), normals-present flag (1),
                                           depth of the surface the normal map describes
                                           (camera z, 1) and where it is known (1); both
                                           zero without normal maps
``world_to_camera``  (B, V, 4, 4)          OpenCV world-to-camera (:mod:`backend.conventions`)
``intrinsics``       (B, V, 3, 3)          pixel intrinsics at ``H x W``
``points``           (B, N, 3)             query points in the world frame, ``[-1, 1]^3``
==================== ===================== ================================================

Architecture (MeshFormer-like, sized by :class:`ModelConfig`):

1. A small 2D CNN, shared by the views, gives feature maps at 1/2 and 1/4 of the image size.
2. Lifting: every node of a ``G^3`` grid over ``[-1, 1]^3`` is projected into every view; the
   1/4-scale features there are pooled over the views that see the node (mean and max), and
   joined by the node's visual-hull value (smallest mask over the views), its depth cues and its
   position. Depth cues: per view, how far the node lies behind (+) or in front of (-) the surface
   the view's normal map integrates to (``training.baseline.view_depths``), squashed by ``tanh``,
   then mean, min and max over the views that know a depth there, and their share: a node in front
   of any view's surface is empty space, which the masks alone cannot tell inside a concavity.
3. A 3D U-Net (``G -> G/2 -> G/4``) with a transformer over the ``(G/4)^3`` bottleneck tokens.
4. The point decoder: at each query point, the U-Net's volume (trilinear), the 1/2-scale
   pixel-aligned features pooled over the views, the hull value, the depth cues and Fourier
   features of the position go through an MLP to a truncated signed distance (negative inside) and an RGB colour.

Step 4 lets the surface be extracted at any resolution (coarse to fine, :func:`extract_sdf_grid`),
finer than the grid of step 2.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

#: Channels of one view's image tensor (see the module doc); the CNN sees the first ENCODED_CHANNELS.
IMAGE_CHANNELS = 10
ENCODED_CHANNELS = 8
#: Depth cues per point: mean, min and max of the squashed depth differences, and the share of views.
DEPTH_FEATURES = 4
#: The grid and the query points live in ``[-GRID_HALF, GRID_HALF]^3`` (world units).
GRID_HALF = 1.0


@dataclass
class ModelConfig:
    """Every size of :class:`ViewsToSDF`; stored beside the weights, it rebuilds the model alone."""

    image_size: int = 128
    encoder_channels: tuple[int, int] = (32, 32)
    grid: int = 32
    unet_channels: tuple[int, int, int] = (16, 48, 96)
    transformer_layers: int = 2
    transformer_heads: int = 4
    decoder_width: int = 128
    decoder_layers: int = 3
    fourier_frequencies: int = 6
    truncation: float = 0.1
    depth_cues: bool = True
    depth_scale: float = 0.05

    def __post_init__(self) -> None:
        self.encoder_channels = tuple(int(c) for c in self.encoder_channels)
        self.unet_channels = tuple(int(c) for c in self.unet_channels)
        if len(self.encoder_channels) != 2 or len(self.unet_channels) != 3:
            raise ValueError("encoder_channels needs 2 sizes and unet_channels 3")
        if self.grid % 4 or self.grid < 8:
            raise ValueError(f"grid must be a multiple of 4, at least 8, got {self.grid}")
        if self.image_size % 4:
            raise ValueError(f"image_size must be a multiple of 4, got {self.image_size}")
        if self.unet_channels[2] % self.transformer_heads:
            raise ValueError("unet_channels[2] must be divisible by transformer_heads")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown model config key(s): {', '.join(unknown)}")
        return cls(**data)


def _norm(channels: int, dims: int) -> nn.Module:
    groups = math.gcd(8, channels)
    return nn.GroupNorm(groups, channels)


class _Conv2d(nn.Sequential):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), _norm(cout, 2), nn.SiLU())


class _Block3d(nn.Module):
    """Two 3x3x3 convolutions with a residual connection."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = nn.Conv3d(cin, cout, 3, 1, 1, bias=False)
        self.norm1 = _norm(cout, 3)
        self.conv2 = nn.Conv3d(cout, cout, 3, 1, 1, bias=False)
        self.norm2 = _norm(cout, 3)
        self.skip = nn.Conv3d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.norm1(self.conv1(x)))
        h = self.norm2(self.conv2(h))
        return F.silu(h + self.skip(x))


class ImageEncoder(nn.Module):
    """Shared per-view CNN: (B*V, ENCODED_CHANNELS, H, W) -> features at 1/2 and 1/4 of H x W."""

    def __init__(self, c1: int, c2: int):
        super().__init__()
        self.to_half = nn.Sequential(_Conv2d(ENCODED_CHANNELS, c1, 2), _Conv2d(c1, c1))
        self.to_quarter = nn.Sequential(_Conv2d(c1, c2, 2), _Conv2d(c2, c2), _Conv2d(c2, c2))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        half = self.to_half(x)
        return half, self.to_quarter(half)


class BottleneckTransformer(nn.Module):
    """Pre-norm transformer over the voxels of the coarsest U-Net level, with learned positions."""

    def __init__(self, channels: int, tokens: int, layers: int, heads: int):
        super().__init__()
        self.position = nn.Parameter(torch.zeros(1, tokens, channels))
        nn.init.normal_(self.position, std=0.02)
        layer = nn.TransformerEncoderLayer(channels, heads, 4 * channels, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False) if layers else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.layers is None:
            return x
        b, c, d, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2) + self.position
        tokens = self.layers(tokens)
        return tokens.transpose(1, 2).reshape(b, c, d, h, w)


class UNet3d(nn.Module):
    def __init__(self, cin: int, channels: tuple[int, int, int], grid: int, layers: int, heads: int):
        super().__init__()
        c1, c2, c3 = channels
        self.stem = nn.Conv3d(cin, c1, 1)                  # many lifted channels: mix them cheaply first
        self.enc1 = _Block3d(c1, c1)
        self.down1 = nn.Conv3d(c1, c2, 3, 2, 1)
        self.enc2 = _Block3d(c2, c2)
        self.down2 = nn.Conv3d(c2, c3, 3, 2, 1)
        self.enc3 = _Block3d(c3, c3)
        self.transformer = BottleneckTransformer(c3, (grid // 4) ** 3, layers, heads)
        self.up2 = nn.Conv3d(c3, c2, 1)
        self.dec2 = _Block3d(2 * c2, c2)
        self.up1 = nn.Conv3d(c2, c1, 1)
        self.dec1 = _Block3d(2 * c1, c1)
        # oneDNN's 3D convolutions run several times faster channels-last (backward above all).
        for module in self.modules():
            if isinstance(module, nn.Conv3d):
                module.weight.data = module.weight.data.contiguous(memory_format=torch.channels_last_3d)

    def _apply(self, fn, recurse=True):  # keep the layout through .to() / .float()
        super()._apply(fn, recurse)
        for module in self.modules():
            if isinstance(module, nn.Conv3d):
                module.weight.data = module.weight.data.contiguous(memory_format=torch.channels_last_3d)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last_3d)
        e1 = self.enc1(self.stem(x))
        e2 = self.enc2(self.down1(e1))
        e3 = self.transformer(self.enc3(self.down2(e2)))
        d2 = self.dec2(torch.cat([F.interpolate(self.up2(e3), scale_factor=2, mode="trilinear"), e2], 1))
        return self.dec1(torch.cat([F.interpolate(self.up1(d2), scale_factor=2, mode="trilinear"), e1], 1))


def grid_points(resolution: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """The ``(r^3, 3)`` nodes of a regular grid over ``[-GRID_HALF, GRID_HALF]^3``, x slowest, z fastest."""
    axis = torch.linspace(-GRID_HALF, GRID_HALF, resolution, device=device, dtype=dtype)
    x, y, z = torch.meshgrid(axis, axis, axis, indexing="ij")
    return torch.stack([x, y, z], -1).reshape(-1, 3)


def project(points: torch.Tensor, world_to_camera: torch.Tensor, intrinsics: torch.Tensor,
            height: int, width: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Points (B, N, 3) into every view: ``grid_sample`` coordinates (B, V, N, 2), validity (B, V, N)
    and camera depth ``z`` (B, V, N).

    Valid: in front of the camera and inside the image. Pixel ``(u, v)`` has its centre at
    ``(u, v)``, so the image spans ``[-0.5, W - 0.5]``; ``align_corners=False`` coordinates follow.
    """
    rot = world_to_camera[..., :3, :3]                                     # (B, V, 3, 3)
    trans = world_to_camera[..., :3, 3]                                    # (B, V, 3)
    cam = torch.einsum("bvij,bnj->bvni", rot, points) + trans[:, :, None, :]
    z = cam[..., 2]
    front = z > 1e-6
    pix = torch.einsum("bvij,bvnj->bvni", intrinsics, cam)
    zs = torch.where(front, z, torch.ones_like(z))
    u, v = pix[..., 0] / zs, pix[..., 1] / zs
    gx = (u + 0.5) / width * 2 - 1
    gy = (v + 0.5) / height * 2 - 1
    valid = front & (gx.abs() <= 1) & (gy.abs() <= 1)
    coords = torch.stack([gx, gy], -1)
    return torch.where(valid[..., None], coords, torch.full_like(coords, -2.0)), valid, z


def sample_views(features: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of per-view maps (B, V, C, h, w) at coords (B, V, N, 2): (B, V, C, N); 0 outside."""
    b, v, c, h, w = features.shape
    out = F.grid_sample(features.reshape(b * v, c, h, w), coords.reshape(b * v, 1, -1, 2),
                        mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.reshape(b, v, c, -1)


def pool_views(samples: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean and standard deviation over the views that see each point: (B, V, C, N) -> (B, 2C, N).

    The spread tells whether the views agree (a surface point) or not (empty space in front
    of different surfaces), as in multi-view stereo cost volumes.
    """
    weight = valid.to(samples.dtype)
    weight = (weight / weight.sum(1, keepdim=True).clamp(min=1.0))[:, :, None, :]   # (B, V, 1, N)
    # E[x] and E[x^2] in two passes over the big tensor (the lifting's main cost on a CPU).
    weighted = samples * weight
    mean = weighted.sum(1)
    var = (weighted * samples).sum(1) - mean * mean
    return torch.cat([mean, (var.clamp(min=0.0) + 1e-6).sqrt()], 1)


def hull_value(masks: torch.Tensor, coords: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Smallest mask over the views at each point (0 where any view does not see it): (B, N)."""
    alpha = sample_views(masks, coords)[:, :, 0]                          # (B, V, N)
    return torch.where(valid, alpha, torch.zeros_like(alpha)).amin(1)


def depth_cues(depth: torch.Tensor, coords: torch.Tensor, valid: torch.Tensor, z: torch.Tensor,
               scale: float) -> torch.Tensor:
    """Where points lie against the surfaces the views' normal maps describe: (B, DEPTH_FEATURES, N).

    ``depth`` (B, V, 2, H, W) holds each view's surface depth and where it is known. Per view and
    point: ``tanh((z - surface depth) / scale)``, negative in front of the surface (empty space);
    then mean, min and max over the views that know a depth at the point, and their share.
    """
    sampled = sample_views(torch.cat([depth[:, :, :1] * depth[:, :, 1:], depth[:, :, 1:]], 2), coords)
    weight = sampled[:, :, 1]                                             # bilinear share of known pixels
    usable = valid & (weight > 0.5)
    surface = sampled[:, :, 0] / weight.clamp(min=1e-6)
    diff = torch.tanh((z - surface) / scale)
    count = usable.sum(1)
    mean = torch.where(usable, diff, torch.zeros_like(diff)).sum(1) / count.clamp(min=1)
    low = torch.where(usable, diff, torch.full_like(diff, 2.0)).amin(1)
    high = torch.where(usable, diff, torch.full_like(diff, -2.0)).amax(1)
    any_view = count > 0
    low = torch.where(any_view, low, torch.zeros_like(low))
    high = torch.where(any_view, high, torch.zeros_like(high))
    return torch.stack([mean, low, high, count.to(diff.dtype) / depth.shape[1]], 1)


def fourier(points: torch.Tensor, frequencies: int) -> torch.Tensor:
    """sin / cos of the coordinates at octave frequencies: (B, N, 3) -> (B, N, 6F)."""
    scales = (2.0 ** torch.arange(frequencies, device=points.device, dtype=points.dtype)) * math.pi
    angles = points[..., None] * scales                                   # (B, N, 3, F)
    return torch.cat([angles.sin(), angles.cos()], -1).flatten(-2)


class ViewsToSDF(nn.Module):
    """Posed views -> a field of truncated signed distance and colour; see the module doc."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        c1, c2 = config.encoder_channels
        self.encoder = ImageEncoder(c1, c2)
        cues = DEPTH_FEATURES if config.depth_cues else 0
        self.unet = UNet3d(2 * c2 + 1 + cues + 3, config.unet_channels, config.grid, config.transformer_layers,
                           config.transformer_heads)
        width = config.decoder_width
        cin = config.unet_channels[0] + 2 * c1 + 1 + cues + 6 * config.fourier_frequencies
        layers: list[nn.Module] = []
        for _ in range(config.decoder_layers):
            layers += [nn.Linear(cin, width), nn.SiLU()]
            cin = width
        self.decoder = nn.Sequential(*layers)
        self.sdf_head = nn.Linear(width, 1)
        self.colour_head = nn.Linear(width, 3)

    def encode(self, images: torch.Tensor, world_to_camera: torch.Tensor, intrinsics: torch.Tensor) -> dict:
        """Everything that does not depend on the query points: per-view maps and the U-Net volume."""
        b, v, c, h, w = images.shape
        if c != IMAGE_CHANNELS:
            raise ValueError(f"images need {IMAGE_CHANNELS} channels, got {c}")
        half, quarter = self.encoder(images[:, :, :ENCODED_CHANNELS].reshape(b * v, ENCODED_CHANNELS, h, w))
        half = half.reshape(b, v, *half.shape[1:])
        quarter = quarter.reshape(b, v, *quarter.shape[1:])
        masks = images[:, :, 6:7]
        depth = images[:, :, 8:10] if self.config.depth_cues else None
        g = self.config.grid
        nodes = grid_points(g, images.device, images.dtype)[None].expand(b, -1, -1)
        coords, valid, z = project(nodes, world_to_camera, intrinsics, h, w)
        parts = [pool_views(sample_views(quarter, coords), valid),          # (B, 2 c2, G^3)
                 hull_value(masks, coords, valid)[:, None]]                 # (B, 1, G^3)
        if depth is not None:
            parts.append(depth_cues(depth, coords, valid, z, self.config.depth_scale))
        volume_in = torch.cat(parts + [nodes.transpose(1, 2)], 1).reshape(b, -1, g, g, g)
        volume = self.unet(volume_in)
        return {"half": half, "masks": masks, "depth": depth, "volume": volume, "world_to_camera": world_to_camera,
                "intrinsics": intrinsics, "size": (h, w)}

    def decode(self, state: dict, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Truncated SDF (B, N) and colour (B, N, 3) in [0, 1] at world points (B, N, 3)."""
        h, w = state["size"]
        coords, valid, z = project(points, state["world_to_camera"], state["intrinsics"], h, w)
        parts = [pool_views(sample_views(state["half"], coords), valid),   # (B, 2 c1, N)
                 hull_value(state["masks"], coords, valid)[:, None]]       # (B, 1, N)
        if state["depth"] is not None:
            parts.append(depth_cues(state["depth"], coords, valid, z, self.config.depth_scale))
        # grid_sample over a volume indexed (x, y, z) as (D, H, W) takes coordinates ordered (z, y, x).
        where = (points / GRID_HALF).flip(-1)[:, :, None, None, :]
        voxel = F.grid_sample(state["volume"], where, mode="bilinear", padding_mode="border",
                              align_corners=True)[:, :, :, 0, 0]           # (B, C, N)
        feats = torch.cat([voxel] + parts + [fourier(points, self.config.fourier_frequencies).transpose(1, 2)], 1)
        hidden = self.decoder(feats.transpose(1, 2))
        trunc = self.config.truncation
        sdf = trunc * torch.tanh(self.sdf_head(hidden)[..., 0] / trunc)
        return sdf, torch.sigmoid(self.colour_head(hidden))

    def forward(self, images, world_to_camera, intrinsics, points):
        return self.decode(self.encode(images, world_to_camera, intrinsics), points)


@torch.no_grad()
def extract_sdf_grid(model: ViewsToSDF, state: dict, resolution: int, *, coarse: int | None = None,
                     band: float = 2.5, chunk: int = 65536, progress=None) -> torch.Tensor:
    """The SDF at the nodes of a ``resolution^3`` grid over ``[-1, 1]^3`` (x slowest), for one asset.

    Coarse to fine: the decoder runs on a ``coarse^3`` grid (default ``resolution // 2``), and
    again at full resolution only where the trilinearly upsampled coarse value lies within
    ``band`` coarse voxels of the surface; elsewhere the upsampled value stands (its sign is
    all marching cubes needs there).
    """
    device = state["volume"].device
    coarse = coarse or max(resolution // 2, 8)

    def evaluate(points: torch.Tensor) -> torch.Tensor:
        out = []
        for start in range(0, len(points), chunk):
            out.append(model.decode(state, points[None, start:start + chunk])[0][0])
            if progress is not None:
                progress(min(start + chunk, len(points)) / max(len(points), 1))
        return torch.cat(out) if out else torch.zeros(0, device=device)

    low = evaluate(grid_points(coarse, device)).reshape(1, 1, coarse, coarse, coarse)
    if coarse == resolution:
        return low[0, 0]
    up = F.interpolate(low, size=(resolution,) * 3, mode="trilinear", align_corners=True)[0, 0].reshape(-1)
    near = up.abs() < band * 2 * GRID_HALF / (coarse - 1)
    fine = grid_points(resolution, device)[near]
    up[near] = evaluate(fine)
    return up.reshape(resolution, resolution, resolution)
