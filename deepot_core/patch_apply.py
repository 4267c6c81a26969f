"""Apply an affine patch map to every centred patch of a latent and fold the patches back.

The DOT recipe: replicate-pad by r = p//2, map every centred p×p patch
x ↦ A x + b, put each mapped patch back where it came from and average the
overlaps. That composition is linear and shift-invariant wherever a pixel is
covered by all p² patches and none of them reads padding, so there it *is* one
(2p−1)×(2p−1) convolution from C to C channels:

    K[c, c', δ] = (1/p²) Σ_o A[(c, o), (c', o + δ)],   bias[c] = (1/p²) Σ_o b[(c, o)].

We run that convolution on the latent replicate-padded by 2r — exact wherever
all p² covering patches exist — and the explicit form (unfold, matmul, ``fold``,
divide by the overlap count) only on the outer r rows and columns, where fewer
patches cover a pixel. Peak extra memory is about two latents (the padded copy
and the output); large batches go in chunks of frames.
"""
import functools

import torch
import torch.nn.functional as F

#: Frames are processed in chunks of at most this many elements (C·H·W·frames) to bound memory.
APPLY_CHUNK_ELEMENTS = 1 << 26
#: Output elements per interior convolution strip: small on the CPU (peak memory stays near one
#: latent, caches stay warm), one strip for typical latents on a GPU (each launch costs microseconds).
STRIP_ELEMENTS_CPU = 1 << 18
STRIP_ELEMENTS_GPU = 1 << 26


def out_of_memory_error(module=torch) -> type:
    """CUDA's out-of-memory exception: ``torch.OutOfMemoryError`` (torch ≥ 2.5), else ``torch.cuda.OutOfMemoryError``.

    Resolved once at import: naming ``torch.OutOfMemoryError`` in an ``except``
    clause on older torch turns every error raised in the ``try`` into an AttributeError.
    """
    found = getattr(module, "OutOfMemoryError", None)
    return found if isinstance(found, type) else module.cuda.OutOfMemoryError


#: What a chunk that ran out of memory raises (retried at half the size).
OUT_OF_MEMORY = out_of_memory_error()


def blend_identity(matrix: torch.Tensor, bias: torch.Tensor, strength: float):
    """The geodesic x + t(T(x) − x) of an affine map is itself affine: (tA + (1−t)I, t·b)."""
    eye = torch.eye(matrix.shape[0], dtype=matrix.dtype, device=matrix.device)
    return strength * matrix + (1.0 - strength) * eye, strength * bias


def fused_kernel(matrix: torch.Tensor, bias: torch.Tensor, channels: int, patch_size: int):
    """The (2p−1)² convolution equal to unfold → map → fold-average on fully covered pixels."""
    p, c = patch_size, channels
    a = matrix.reshape(c, p, p, c, p, p)
    weight = torch.zeros(c, c, 2 * p - 1, 2 * p - 1, dtype=matrix.dtype, device=matrix.device)
    for oy in range(p):
        for ox in range(p):
            # output offset o=(oy,ox) reads input offset o' -> tap (o' - o) + (p - 1)
            weight[:, :, p - 1 - oy:2 * p - 1 - oy, p - 1 - ox:2 * p - 1 - ox] += a[:, oy, ox]
    weight /= p * p
    fused_bias = bias.reshape(c, p * p).mean(dim=1)
    return weight, fused_bias


@functools.lru_cache(maxsize=64)
def _inverse_overlap_count(height: int, width: int, patch_size: int, device: torch.device,
                           dtype: torch.dtype) -> torch.Tensor:
    """1 / (how many centred patches cover each pixel); separable, cached per shape (borders repeat)."""
    r = patch_size // 2

    def along(n):
        idx = torch.arange(n, dtype=torch.float64)
        return (torch.clamp(idx + r, max=n - 1) - torch.clamp(idx - r, min=0) + 1)

    return (1.0 / (along(height)[:, None] * along(width)[None, :])).to(device=device, dtype=dtype)


def apply_explicit(frames: torch.Tensor, matrix: torch.Tensor, bias: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Exact unfold → map → fold-average on [N,C,H,W] (used on thin border strips and tiny latents).

    A batched matmul over the unfolded patches: on strips a few pixels high it is
    far cheaper than a convolution into D = C·p² channels, whose setup dominates.
    """
    p, r = patch_size, patch_size // 2
    n, c, h, w = frames.shape
    padded = F.pad(frames, (r, r, r, r), mode="replicate") if r else frames
    mapped = torch.baddbmm(bias[None, :, None].expand(n, -1, h * w), matrix.expand(n, -1, -1),
                           F.unfold(padded, p))  # [N, D, H·W]: the mapped patch at each centre
    folded = F.fold(mapped, output_size=(h + 2 * r, w + 2 * r), kernel_size=p)
    folded = folded[:, :, r:r + h, r:r + w]
    return folded * _inverse_overlap_count(h, w, p, frames.device, frames.dtype)


def apply_unfold_reference(frames: torch.Tensor, matrix: torch.Tensor, bias: torch.Tensor,
                           patch_size: int) -> torch.Tensor:
    """The reference code's literal form: pad, unfold all patches, matmul, fold, average. Slow; for tests."""
    p, r = patch_size, patch_size // 2
    n, c, h, w = frames.shape
    padded = F.pad(frames, (r, r, r, r), mode="replicate") if r else frames
    patches = F.unfold(padded, p)  # [N, D, H·W]
    mapped = matrix @ patches + bias[:, None]
    folded = F.fold(mapped, output_size=(h + 2 * r, w + 2 * r), kernel_size=p)
    counts = F.fold(torch.ones_like(mapped), output_size=(h + 2 * r, w + 2 * r), kernel_size=p)
    return (folded / counts)[:, :, r:r + h, r:r + w]


def _strip_rows(z: torch.Tensor) -> int:
    """Output rows per interior strip, so temporaries stay a small fraction of the latent."""
    budget = STRIP_ELEMENTS_CPU if z.device.type == "cpu" else STRIP_ELEMENTS_GPU
    return max(1, budget // max(z.shape[0] * z.shape[1] * z.shape[3], 1))


def _apply_chunk(z, matrix, bias, fused_w, fused_b, p, shift=None):
    """One chunk of frames: the fused convolution on the latent replicate-padded by 2r, then the outer ring.

    Replicate padding by any width reads the clamped pixel, which is exactly what
    every *existing* patch reads; so on the 2r-padded latent the fused
    convolution is exact wherever all p² covering patches exist: every pixel at
    least r from the border. Only that outer ring of r rows and columns, where
    fewer patches cover a pixel, is recomputed explicitly (on strips 3r wide,
    which are exact on their outer r). ``shift`` (per channel) is subtracted in
    place from the padded copy (see ``transport.centred_map``).
    """
    r = p // 2
    n, c, h, w = z.shape

    def centred(part):
        return part if shift is None else part - shift[:, None, None]

    if r == 0:  # a per-pixel map: one batched matmul (a 1×1 convolution is many times slower on the CPU)
        x = centred(z).reshape(n, c, h * w)
        return torch.baddbmm(fused_b[None, :, None].expand(n, -1, h * w), matrix.expand(n, -1, -1), x).view(n, c, h, w)
    edge = 3 * r
    if h < edge or w < edge:
        return apply_explicit(centred(z), matrix, bias, p)
    padded = F.pad(z, (2 * r, 2 * r, 2 * r, 2 * r), mode="replicate")
    if shift is not None:
        padded.sub_(shift[:, None, None])
    step = _strip_rows(z)
    if step >= h:
        out = F.conv2d(padded, fused_w, fused_b)
    else:  # on the CPU: row strips keep the convolution's temporaries small and cache-warm
        out = torch.empty_like(z)
        for y0 in range(0, h, step):
            y1 = min(y0 + step, h)
            out[:, :, y0:y1] = F.conv2d(padded[:, :, y0:y1 + 4 * r], fused_w, fused_b)
    del padded
    rows = apply_explicit(centred(torch.cat([z[:, :, :edge], z[:, :, h - edge:]])), matrix, bias, p)
    out[:, :, :r] = rows[:n, :, :r]
    out[:, :, h - r:] = rows[n:, :, edge - r:]
    cols = apply_explicit(centred(torch.cat([z[..., :edge], z[..., w - edge:]])), matrix, bias, p)
    out[..., :r] = cols[:n, ..., :r]
    out[..., w - r:] = cols[n:, ..., edge - r:]
    return out


def apply_patch_map(frames: torch.Tensor, matrix: torch.Tensor, bias: torch.Tensor, patch_size: int,
                    fused=None, progress=None, shift=None) -> torch.Tensor:
    """Map every centred patch of ``frames`` [N,C,H,W] and fold back, in ``frames``' dtype and device.

    ``matrix``/``bias`` must already be in that dtype and device; ``fused`` is an
    optional precomputed ``fused_kernel`` pair (same dtype/device). With ``shift``
    (C values) the map acts on ``frames − shift`` (see ``transport.centred_map``).
    """
    n, c, h, w = frames.shape
    if fused is None:
        fused = fused_kernel(matrix, bias, c, patch_size)
    per_chunk = max(1, APPLY_CHUNK_ELEMENTS // max(c * h * w, 1))
    outputs = []
    start = 0
    while start < n:
        stop = min(n, start + per_chunk)
        try:
            outputs.append(_apply_chunk(frames[start:stop], matrix, bias, fused[0], fused[1], patch_size, shift))
        except OUT_OF_MEMORY:
            if per_chunk == 1:
                raise
            per_chunk = max(1, per_chunk // 2)  # retry this chunk smaller
            continue
        start = stop
        if progress is not None:
            progress(start, n)
    return outputs[0] if len(outputs) == 1 else torch.cat(outputs)
