"""Video mode: the detail the transport adds moves with the picture instead of re-forming in every frame.

Each frame of a clip is transported on its own, and its decoded detail band B_t changes from frame to frame even
where the picture only moved (a shift off the VAE's latent grid gives another latent, so another texture): the
output boils. In video mode the band of frame t is the band already shown, carried by the motion:

    P_0 = B_0,
    P_t(x) = P_k(x + F_{t→k}(x))       where the key frame k sees x (one interpolation from P_k, never a chain),
           = P_{t−1}(x + f_{t→t−1}(x)) where only the previous frame does (newly revealed, then carried along),
           = B_t(x)                    where no earlier frame does (revealed this frame, or a moving object).

The motion comes from the restored frames themselves (dense pyramidal Lucas–Kanade, ``optical_flow``); "sees" is
a photometric check on those frames, so an object that moves differently from its surroundings keeps its own
band instead of a smeared one. The key frame moves on when it sees less than ``KEY_FRAME_COVERAGE`` of the frame.
Perception still scales the band, so perception 0 is each restored frame, exactly.
"""
from typing import Tuple

import torch
import torch.nn.functional as F

#: Lobes of the Lanczos kernel that carries the detail (3: six taps a side, sharp and nearly ringing-free).
LANCZOS_A = 3
#: Smallest side of the coarsest flow level (pixels): below it there is too little to match.
FLOW_MIN_SIZE = 16
#: Gauss–Newton steps per pyramid level, and the Gaussian σ (pixels) of the Lucas–Kanade window.
FLOW_ITERATIONS, FLOW_WINDOW_SIGMA = 4, 3.0
#: Tikhonov term of the per-pixel Lucas–Kanade system, relative to the frame's mean gradient energy: where a
#: window holds much less structure than that (flat sky), the pixel keeps the camera's motion instead of noise.
FLOW_REGULARISATION = 0.1
#: Blur (Gaussian σ, pixels) of the restored frames before their motion is estimated: a restorer's aliasing
#: stays on its input's pixel grid, and unblurred it pulls the estimate toward standing still (×4 SR: 0.87 px
#: estimated for a 1 px pan; 0.98 with this blur).
FLOW_PRESMOOTH_SIGMA = 4.0
#: A pixel is seen by an earlier frame where the motion-compensated restored frames differ by less than this
#: (0..1 grey levels, after a 1-pixel blur): larger differences are occlusions or independent motion.
SEEN_TOLERANCE = 0.04
#: Where the previous frame sees less than this fraction of the current one, the clip has cut to another picture:
#: nothing is carried across (scattered chance matches between two pictures would carry stray detail).
SCENE_CUT_COVERAGE = 0.3
#: The key frame moves on when it sees less than this fraction of the current frame.
KEY_FRAME_COVERAGE = 0.6


def _grey(frames: torch.Tensor) -> torch.Tensor:
    """[T,H,W,C] IMAGE → [T,1,H,W] luminance."""
    rgb = frames[..., :3] if frames.shape[-1] >= 3 else frames[..., :1].expand(*frames.shape[:-1], 3)
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=rgb.dtype, device=rgb.device)
    return (rgb * weights).sum(-1, keepdim=True).permute(0, 3, 1, 2)


def _gauss(x: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, int(3 * sigma + 0.5))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    mode = "reflect" if radius < min(x.shape[-2:]) else "replicate"
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode=mode), k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode=mode), k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def _grid(flow: torch.Tensor) -> torch.Tensor:
    """Sampling grid (grid_sample's −1..1, align_corners=True) at x + flow(x); flow is [B,2,H,W] in pixels (x, y)."""
    b, _, h, w = flow.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=flow.dtype, device=flow.device),
                            torch.arange(w, dtype=flow.dtype, device=flow.device), indexing="ij")
    gx = (xs + flow[:, 0]) * (2.0 / max(w - 1, 1)) - 1.0
    gy = (ys + flow[:, 1]) * (2.0 / max(h - 1, 1)) - 1.0
    return torch.stack([gx, gy], dim=-1)


def warp(image: torch.Tensor, flow: torch.Tensor, mode: str = "bicubic") -> Tuple[torch.Tensor, torch.Tensor]:
    """``image`` [B,C,H,W] sampled at x + flow(x), and where that point lies inside the image ([B,1,H,W] bool).

    ``mode``: grid_sample's "bilinear" or "bicubic", or "lanczos" (``_lanczos_sample``) for detail that is carried
    frame after frame, where a softer kernel would blur it a little more each time.
    """
    grid = _grid(flow)
    if mode == "lanczos":
        out = _lanczos_sample(image, flow)
    else:
        out = F.grid_sample(image, grid, mode=mode, padding_mode="border", align_corners=True)
    inside = (grid.abs() <= 1.0).all(dim=-1, keepdim=True).permute(0, 3, 1, 2)
    return out, inside


def _lanczos_weights(frac: torch.Tensor) -> torch.Tensor:
    """Lanczos-3 weights of the 6 taps at offsets −2..3 from floor(x), for fractional parts ``frac`` [...]."""
    taps = torch.arange(-LANCZOS_A + 1, LANCZOS_A + 1, dtype=frac.dtype, device=frac.device)
    t = frac[..., None] - taps
    w = torch.sinc(t) * torch.sinc(t / LANCZOS_A)
    return w / w.sum(-1, keepdim=True)


def _lanczos_sample(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """``image`` [B,C,H,W] at x + flow(x) with a Lanczos-3 kernel (6×6 taps, edges clamped)."""
    b, c, h, w = image.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=flow.dtype, device=flow.device),
                            torch.arange(w, dtype=flow.dtype, device=flow.device), indexing="ij")
    px, py = xs + flow[:, 0], ys + flow[:, 1]
    x0, y0 = px.floor(), py.floor()
    wx, wy = _lanczos_weights(px - x0), _lanczos_weights(py - y0)  # [B,H,W,6]
    flat = image.flatten(2)
    out = torch.zeros_like(image)
    for j in range(2 * LANCZOS_A):
        row = (y0 + (j - LANCZOS_A + 1)).clamp(0, h - 1).long() * w
        for i in range(2 * LANCZOS_A):
            index = (row + (x0 + (i - LANCZOS_A + 1)).clamp(0, w - 1).long()).flatten(1)
            tap = flat.gather(2, index[:, None].expand(b, c, -1)).view(b, c, h, w)
            out += (wy[..., j] * wx[..., i])[:, None].to(image.dtype) * tap
    return out


def _gradients(x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    gx = (F.pad(x, (1, 1, 0, 0), mode="replicate")[..., 2:] - F.pad(x, (1, 1, 0, 0), mode="replicate")[..., :-2]) / 2
    gy = (F.pad(x, (0, 0, 1, 1), mode="replicate")[..., 2:, :] - F.pad(x, (0, 0, 1, 1), mode="replicate")[..., :-2, :]) / 2
    return gx, gy


def _affine_flow(params: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """[B,6] affine parameters → flow [B,2,H,W]: (a0 + a1·u + a2·v, a3 + a4·u + a5·v), u, v = centred pixels."""
    ys, xs = torch.meshgrid(torch.arange(h, dtype=params.dtype, device=params.device) - (h - 1) / 2,
                            torch.arange(w, dtype=params.dtype, device=params.device) - (w - 1) / 2, indexing="ij")
    basis = torch.stack([torch.ones_like(xs), xs, ys])  # [3,H,W]
    fx = torch.einsum("bk,khw->bhw", params[:, :3], basis)
    fy = torch.einsum("bk,khw->bhw", params[:, 3:], basis)
    return torch.stack([fx, fy], dim=1)


def _pyramid(target: torch.Tensor, source: torch.Tensor):
    levels = [(target, source)]
    while min(levels[-1][0].shape[-2:]) >= 2 * FLOW_MIN_SIZE:
        t, s = levels[-1]
        levels.append((F.avg_pool2d(t, 2), F.avg_pool2d(s, 2)))
    return levels[::-1]  # coarse to fine


def _residual(source, target, flow):
    moved, inside = warp(source, flow)
    gx, gy = _gradients(0.5 * (moved + target))
    return moved - target, gx, gy, inside.to(moved.dtype)


def global_motion(target: torch.Tensor, source: torch.Tensor, init: torch.Tensor = None) -> torch.Tensor:
    """The affine motion [B,6] (``_affine_flow``) that best maps source onto target: pyramidal Gauss–Newton,
    from ``init`` (full-resolution parameters) or from rest."""
    levels = _pyramid(target, source)
    params = torch.zeros(target.shape[0], 6, dtype=target.dtype, device=target.device)
    if init is not None:
        params = init.to(params).clone()
        params[:, [0, 3]] /= 2 ** (len(levels) - 1)
    for level, (t, s) in enumerate(levels):
        if level:
            params[:, [0, 3]] *= 2  # translations double; the linear part is scale-free
        h, w = t.shape[-2:]
        ys, xs = torch.meshgrid(torch.arange(h, dtype=t.dtype, device=t.device) - (h - 1) / 2,
                                torch.arange(w, dtype=t.dtype, device=t.device) - (w - 1) / 2, indexing="ij")
        for _ in range(FLOW_ITERATIONS):
            diff, gx, gy, inside = _residual(s, t, _affine_flow(params, h, w))
            jac = torch.stack([gx, gx * xs, gx * ys, gy, gy * xs, gy * ys], dim=-1)[:, 0] * inside[:, 0, ..., None]
            jac = jac.flatten(1, 2)  # [B, HW, 6]
            normal = jac.transpose(1, 2) @ jac
            normal = normal + 1e-9 * torch.eye(6, dtype=t.dtype, device=t.device) * normal.diagonal(
                dim1=1, dim2=2).mean(-1, keepdim=True)[..., None]
            rhs = jac.transpose(1, 2) @ diff.flatten(1)[..., None]
            params = params - torch.linalg.solve(normal, rhs)[..., 0]
    return params


def optical_flow(target: torch.Tensor, source: torch.Tensor, params: torch.Tensor = None) -> torch.Tensor:
    """Dense flow f [B,2,H,W] with source(x + f(x)) ≈ target(x), for grey frames [B,1,H,W].

    The camera's affine motion first (``params``, else ``global_motion``: pans, zooms, exact where the whole
    picture moves), then Lucas–Kanade steps per pixel at full resolution, regularised toward it, so flat areas
    keep the global motion and moving objects get their own.
    """
    target, source = target.float(), source.float()
    if params is None:
        params = global_motion(target, source)
    flow = _affine_flow(params, *target.shape[-2:])
    for _ in range(FLOW_ITERATIONS):
        diff, gx, gy, _ = _residual(source, target, flow)
        a, b, c = (_gauss(v, FLOW_WINDOW_SIGMA) for v in (gx * gx, gx * gy, gy * gy))
        p, q = _gauss(gx * diff, FLOW_WINDOW_SIGMA), _gauss(gy * diff, FLOW_WINDOW_SIGMA)
        reg = FLOW_REGULARISATION * (a + c).mean(dim=(2, 3), keepdim=True)
        a, c = a + reg, c + reg
        det = a * c - b * b
        flow = flow - torch.cat([(c * p - b * q) / det, (a * q - b * p) / det], dim=1)
    return flow


def _seen(restored_t: torch.Tensor, restored_then: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Where frame t's pixels are seen by the earlier frame under ``flow``: inside it, and photometrically alike."""
    moved, inside = warp(restored_then, flow, mode="bilinear")
    alike = _gauss((moved - restored_t).abs(), 1.0) < SEEN_TOLERANCE
    return inside & alike


def carry_detail(restored: torch.Tensor, bands: torch.Tensor) -> torch.Tensor:
    """The bands [T,H,W,C] of a clip's frames, carried along its motion (estimated on the restored frames [T,H,W,C]).

    The motion to the key frame is estimated directly (from the chained estimate), not chained, so its error does
    not grow with the distance; the restored frames are blurred first (``FLOW_PRESMOOTH_SIGMA``), because a
    restorer's aliasing stays on its input's pixel grid and would pull the estimate toward standing still.
    """
    if bands.shape[0] < 2:
        return bands
    grey = _gauss(_grey(restored.float()), FLOW_PRESMOOTH_SIGMA)
    planes = bands.permute(0, 3, 1, 2)
    out = [planes[:1]]
    key, key_index = planes[:1], 0
    key_params = torch.zeros(1, 6, dtype=grey.dtype, device=grey.device)
    for t in range(1, bands.shape[0]):
        now, before, then = grey[t:t + 1], grey[t - 1:t], grey[key_index:key_index + 1]
        step_params = global_motion(now, before)
        step = optical_flow(now, before, step_params)
        key_params = global_motion(now, then, key_params + step_params) if key_index < t - 1 else step_params
        to_key = step if key_index == t - 1 else optical_flow(now, then, key_params)
        from_key, _ = warp(key, to_key.to(key.dtype), mode="lanczos")
        from_previous, _ = warp(out[-1], step.to(key.dtype), mode="lanczos")
        seen_by_key = _seen(now, then, to_key)
        seen_by_previous = _seen(now, before, step)
        if float(seen_by_previous.float().mean()) < SCENE_CUT_COVERAGE:  # a cut: a new picture, its own detail
            out.append(planes[t:t + 1])
            key, key_index = planes[t:t + 1], t
            key_params = torch.zeros_like(key_params)
            continue
        band = torch.where(seen_by_key, from_key, torch.where(seen_by_previous, from_previous, planes[t:t + 1]))
        out.append(band)
        if float(seen_by_key.float().mean()) < KEY_FRAME_COVERAGE:
            key, key_index = band, t
            key_params = torch.zeros_like(key_params)
    return torch.cat(out).permute(0, 2, 3, 1)
