"""TAESD-family tiny autoencoders (taesd, taesdxl, taesd3, taef1, taef2) in plain torch.

Why: Deep OT runs its Gaussian transport step in a VAE latent space; the tiny
autoencoders of madebyollin/taesd give such a space at a fraction of the cost of
the full VAEs. The module layout mirrors the published state dicts (flat
``nn.Sequential`` indices), so the weight files load without key renaming.

Conventions of these weights: images in [0, 1] (not [-1, 1]), latent scale 1,
spatial downscale 8. The TAEF2 variant adds a "GN" pooling branch to the deepest
blocks; which blocks have it is read from the state-dict keys (``<i>.pool.*``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterable, Optional, Tuple, Union

import torch
from torch import nn

PathLike = Union[str, Path]

DOWNSCALE = 8                 # three stride-2 convs in the encoder
HIDDEN_CHANNELS = 64          # width of every TAESD block
GN_EXPANSION = 4              # the GN branch widens 64 -> 256
GN_GROUPS = 4                 # GroupNorm groups in the GN branch
SOFT_CLAMP = 3.0              # decoder input soft clamp: 3 * tanh(z / 3)
DEFAULT_BATCH_SIZE = 4        # images per forward pass in TAESDSpace
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt")

# Indices of the layers in the flat encoder/decoder lists (see shared README).
ENCODER_BLOCKS = (1, 3, 4, 5, 7, 8, 9, 11, 12, 13)
ENCODER_DOWN_CONVS = (2, 6, 10)
ENCODER_OUT = 14
DECODER_IN = 1
DECODER_BLOCKS = (3, 4, 5, 8, 9, 10, 13, 14, 15, 18)
DECODER_UP_CONVS = (7, 12, 17)
DECODER_UPSAMPLES = (6, 11, 16)
DECODER_OUT = 19


def _conv(n_in: int, n_out: int, **kwargs) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, padding=1, **kwargs)


class SoftClamp(nn.Module):
    """Decoder input clamp ``3·tanh(z/3)``: keeps latents from out-of-range samplers sane."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / SOFT_CLAMP) * SOFT_CLAMP


class Block(nn.Module):
    """Residual block: three 3×3 convs + identity skip, optionally preceded by a GN pooling branch."""

    def __init__(self, channels: int = HIDDEN_CHANNELS, use_gn: bool = False):
        super().__init__()
        self.conv = nn.Sequential(
            _conv(channels, channels), nn.ReLU(),
            _conv(channels, channels), nn.ReLU(),
            _conv(channels, channels),
        )
        self.skip = nn.Identity()
        self.fuse = nn.ReLU()
        self.pool = None
        if use_gn:
            wide = channels * GN_EXPANSION
            self.pool = nn.Sequential(
                nn.Conv2d(channels, wide, 1, bias=False),
                nn.GroupNorm(GN_GROUPS, wide),
                nn.ReLU(),
                nn.Conv2d(wide, channels, 1, bias=False),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool is not None:
            x = x + self.pool(x)
        return self.fuse(self.conv(x) + self.skip(x))


class Encoder(nn.Sequential):
    """RGB [0,1] (B,3,H,W) -> latents (B,latent_channels,H/8,W/8)."""

    def __init__(self, latent_channels: int, gn_blocks: Iterable[int] = ()):
        gn = set(gn_blocks)
        c = HIDDEN_CHANNELS
        layers = []
        for i in range(ENCODER_OUT + 1):
            if i == 0:
                layers.append(_conv(3, c))
            elif i in ENCODER_BLOCKS:
                layers.append(Block(c, use_gn=i in gn))
            elif i in ENCODER_DOWN_CONVS:
                layers.append(_conv(c, c, stride=2, bias=False))
            else:
                layers.append(_conv(c, latent_channels))
        super().__init__(*layers)
        self.latent_channels = latent_channels


class Decoder(nn.Sequential):
    """Latents (B,latent_channels,h,w) -> RGB roughly in [0,1] (B,3,8h,8w)."""

    def __init__(self, latent_channels: int, gn_blocks: Iterable[int] = ()):
        gn = set(gn_blocks)
        c = HIDDEN_CHANNELS
        layers = []
        for i in range(DECODER_OUT + 1):
            if i == 0:
                layers.append(SoftClamp())
            elif i == DECODER_IN:
                layers.append(_conv(latent_channels, c))
            elif i == 2:
                layers.append(nn.ReLU())
            elif i in DECODER_BLOCKS:
                layers.append(Block(c, use_gn=i in gn))
            elif i in DECODER_UPSAMPLES:
                layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
            elif i in DECODER_UP_CONVS:
                layers.append(_conv(c, c, bias=False))
            else:
                layers.append(_conv(c, 3))
        super().__init__(*layers)
        self.latent_channels = latent_channels


class TinyAutoencoder(nn.Module):
    """Encoder/decoder pair of one TAESD variant."""

    def __init__(self, latent_channels: int, encoder_gn_blocks: Iterable[int] = (),
                 decoder_gn_blocks: Iterable[int] = ()):
        super().__init__()
        self.encoder = Encoder(latent_channels, encoder_gn_blocks)
        self.decoder = Decoder(latent_channels, decoder_gn_blocks)
        self.latent_channels = latent_channels

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)


# ----------------------------------------------------------------------------- loading

def _load_state_dict(path: PathLike) -> Dict[str, torch.Tensor]:
    """Read a .pth/.pt (weights only, on CPU) or .safetensors file into a flat state dict."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"TAESD weight file not found: {path}")
    suffix = path.suffix.lower()
    if suffix in (".safetensors", ".sft"):  # .sft: ComfyUI's short name for safetensors
        from safetensors.torch import load_file
        sd = load_file(str(path), device="cpu")
    elif suffix in (".pth", ".pt"):
        sd = torch.load(str(path), map_location="cpu", weights_only=True)
    else:
        raise ValueError(f"unsupported TAESD weight file type {suffix!r} ({path}); "
                         f"use one of {', '.join(WEIGHT_SUFFIXES)}")
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(torch.is_tensor(v) for v in sd.values()):
        raise ValueError(f"{path} does not contain a plain state dict of tensors")
    return dict(sd)


def _gn_blocks(sd: Dict[str, torch.Tensor]) -> Tuple[int, ...]:
    """Indices of the blocks that carry the GN pooling branch (keys ``<i>.pool.*``)."""
    found = {int(k.split(".")[0]) for k in sd if ".pool." in k and k.split(".")[0].isdigit()}
    return tuple(sorted(found))


def _check_keys(kind: str, path: PathLike, module: nn.Module, sd: Dict[str, torch.Tensor]) -> None:
    expected = set(module.state_dict().keys())
    got = set(sd.keys())
    missing, unexpected = sorted(expected - got), sorted(got - expected)
    if missing or unexpected:
        raise ValueError(
            f"{path} is not a TAESD {kind} state dict: missing keys {missing[:6]}"
            f"{'…' if len(missing) > 6 else ''}, unexpected keys {unexpected[:6]}"
            f"{'…' if len(unexpected) > 6 else ''}. Check that you passed the *_{kind}.* file "
            f"of a madebyollin/taesd model (encoder and decoder not swapped).")
    for key, tensor in module.state_dict().items():
        if tuple(sd[key].shape) != tuple(tensor.shape):
            raise ValueError(f"{path}: tensor {key!r} has shape {tuple(sd[key].shape)}, "
                             f"expected {tuple(tensor.shape)}; the file does not match the TAESD layout")


def _latent_channels(enc_sd, dec_sd, encoder_path, decoder_path) -> int:
    enc_key, dec_key = f"{ENCODER_OUT}.weight", f"{DECODER_IN}.weight"
    if enc_key not in enc_sd:
        raise ValueError(f"{encoder_path} has no {enc_key!r}: not a TAESD encoder "
                         f"(did you swap encoder and decoder?)")
    if dec_key not in dec_sd:
        raise ValueError(f"{decoder_path} has no {dec_key!r}: not a TAESD decoder "
                         f"(did you swap encoder and decoder?)")
    c_enc, c_dec = int(enc_sd[enc_key].shape[0]), int(dec_sd[dec_key].shape[1])
    if c_enc != c_dec:
        raise ValueError(f"encoder ({encoder_path}) makes {c_enc}-channel latents but decoder "
                         f"({decoder_path}) expects {c_dec}; pick files of the same TAESD variant")
    return c_enc


def load_taesd(encoder_path: PathLike, decoder_path: PathLike, device=None,
               dtype: torch.dtype = torch.float32) -> TinyAutoencoder:
    """Build a TinyAutoencoder from encoder/decoder weight files (.pth/.pt/.safetensors).

    Latent channels and GN blocks are inferred from the weights; fp16 files are cast to
    ``dtype``. The model is returned in eval mode on ``device`` (CPU when None).
    """
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    enc_sd, dec_sd = _load_state_dict(encoder_path), _load_state_dict(decoder_path)
    latent = _latent_channels(enc_sd, dec_sd, encoder_path, decoder_path)
    model = TinyAutoencoder(latent, _gn_blocks(enc_sd), _gn_blocks(dec_sd))
    _check_keys("encoder", encoder_path, model.encoder, enc_sd)
    _check_keys("decoder", decoder_path, model.decoder, dec_sd)
    model.encoder.load_state_dict({k: v.float() for k, v in enc_sd.items()})
    model.decoder.load_state_dict({k: v.float() for k, v in dec_sd.items()})
    model = model.to(device=device if device is not None else "cpu", dtype=dtype)
    return model.eval().requires_grad_(False)


def list_taesd_pairs(folder: PathLike) -> Dict[str, Tuple[Path, Path]]:
    """Map ``name`` -> (encoder, decoder) for every ``<name>_encoder.*``/``<name>_decoder.*`` pair.

    When both a .safetensors and a .pth exist for a name, .safetensors wins.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"TAESD folder not found: {folder}")
    found: Dict[str, Dict[str, Path]] = {}
    for suffix in reversed(WEIGHT_SUFFIXES):  # later (preferred) suffixes overwrite earlier
        for part in ("encoder", "decoder"):
            for p in sorted(folder.glob(f"*_{part}{suffix}")):
                name = p.name[: -len(f"_{part}{suffix}")]
                found.setdefault(name, {})[part] = p
    return {n: (d["encoder"], d["decoder"]) for n, d in sorted(found.items())
            if "encoder" in d and "decoder" in d}


def find_taesd_pair(folder: PathLike, name: Optional[str] = None) -> Tuple[Path, Path]:
    """Return (encoder_path, decoder_path) of the pair ``name`` in ``folder``.

    Without ``name`` the folder must hold exactly one pair.
    """
    pairs = list_taesd_pairs(folder)
    if not pairs:
        raise ValueError(f"no <name>_encoder.* / <name>_decoder.* pair found in {folder}; "
                         f"download e.g. taef2_encoder.pth and taef2_decoder.pth from madebyollin/taesd")
    if name is None:
        if len(pairs) > 1:
            raise ValueError(f"several TAESD pairs in {folder}: {sorted(pairs)}; pass name=...")
        return next(iter(pairs.values()))
    if name not in pairs:
        raise ValueError(f"no TAESD pair named {name!r} in {folder}; available: {sorted(pairs)}")
    return pairs[name]


# ----------------------------------------------------------------------------- latent space

def _check_images(images: torch.Tensor) -> None:
    if not torch.is_tensor(images) or not images.is_floating_point():
        raise TypeError("images must be a float torch tensor [B,H,W,C] in 0..1 (ComfyUI IMAGE)")
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must have shape [B,H,W,3], got {tuple(images.shape)}; "
                         f"drop an alpha channel with images[..., :3]")


class TAESDSpace:
    """A TAESD latent space with the interface shared by all latent spaces of this pack.

    ``encode``: IMAGE [B,H,W,3] in 0..1 -> latents [B,C,H//8,W//8]. H and W are
    centre-cropped down to multiples of 8, as ComfyUI's VAE Encode does, so the decoded image
    lines up with a centre crop of the input (what ``pd_blend`` does with mismatched sizes). ``decode``: latents -> IMAGE [B,8h,8w,3] clamped to 0..1.
    Both run in batches of ``batch_size`` under ``torch.inference_mode`` and return float32
    tensors on the device of their input.
    """

    downscale = DOWNSCALE

    def __init__(self, model: TinyAutoencoder, batch_size: int = DEFAULT_BATCH_SIZE):
        if not isinstance(model, TinyAutoencoder):
            raise TypeError(f"model must be a TinyAutoencoder (see load_taesd), got {type(model).__name__}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.model = model.eval()
        self.batch_size = batch_size

    @classmethod
    def from_files(cls, encoder_path: PathLike, decoder_path: PathLike, device=None,
                   dtype: torch.dtype = torch.float32, batch_size: int = DEFAULT_BATCH_SIZE) -> "TAESDSpace":
        return cls(load_taesd(encoder_path, decoder_path, device=device, dtype=dtype), batch_size)

    @classmethod
    def from_folder(cls, folder: PathLike, name: Optional[str] = None, device=None,
                    dtype: torch.dtype = torch.float32, batch_size: int = DEFAULT_BATCH_SIZE) -> "TAESDSpace":
        enc, dec = find_taesd_pair(folder, name)
        return cls.from_files(enc, dec, device=device, dtype=dtype, batch_size=batch_size)

    @property
    def latent_channels(self) -> int:
        return self.model.latent_channels

    def _param(self) -> torch.Tensor:
        return next(self.model.parameters())

    def _encode_batch(self, x: torch.Tensor) -> torch.Tensor:
        """Pixels [b,3,h,w] in 0..1 → latents; a subclass changes the convention (``comfy_spaces``)."""
        return self.model.encoder(x)

    def _decode_batch(self, z: torch.Tensor) -> torch.Tensor:
        """Latents → pixels [b,3,8h,8w] in 0..1."""
        return self.model.decoder(z).clamp(0, 1)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        _check_images(images)
        h = images.shape[1] // DOWNSCALE * DOWNSCALE
        w = images.shape[2] // DOWNSCALE * DOWNSCALE
        if h == 0 or w == 0:
            raise ValueError(f"images must be at least {DOWNSCALE}x{DOWNSCALE} pixels, "
                             f"got {images.shape[1]}x{images.shape[2]}")
        # centre crop, as ComfyUI's VAE Encode does, so pd_blend's centre crop lines the images up
        top, left = (images.shape[1] - h) // 2, (images.shape[2] - w) // 2
        p = self._param()
        out = []
        with torch.inference_mode():
            for i in range(0, images.shape[0], self.batch_size):
                x = images[i:i + self.batch_size, top:top + h, left:left + w, :].permute(0, 3, 1, 2)
                z = self._encode_batch(x.to(device=p.device, dtype=p.dtype))
                out.append(z.to(device=images.device, dtype=torch.float32))
        return torch.cat(out, dim=0)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        if not torch.is_tensor(latents) or not latents.is_floating_point():
            raise TypeError("latents must be a float torch tensor [B,C,h,w]")
        if latents.ndim != 4 or latents.shape[1] != self.latent_channels:
            raise ValueError(f"latents must have shape [B,{self.latent_channels},h,w] for this TAESD, "
                             f"got {tuple(latents.shape)}")
        p = self._param()
        out = []
        with torch.inference_mode():
            for i in range(0, latents.shape[0], self.batch_size):
                x = self._decode_batch(latents[i:i + self.batch_size].to(device=p.device, dtype=p.dtype))
                out.append(x.permute(0, 2, 3, 1).to(device=latents.device, dtype=torch.float32))
        return torch.cat(out, dim=0)

    def __repr__(self) -> str:
        n = sum(t.numel() for t in self.model.parameters())
        return f"TAESDSpace(latent_channels={self.latent_channels}, params={n / 1e6:.2f}M)"
