"""MMSE restorers used as the "first stage" of Deep OT benchmarks: DnCNN, FFDNet, CARN-M.

Why: DOT post-processes the output of an MMSE restorer; these small public models
(KAIR DnCNN/FFDNet colour denoisers, CARN-M super-resolution) give such outputs on CPU.
Definitions are written from the shared-data README so that the public state dicts
load without renaming. Not part of the library (benchmarks only).

Images are ComfyUI IMAGE tensors [B,H,W,C] in 0..1; noise levels are on a 0-255 scale.
"""
from __future__ import annotations

from pathlib import Path
from typing import Union

import torch
import torch.nn.functional as F
from torch import nn

PathLike = Union[str, Path]

DNCNN_DEPTH = 20            # convs in CDnCNN-B
DNCNN_WIDTH = 64
FFDNET_DEPTH = 12           # convs in colour FFDNet
FFDNET_WIDTH = 96
FFDNET_UNSHUFFLE = 2        # FFDNet works on 2x2 pixel-unshuffled images
CARN_WIDTH = 64
CARN_GROUPS = 4             # grouped convs of the efficient residual block / upsampler
CARN_SCALES = (2, 3, 4)
CARN_RGB_MEAN = (0.4488, 0.4371, 0.4040)   # DIV2K mean, subtracted by sub_mean
NOISE_SCALE = 255.0


def _conv_relu_stack(in_ch: int, width: int, out_ch: int, depth: int) -> nn.Sequential:
    """conv+ReLU ... conv (no final ReLU), all 3x3 with bias; keys model.0, model.2, ..."""
    layers = [nn.Conv2d(in_ch, width, 3, padding=1), nn.ReLU(inplace=True)]
    for _ in range(depth - 2):
        layers += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU(inplace=True)]
    layers.append(nn.Conv2d(width, out_ch, 3, padding=1))
    return nn.Sequential(*layers)


class DnCNN(nn.Module):
    """Colour blind DnCNN (KAIR, BN merged): predicts the noise, output = y - net(y)."""

    def __init__(self, channels: int = 3):
        super().__init__()
        self.model = _conv_relu_stack(channels, DNCNN_WIDTH, channels, DNCNN_DEPTH)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return y - self.model(y)


class FFDNet(nn.Module):
    """Colour FFDNet (KAIR): unshuffle x2, append the noise map σ/255, 12 convs, shuffle back."""

    def __init__(self, channels: int = 3):
        super().__init__()
        r2 = FFDNET_UNSHUFFLE ** 2
        self.model = _conv_relu_stack(channels * r2 + 1, FFDNET_WIDTH, channels * r2, FFDNET_DEPTH)

    def forward(self, y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """y: [B,3,H,W]; sigma: noise std in 0..1 units, shape [B] or scalar.

        Odd sizes are replicate-padded to even and cropped back (as KAIR does).
        """
        h, w = y.shape[-2:]
        y = F.pad(y, (0, w % 2, 0, h % 2), mode="replicate")
        x = F.pixel_unshuffle(y, FFDNET_UNSHUFFLE)
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1, 1, 1, 1)
        noise_map = sigma.expand(x.shape[0], 1, x.shape[2], x.shape[3])
        x = self.model(torch.cat([x, noise_map], dim=1))
        return F.pixel_shuffle(x, FFDNET_UNSHUFFLE)[..., :h, :w]


class _MeanShift(nn.Module):
    """Fixed 1x1 conv adding/subtracting the RGB mean (weights come from the checkpoint)."""

    def __init__(self, sign: float):
        super().__init__()
        self.shifter = nn.Conv2d(3, 3, 1)
        self.shifter.weight.data.copy_(torch.eye(3).view(3, 3, 1, 1))
        self.shifter.bias.data.copy_(sign * torch.tensor(CARN_RGB_MEAN))

    def forward(self, x):
        return self.shifter(x)


class _Fusion(nn.Module):
    """1x1 conv + ReLU joining concatenated features (key ``body.0``)."""

    def __init__(self, n_in: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(n_in, CARN_WIDTH, 1), nn.ReLU(inplace=True))

    def forward(self, x):
        return self.body(x)


class _EResidualBlock(nn.Module):
    """Efficient residual block: grouped 3x3 + ReLU, grouped 3x3 + ReLU, 1x1; add input; ReLU."""

    def __init__(self):
        super().__init__()
        c = CARN_WIDTH
        self.body = nn.Sequential(
            nn.Conv2d(c, c, 3, padding=1, groups=CARN_GROUPS), nn.ReLU(inplace=True),
            nn.Conv2d(c, c, 3, padding=1, groups=CARN_GROUPS), nn.ReLU(inplace=True),
            nn.Conv2d(c, c, 1),
        )

    def forward(self, x):
        return F.relu(self.body(x) + x)


def _cascade(x: torch.Tensor, blocks, fusions) -> torch.Tensor:
    """CARN cascading: after each block, fuse the concatenation of all earlier outputs."""
    cat, out = x, x
    for block, fusion in zip(blocks, fusions):
        cat = torch.cat([cat, block(out)], dim=1)
        out = fusion(cat)
    return out


class _CascadingBlock(nn.Module):
    """One shared efficient residual block applied three times, with its own fusions."""

    def __init__(self):
        super().__init__()
        self.b1 = _EResidualBlock()
        self.c1, self.c2, self.c3 = _Fusion(2 * CARN_WIDTH), _Fusion(3 * CARN_WIDTH), _Fusion(4 * CARN_WIDTH)

    def forward(self, x):
        return _cascade(x, [self.b1] * 3, [self.c1, self.c2, self.c3])


class _UpStage(nn.Module):
    def __init__(self, scale: int):
        super().__init__()
        c, layers = CARN_WIDTH, []
        steps = [(2, 4), (2, 4)] if scale == 4 else [(scale, scale * scale)]
        for r, mult in steps:
            layers += [nn.Conv2d(c, c * mult, 3, padding=1, groups=CARN_GROUPS),
                       nn.ReLU(inplace=True), nn.PixelShuffle(r)]
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        return self.body(x)


class _Upsampler(nn.Module):
    def __init__(self):
        super().__init__()
        self.up2, self.up3, self.up4 = _UpStage(2), _UpStage(3), _UpStage(4)

    def forward(self, x, scale: int):
        return {2: self.up2, 3: self.up3, 4: self.up4}[scale](x)


class CARNM(nn.Module):
    """Multi-scale CARN-M (nmhkahn/CARN-pytorch) for x2, x3, x4 on RGB in 0..1."""

    def __init__(self):
        super().__init__()
        self.sub_mean, self.add_mean = _MeanShift(-1.0), _MeanShift(1.0)
        self.entry = nn.Conv2d(3, CARN_WIDTH, 3, padding=1)
        self.b1, self.b2, self.b3 = _CascadingBlock(), _CascadingBlock(), _CascadingBlock()
        self.c1, self.c2, self.c3 = _Fusion(2 * CARN_WIDTH), _Fusion(3 * CARN_WIDTH), _Fusion(4 * CARN_WIDTH)
        self.upsample = _Upsampler()
        self.exit = nn.Conv2d(CARN_WIDTH, 3, 3, padding=1)

    def forward(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        _check_scale(scale)
        x = self.entry(self.sub_mean(x))
        x = _cascade(x, [self.b1, self.b2, self.b3], [self.c1, self.c2, self.c3])
        return self.add_mean(self.exit(self.upsample(x, scale)))


# ----------------------------------------------------------------------------- loading

def _check_scale(scale) -> None:
    if scale not in CARN_SCALES:
        raise ValueError(f"CARN-M supports scales {CARN_SCALES}, got {scale!r}")


def _load_into(model: nn.Module, path: PathLike, what: str) -> nn.Module:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{what} weights not found: {path}")
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file
        sd = load_file(str(path), device="cpu")
    else:
        sd = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(sd, dict) and isinstance(sd.get("params"), dict):   # KAIR/BasicSR wrapping
        sd = sd["params"]
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(sd)), sorted(set(sd) - expected)
    if missing or unexpected:
        raise ValueError(f"{path} does not look like {what} weights: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    model.load_state_dict({k: v.float() for k, v in sd.items()})
    return model.eval().requires_grad_(False)


def load_dncnn(path: PathLike) -> DnCNN:
    """KAIR ``dncnn_color_blind.pth`` -> eval DnCNN on CPU."""
    return _load_into(DnCNN(), path, "colour DnCNN (KAIR)")


def load_ffdnet(path: PathLike) -> FFDNet:
    """KAIR ``ffdnet_color.pth`` -> eval FFDNet on CPU."""
    return _load_into(FFDNet(), path, "colour FFDNet (KAIR)")


def load_carn_m(path: PathLike) -> CARNM:
    """CARN-pytorch ``carn_m.pth`` -> eval CARN-M on CPU."""
    return _load_into(CARNM(), path, "CARN-M")


# ----------------------------------------------------------------------------- IMAGE helpers

def _to_bchw(images: torch.Tensor, model: nn.Module) -> torch.Tensor:
    if not torch.is_tensor(images) or not images.is_floating_point():
        raise TypeError("images must be a float tensor [B,H,W,3] in 0..1")
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must have shape [B,H,W,3], got {tuple(images.shape)}")
    p = next(model.parameters())
    return images.permute(0, 3, 1, 2).to(device=p.device, dtype=p.dtype)


def _to_image(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return x.clamp(0, 1).permute(0, 2, 3, 1).to(device=like.device, dtype=torch.float32)


def denoise_dncnn(model: DnCNN, noisy_images: torch.Tensor) -> torch.Tensor:
    """Blind Gaussian denoising of IMAGE [B,H,W,3]; output clamped to 0..1."""
    with torch.inference_mode():
        out = model(_to_bchw(noisy_images, model))
    return _to_image(out, noisy_images)   # made outside inference mode: a normal tensor


def denoise_ffdnet(model: FFDNet, noisy_images: torch.Tensor, sigma255: float) -> torch.Tensor:
    """Non-blind Gaussian denoising at noise std ``sigma255`` (0-255 scale); output clamped to 0..1."""
    if not isinstance(sigma255, (int, float)) or sigma255 < 0:
        raise ValueError(f"sigma255 must be a non-negative number on the 0-255 scale, got {sigma255!r}")
    x = _to_bchw(noisy_images, model)
    with torch.inference_mode():
        out = model(x, torch.full((x.shape[0],), sigma255 / NOISE_SCALE))
    return _to_image(out, noisy_images)


def super_resolve_carn(model: CARNM, lr_images: torch.Tensor, scale: int) -> torch.Tensor:
    """Upscale IMAGE [B,h,w,3] by ``scale`` (2, 3 or 4); output clamped to 0..1."""
    _check_scale(scale)
    with torch.inference_mode():
        out = model(_to_bchw(lr_images, model), scale)
    return _to_image(out, lr_images)
