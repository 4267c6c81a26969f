"""Video mode: the detail the transport adds moves with the picture instead of re-forming in every frame.

Each frame of a clip is transported on its own, and its decoded detail band B_t changes from frame to frame even
where the picture only moved (a shift off the VAE's latent grid gives another latent, so another texture): the
output boils. In video mode the band of frame t is the band already shown, carried by the motion:

    P_0 = B_0,
    P_t(x) = P_k(x + F_{t→k}(x))       where the key frame k sees x (one resampling from P_k, never a chain),
           = P_{t−1}(x + f_{t→t−1}(x)) where only the previous frame does (newly revealed, then carried along),
           = B_t(x)                    where no earlier frame does (revealed this frame, or a moving object).

The motion comes from the restored frames themselves: the camera's (``camera_path``: a shift, a zoom and roll, or an
affine motion, each only where it fits clearly better than the simpler; smoothed along the shot) and per-pixel
Lucas–Kanade (``optical_flow``) where the camera's does not explain the picture. A pure shift moves the detail
exactly (``shift_exactly``, band-limited), anything else bicubically on its exact 2× upsampling (``warp_detail``).
"Sees" is a photometric check on those frames, so an object that moves differently from its surroundings keeps its
own band instead of a smeared one. The key frame moves on when it sees less than ``KEY_FRAME_COVERAGE`` of the frame.
Carried detail is one draw, shown in every frame of the shot, so the shot looks like that draw, good or stray.
``match_spectrum`` gives each shot's carried band the mean power spectrum of its frames' own bands with one short
filter, which commutes with the motion. Perception still scales the band, so perception 0 is each restored frame,
exactly.
"""
import math
from typing import Tuple

import torch
import torch.nn.functional as F

from .image_ops import gaussian_blur

#: Smallest side of the coarsest flow level (pixels): below it there is too little to match.
FLOW_MIN_SIZE = 16
#: Gauss–Newton steps per pyramid level, and the Gaussian σ (pixels) of the Lucas–Kanade window.
FLOW_ITERATIONS, FLOW_WINDOW_SIGMA = 4, 3.0
#: Tikhonov term of the per-pixel Lucas–Kanade system, relative to the frame's mean gradient energy: where a
#: window holds much less structure than that (flat sky), the pixel keeps the camera's motion instead of noise.
FLOW_REGULARISATION = 0.1
#: Levenberg–Marquardt damping of the camera motion's normal equations, relative to their diagonal, and the
#: gradient (grey levels 0..1 per pixel) below which a frame counts as holding no structure (``_damped``).
MOTION_DAMPING, MOTION_MIN_GRADIENT = 1e-6, 1e-3
#: A camera motion whose linear part moves no pixel by more than this (pixels, at the frame's edge) is a pure shift,
#: and the detail is shifted exactly (``shift_exactly``) instead of interpolated.
PURE_SHIFT_TOLERANCE = 0.05
#: Reflect padding (pixels) before an exact shift, so the frame's edges do not wrap around.
FFT_PAD = 16
#: How much better (relative mean residual) a richer camera motion (``MOTION_MODELS``) must fit than the simpler
#: one to be taken.
AFFINE_GAIN = 0.1
#: Longest side (pixels) of the frames the motion is estimated on (larger frames are averaged down by 2, 4, …).
MOTION_MAX_SIDE = 256
#: Per-pixel motion is estimated only where at least this fraction of the frame is not explained by the camera.
DENSE_MIN_FRACTION = 0.005
#: Frames on each side in the local straight-line fit of the camera's path (``_smooth``).
TRAJECTORY_RADIUS = 2
#: Blur (Gaussian σ, pixels) of the restored frames before their motion is estimated: a restorer's aliasing
#: stays on its input's pixel grid, and unblurred it pulls the estimate toward standing still (×4 SR: 0.87 px
#: estimated for a 1 px pan; 0.98 with this blur).
FLOW_PRESMOOTH_SIGMA = 4.0
#: Smallest ratio of the weaker to the stronger direction of the frames' pooled structure tensor at which their
#: blurred structure shows motion both ways. Centre crops of 256² blurred by ``FLOW_PRESMOOTH_SIGMA`` hold 0.07–0.95
#: in Kodak24, CBSD68, Set14 and LIVE1, and all but one of Sun-Hays80's 80 (a highway along its lanes, 0.027); a
#: scene whose coarse structure runs one way (broad stripes, its fine texture blurred away) 0.017. There the motion
#: along the stripes may not be seen, so lighter blurs are tried too (``_motion_frames``).
APERTURE_MIN_RATIO = 0.05
#: A pixel is seen by an earlier frame where the motion-compensated restored frames differ by less than this
#: (0..1 grey levels, after a 1-pixel blur): larger differences are occlusions or independent motion.
SEEN_TOLERANCE = 0.04
#: Where the previous frame sees less than this fraction of the current one, the clip has cut to another picture:
#: nothing is carried across (scattered chance matches between two pictures would carry stray detail).
SCENE_CUT_COVERAGE = 0.3
#: The key frame moves on when it sees less than this fraction of the current frame.
KEY_FRAME_COVERAGE = 0.6
#: Largest gain ``match_spectrum`` gives one frequency of the carried detail: a frequency the carried draw happens to
#: lack is raised this far at most, so near-empty bins do not amplify round-off.
SPECTRUM_MAX_GAIN = 8.0
#: Side (pixels) of the tiles whose spectra ``match_spectrum`` compares, and of its filter.
SPECTRUM_TILE = 32
#: At most about this many tiles per frame enter the spectrum (a 4K frame's half-overlapping tiles would be 32 000;
#: their mean is known well long before, and they would cost gigabytes).
SPECTRUM_MAX_TILES = 1024


def _grey(frames: torch.Tensor) -> torch.Tensor:
    """[T,H,W,C] IMAGE → [T,1,H,W] luminance."""
    rgb = frames[..., :3] if frames.shape[-1] >= 3 else frames[..., :1].expand(*frames.shape[:-1], 3)
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=rgb.dtype, device=rgb.device)
    return (rgb * weights).sum(-1, keepdim=True).permute(0, 3, 1, 2)


def _gauss(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """``image_ops.gaussian_blur`` for [B,C,H,W] planes."""
    return gaussian_blur(x.permute(0, 2, 3, 1), sigma).permute(0, 3, 1, 2)


def _grid(flow: torch.Tensor) -> torch.Tensor:
    """Sampling grid (grid_sample's −1..1, align_corners=True) at x + flow(x); flow is [B,2,H,W] in pixels (x, y)."""
    b, _, h, w = flow.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=flow.dtype, device=flow.device),
                            torch.arange(w, dtype=flow.dtype, device=flow.device), indexing="ij")
    gx = (xs + flow[:, 0]) * (2.0 / max(w - 1, 1)) - 1.0
    gy = (ys + flow[:, 1]) * (2.0 / max(h - 1, 1)) - 1.0
    return torch.stack([gx, gy], dim=-1)


def warp(image: torch.Tensor, flow: torch.Tensor, mode: str = "bicubic") -> Tuple[torch.Tensor, torch.Tensor]:
    """``image`` [B,C,H,W] sampled at x + flow(x) (grid_sample's ``mode``), and where that point lies inside the
    image ([B,1,H,W] bool)."""
    grid = _grid(flow)
    out = F.grid_sample(image, grid, mode=mode, padding_mode="border", align_corners=True)
    inside = (grid.abs() <= 1.0).all(dim=-1, keepdim=True).permute(0, 3, 1, 2)
    return out, inside


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


def _damped(normal: torch.Tensor, floor: torch.Tensor) -> torch.Tensor:
    """A Gauss–Newton normal matrix [B,k,k] (float64) made positive definite: each unknown's diagonal raised by
    ``MOTION_DAMPING`` of itself and by ``floor`` [k] (what it would hold were every pixel's gradient
    ``MOTION_MIN_GRADIENT``). A frame without structure (flat, a fade), one pixel high or with collinear columns
    then moves nothing instead of stopping the solver or flying off on round-off."""
    return normal + torch.diag_embed(MOTION_DAMPING * normal.diagonal(dim1=1, dim2=2) + floor)


#: Camera motion models, simplest first, as the affine parameters each moves (columns of a [6,k] basis,
#: ``_affine_flow``'s order): a shift; a shift, zoom and roll (a similarity); any affine motion.
MOTION_MODELS = {
    "shift": [[1, 0, 0, 0, 0, 0], [0, 0, 0, 1, 0, 0]],
    "similarity": [[1, 0, 0, 0, 0, 0], [0, 0, 0, 1, 0, 0], [0, 1, 0, 0, 0, 1], [0, 0, -1, 0, 1, 0]],
    "affine": [[1 if i == k else 0 for i in range(6)] for k in range(6)],
}


def _model_basis(model: str, like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(MOTION_MODELS[model], dtype=torch.float64, device=like.device).T  # [6,k]


def _within_model(params: torch.Tensor, model: str) -> torch.Tensor:
    """``params`` [B,6] with the linear part the model cannot move set to its nearest: none for a shift, the
    mean zoom and roll for a similarity."""
    out = params.clone()
    if model == "shift":
        out[:, [1, 2, 4, 5]] = 0
    elif model == "similarity":
        zoom, roll = (params[:, 1] + params[:, 5]) / 2, (params[:, 4] - params[:, 2]) / 2
        out[:, 1], out[:, 5], out[:, 2], out[:, 4] = zoom, zoom, -roll, roll
    return out


def global_motion(target: torch.Tensor, source: torch.Tensor, init: torch.Tensor = None,
                  model: str = "affine") -> torch.Tensor:
    """The motion [B,6] (``_affine_flow``) of ``model`` (``MOTION_MODELS``) that best maps source onto target:
    pyramidal Gauss–Newton, from ``init`` (full-resolution parameters, taken to the model) or from rest.
    Never fits worse than where it started: on a scene whose structure runs one way, the coarse levels can walk
    a good start off to another minimum (a highway's zoom, from 0.068 to 0.043 in one frame)."""
    return _fit_motion(target, source, init, model)[0]


def _fit_motion(target: torch.Tensor, source: torch.Tensor, init: torch.Tensor = None, model: str = "affine"):
    """``global_motion``, and how well it fits: (params [B,6], mean |error| of each frame [B])."""
    levels = _pyramid(target, source)
    basis_m = _model_basis(model, target)
    params = torch.zeros(target.shape[0], 6, dtype=target.dtype, device=target.device)
    if init is not None:
        params = _within_model(init.to(params), model)
    start = params.clone()
    params[:, [0, 3]] /= 2 ** (len(levels) - 1)
    for level, (t, s) in enumerate(levels):
        if level:
            params[:, [0, 3]] *= 2  # translations double; the linear part is scale-free
        h, w = t.shape[-2:]
        ys, xs = torch.meshgrid(torch.arange(h, dtype=t.dtype, device=t.device) - (h - 1) / 2,
                                torch.arange(w, dtype=t.dtype, device=t.device) - (w - 1) / 2, indexing="ij")
        basis = (torch.stack([torch.ones_like(xs), xs, ys]).double().pow(2) + 1).sum(dim=(1, 2))  # ≥ 1 a pixel
        floor = (basis_m.T.pow(2) @ (MOTION_MIN_GRADIENT ** 2 * torch.cat([basis, basis])))  # [k]
        for _ in range(FLOW_ITERATIONS):
            diff, gx, gy, inside = _residual(s, t, _affine_flow(params, h, w))
            jac = torch.stack([gx, gx * xs, gx * ys, gy, gy * xs, gy * ys], dim=-1)[:, 0] * inside[:, 0, ..., None]
            jac = jac.flatten(1, 2) @ basis_m.to(jac.dtype)  # [B, HW, k]; float64 only for the k×k system
            normal = (jac.transpose(1, 2) @ jac).double()
            rhs = (jac.transpose(1, 2) @ diff.flatten(1)[..., None]).double()
            step = torch.linalg.solve(_damped(normal, floor), rhs)[..., 0] @ basis_m.T
            params = params - step.to(params.dtype)
    errors, start_errors = _fit_errors(target, source, params), _fit_errors(target, source, start)
    worse = errors > start_errors
    return torch.where(worse[:, None], start, params), torch.where(worse, start_errors, errors)


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
        # toward the camera's motion where a window holds little structure; never less than a frame would with
        # gradients of MOTION_MIN_GRADIENT (a flat frame or a fade keeps the camera's motion, not round-off's)
        reg = FLOW_REGULARISATION * (a + c).mean(dim=(2, 3), keepdim=True) + MOTION_MIN_GRADIENT ** 2
        a, c = a + reg, c + reg
        det = a * c - b * b
        flow = flow - torch.cat([(c * p - b * q) / det, (a * q - b * p) / det], dim=1)
    return flow


def _seen(restored_t: torch.Tensor, restored_then: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Where frame t's pixels are seen by the earlier frame under ``flow``: inside it, and photometrically alike."""
    moved, inside = warp(restored_then, flow, mode="bilinear")
    alike = _gauss((moved - restored_t).abs(), 1.0) < SEEN_TOLERANCE
    return inside & alike


def _matrix(params: torch.Tensor) -> torch.Tensor:
    """[B,6] affine parameters (``_affine_flow``) → [B,3,3]: x ↦ x + flow(x) in centred pixels."""
    m = torch.zeros(params.shape[0], 3, 3, dtype=params.dtype, device=params.device)
    m[:, 0, 0], m[:, 0, 1], m[:, 0, 2] = 1 + params[:, 1], params[:, 2], params[:, 0]
    m[:, 1, 0], m[:, 1, 1], m[:, 1, 2] = params[:, 4], 1 + params[:, 5], params[:, 3]
    m[:, 2, 2] = 1
    return m


def _params(m: torch.Tensor) -> torch.Tensor:
    return torch.stack([m[:, 0, 2], m[:, 0, 0] - 1, m[:, 0, 1], m[:, 1, 2], m[:, 1, 0], m[:, 1, 1] - 1], dim=1)


def _smooth(params: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
    """Each frame's parameters [T,6] replaced by a straight line fitted to its ±``TRAJECTORY_RADIUS`` neighbours
    of the same shot (local linear regression): the camera's path, without a restorer's frame-to-frame jitter."""
    out = params.clone()
    times = torch.arange(params.shape[0], dtype=params.dtype, device=params.device)
    for t in range(params.shape[0]):
        near = (segments == segments[t]) & ((times - t).abs() <= TRAJECTORY_RADIUS)
        if int(near.sum()) < 3:
            continue
        design = torch.stack([torch.ones_like(times[near]), times[near] - t], dim=1)
        out[t] = torch.linalg.lstsq(design, params[near]).solution[0]
    return out


def _fit_errors(target, source, params) -> torch.Tensor:
    """Mean |source moved by params − target| of each frame of the batch [B]."""
    return _residual(source, target, _affine_flow(params, *target.shape[-2:]))[0].abs().flatten(1).mean(1)


def _simplest_motion(target, source, guess) -> torch.Tensor:
    """The camera's motion from ``guess``: the simplest of ``MOTION_MODELS`` that no richer one fits clearly better
    (``AFFINE_GAIN``). More free parameters always fit a little better, and left free they drift: on a scene whose
    structure runs one way after denoising, a shear and an uneven zoom along its lines (a highway's 1 % zoom:
    0.7 px wrong at the frame's edge, shimmer 0.37)."""
    chosen, error = _fit_motion(target, source, guess, model="shift")
    for model in ("similarity", "affine"):
        richer, richer_error = _fit_motion(target, source, guess, model=model)
        if float(richer_error.mean()) < (1 - AFFINE_GAIN) * float(error.mean()):
            chosen, error = richer, richer_error
    return chosen


def camera_path(grey: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Each frame's affine map to the first frame of its shot ([T,3,3], centred pixels, smoothed along the shot)
    and the shot index of every frame ([T]); a new shot starts where a frame sees too little of the one before."""
    n = grey.shape[0]
    eye = torch.eye(3, dtype=grey.dtype, device=grey.device)[None]
    path, segments = [eye[0]], [0]
    key, key_path, to_key = 0, eye, torch.zeros(1, 6, dtype=grey.dtype, device=grey.device)
    for t in range(1, n):
        step = global_motion(grey[t:t + 1], grey[t - 1:t])
        if float(_seen(grey[t:t + 1], grey[t - 1:t], _affine_flow(step, *grey.shape[-2:])).float().mean()) \
                < SCENE_CUT_COVERAGE:
            path.append(eye[0])
            segments.append(segments[-1] + 1)
            key, key_path, to_key = t, eye, torch.zeros_like(to_key)
            continue
        guess = _params(_matrix(to_key) @ _matrix(step))
        to_key = _simplest_motion(grey[t:t + 1], grey[key:key + 1], guess)
        here = key_path @ _matrix(to_key)
        path.append(here[0])
        segments.append(segments[-1])
        _, inside = warp(grey[key:key + 1], _affine_flow(to_key, *grey.shape[-2:]), mode="bilinear")
        if float(inside.float().mean()) < KEY_FRAME_COVERAGE:
            key, key_path, to_key = t, here, torch.zeros_like(to_key)
    segments = torch.tensor(segments, device=grey.device)
    params = _smooth(_params(torch.stack(path)), segments)
    return _matrix(params), segments


def _motion(now, then, affine: torch.Tensor, small_now, small_then, scale: int):
    """The flow from now to then: the camera's (``affine``) where it explains the picture, per-pixel Lucas–Kanade
    (at the working resolution ``small_*``, ``scale`` times coarser) where a noticeable part of it does not (an object
    moving on its own); the shift (dx, dy) when the camera's motion is one; and where it does not explain."""
    h, w = now.shape[-2:]
    params = _params(affine)
    camera = _affine_flow(params, h, w)
    moved, _ = warp(then, camera, mode="bilinear")
    off = ((_gauss((moved - now).abs(), 1.0) - SEEN_TOLERANCE / 2) / (SEEN_TOLERANCE / 2)).clamp(0, 1)
    linear = float(params[0, [1, 2, 4, 5]].abs().max()) * max(h, w)
    shift = (float(params[0, 0]), float(params[0, 3])) if linear < PURE_SHIFT_TOLERANCE else None
    if float((off > 0).float().mean()) < DENSE_MIN_FRACTION:
        return camera, shift, torch.zeros_like(off)
    small = params.clone()
    small[:, [0, 3]] /= scale
    dense = optical_flow(small_now, small_then, small)
    if scale > 1:
        dense = scale * F.interpolate(dense, size=(h, w), mode="bilinear", align_corners=False)
    return camera + off * (dense - camera), shift, off


def _structure_ratio(grey: torch.Tensor) -> float:
    """The weaker over the stronger eigenvalue of the gradients' structure tensor pooled over all frames [T,1,H,W]:
    near 0 where the picture only changes in one direction (the aperture problem for the whole frame)."""
    gx, gy = _gradients(grey.double())
    a, b, c = float((gx * gx).sum()), float((gx * gy).sum()), float((gy * gy).sum())
    root = ((a - c) ** 2 / 4 + b * b) ** 0.5
    strong, weak = (a + c) / 2 + root, (a + c) / 2 - root
    return weak / strong if strong > 0 else 0.0


def _camera(grey: torch.Tensor):
    """``camera_path`` of blurred frames [T,1,H,W], estimated at the working resolution: (path at full-resolution
    centred pixels, shot segments, the frames at the working resolution, its scale)."""
    scale = _working_scale(grey)
    small = F.avg_pool2d(grey, scale) if scale > 1 else grey
    path, segments = camera_path(small)
    path[:, :2, 2] *= scale  # to full-resolution centred pixels (the linear part is scale-free)
    return path, segments, small, scale


def _path_error(fine: torch.Tensor, path: torch.Tensor) -> float:
    """How far each frame of ``fine`` [T,1,H,W] is from the one before moved by the camera ``path``: mean |error|."""
    steps = torch.linalg.solve(path[:-1], path[1:])
    moved, _ = warp(fine[:-1], _affine_flow(_params(steps), *fine.shape[-2:]), mode="bilinear")
    return float((moved - fine[1:]).abs().mean())


def _motion_frames(restored: torch.Tensor):
    """The camera's motion (``_camera``) and the frames [T,1,H,W] it was found on: blurred by
    ``FLOW_PRESMOOTH_SIGMA``; where that leaves structure in one direction only (``APERTURE_MIN_RATIO``), also by a
    half and a quarter of it, keeping the blur whose path best explains the least blurred frames."""
    luma = _grey(restored.float())
    grey = _gauss(luma, FLOW_PRESMOOTH_SIGMA)
    if _structure_ratio(grey) >= APERTURE_MIN_RATIO:
        return grey, _camera(grey)
    sigmas = (FLOW_PRESMOOTH_SIGMA, FLOW_PRESMOOTH_SIGMA / 2, FLOW_PRESMOOTH_SIGMA / 4)
    tries = [(g, _camera(g)) for g in [grey] + [_gauss(luma, s) for s in sigmas[1:]]]
    fine = tries[-1][0]
    return min(tries, key=lambda t: _path_error(fine, t[1][0]))


def _working_scale(grey: torch.Tensor) -> int:
    """The power of two that brings the frames' longer side to at most ``MOTION_MAX_SIDE`` (motion is estimated
    there: the frames are blurred anyway, so full resolution adds time, not accuracy)."""
    scale = 1
    while max(grey.shape[-2:]) / scale > MOTION_MAX_SIDE and min(grey.shape[-2:]) / scale >= 4 * FLOW_MIN_SIZE:
        scale *= 2
    return scale


def shift_exactly(image: torch.Tensor, shift) -> torch.Tensor:
    """``image`` [B,C,H,W] sampled at x + shift, band-limited (a Fourier phase ramp on the reflect-padded image): the
    one resampling that keeps detail up to the finest pixel whatever the fraction of the shift."""
    pad = min(FFT_PAD, image.shape[-1] - 1, image.shape[-2] - 1)
    x = F.pad(image.double(), (pad,) * 4, mode="reflect")
    fy = torch.fft.fftfreq(x.shape[-2], dtype=torch.float64, device=x.device)[:, None]
    fx = torch.fft.fftfreq(x.shape[-1], dtype=torch.float64, device=x.device)[None, :]
    ramp = torch.exp(2j * torch.pi * (fx * shift[0] + fy * shift[1]))
    x = torch.fft.ifft2(torch.fft.fft2(x) * ramp).real
    return x[..., pad:x.shape[-2] - pad, pad:x.shape[-1] - pad].to(image.dtype)


def _widen(spectrum: torch.Tensor, dim: int) -> torch.Tensor:
    """The spectrum along ``dim`` zero-padded to twice its length, the Nyquist bin of an even length split between
    the two sides (so a real signal stays real)."""
    x = spectrum.movedim(dim, -1)
    n = x.shape[-1]
    wide = torch.zeros(*x.shape[:-1], 2 * n, dtype=x.dtype, device=x.device)
    half = (n + 1) // 2  # bins 0..half-1 are non-negative frequencies
    wide[..., :half] = x[..., :half]
    wide[..., 2 * n - (n - half):] = x[..., half:]
    if n % 2 == 0:
        nyquist = x[..., n // 2] / 2
        wide[..., n // 2] = nyquist
        wide[..., 2 * n - n // 2] = nyquist
    return wide.movedim(-1, dim)


def upsample_exactly(image: torch.Tensor, margin: int = 0) -> torch.Tensor:
    """``image`` [B,C,H,W] at twice the resolution, band-limited (the reflect-padded image's spectrum zero-padded):
    sample (y, x) of the input is sample (2y, 2x) of the output. ``margin``: that many of the input's pixels of
    the reflect padding are kept on each side (at most ``FFT_PAD``), so sampling just outside the frame sees what
    ``shift_exactly`` sees there."""
    pad = min(FFT_PAD, image.shape[-1] - 1, image.shape[-2] - 1)
    keep = min(margin, pad)
    x = F.pad(image.double(), (pad,) * 4, mode="reflect")
    wide = _widen(_widen(torch.fft.fft2(x), -2), -1)
    out = torch.fft.ifft2(wide).real * 4
    cut = 2 * (pad - keep)
    return out[..., cut:out.shape[-2] - cut, cut:out.shape[-1] - cut].to(image.dtype)


def warp_detail(band: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """``band`` [B,C,H,W] sampled at x + flow(x): bicubically, but between the samples of its exact 2× upsampling.
    Bicubic interpolation between a band's own pixels dulls its finest detail, more the further from a pixel it
    samples (a 1 % zoom's carried detail in TAESD after ×4 SR: SWD 14 % above each frame's own detail; 4 % so)."""
    h, w = band.shape[-2:]
    margin = min(FFT_PAD, h - 1, w - 1)
    up = upsample_exactly(band, margin)
    flow = flow.to(band.dtype)
    ys, xs = torch.meshgrid(torch.arange(h, dtype=flow.dtype, device=flow.device),
                            torch.arange(w, dtype=flow.dtype, device=flow.device), indexing="ij")
    gx = 2 * (xs + flow[:, 0] + margin) * (2.0 / (up.shape[-1] - 1)) - 1.0
    gy = 2 * (ys + flow[:, 1] + margin) * (2.0 / (up.shape[-2] - 1)) - 1.0
    return F.grid_sample(up, torch.stack([gx, gy], dim=-1), mode="bicubic", padding_mode="border",
                         align_corners=True)


def _carry(band: torch.Tensor, flow: torch.Tensor, shift, off: torch.Tensor) -> torch.Tensor:
    """``band`` moved along ``flow``: where the camera's motion is a pure shift and explains the picture
    (``off`` = 0) an exact shift, elsewhere ``warp_detail`` (carried from the key frame, so never resampled twice
    in a row)."""
    if shift is None:
        return warp_detail(band, flow)
    exact = shift_exactly(band, shift)
    if float(off.max()) == 0:
        return exact
    return torch.where(off > 0, warp_detail(band, flow), exact)


class ClipMotion:
    """How each frame of a clip shows the detail of earlier frames, found once on its restored frames [T,H,W,C]
    and applied by ``carry`` to any bands of that clip (video mode carries twice: once to choose the gains on
    what is shown, once to show it).

    ``camera_path`` finds each frame's affine motion to its shot's first frame, estimated directly against the key
    frame (so its error does not grow with the distance) on restored frames blurred by ``FLOW_PRESMOOTH_SIGMA``
    (a restorer's aliasing stays on its input's pixel grid and pulls the estimate toward standing still; less
    where that blur leaves structure in one direction only, ``_motion_frames``), then
    smoothed along the shot: a ×4 upscaler's output wobbles by about 0.1 px from frame to frame as the input's
    pixel phase changes, and detail that followed the wobble would shimmer. Per-pixel motion is used only where
    the camera's does not explain the picture.
    """

    def __init__(self, restored: torch.Tensor):
        self.frames = restored.shape[0]
        self.plan = []  # per frame after the first: None (a cut: its own band) or (key, to_key, seen, step, seen_prev)
        if self.frames < 2:
            return
        grey, (path, segments, small, scale) = _motion_frames(restored)
        key = 0
        for t in range(1, self.frames):
            if segments[t] != segments[t - 1]:  # a cut: a new picture, its own detail
                self.plan.append(None)
                key = t
                continue
            now, before, then = grey[t:t + 1], grey[t - 1:t], grey[key:key + 1]
            step = _motion(now, before, torch.linalg.solve(path[t - 1:t], path[t:t + 1]), small[t:t + 1],
                           small[t - 1:t], scale)
            to_key = step if key == t - 1 else _motion(now, then, torch.linalg.solve(path[key:key + 1],
                                                                                     path[t:t + 1]),
                                                       small[t:t + 1], small[key:key + 1], scale)
            seen_by_key = _seen(now, then, to_key[0])
            seen_by_previous = None
            if not bool(seen_by_key.all()):  # what the key frame does not see: from the previous frame, if it saw it
                seen_by_previous = _seen(now, before, step[0]) & ~seen_by_key
                if not bool(seen_by_previous.any()):
                    seen_by_previous = None
            self.plan.append((key, _light(to_key), seen_by_key, _light(step) if seen_by_previous is not None
                              else None, seen_by_previous))
            if float(seen_by_key.float().mean()) < KEY_FRAME_COVERAGE:
                key = t

    def carry(self, bands: torch.Tensor) -> torch.Tensor:
        """The bands [T,H,W,C] (T = the clip's frames), carried: P_0 = B_0, then each frame from its key frame's
        carried band where the key sees it, else from the previous frame's, else its own."""
        if bands.shape[0] != self.frames:
            raise ValueError(f"{bands.shape[0]} bands for a clip of {self.frames} frames")
        planes = bands.permute(0, 3, 1, 2)
        out = [planes[:1]]
        for t, plan in enumerate(self.plan, start=1):
            if plan is None:
                out.append(planes[t:t + 1])
                continue
            key, to_key, seen_by_key, step, seen_by_previous = plan
            band = torch.where(seen_by_key, _carry(out[key], *to_key), planes[t:t + 1])
            if seen_by_previous is not None:
                band = torch.where(seen_by_previous, _carry(out[-1], *step), band)
            out.append(band)
        return torch.cat(out).permute(0, 2, 3, 1)

    def shots(self):
        """The clip's shots as (first frame, end) ranges: a cut (a frame the previous one does not see) starts one."""
        starts = [0] + [t for t, plan in enumerate(self.plan, start=1) if plan is None]
        return list(zip(starts, starts[1:] + [self.frames]))


def _power(frames: torch.Tensor, size: int) -> torch.Tensor:
    """Mean power spectrum [C,size,size//2+1] (float64) of frames [T,C,H,W], Welch's way: Hann-windowed tiles of
    ``size``², half overlapping (further apart in frames that hold more than ``SPECTRUM_MAX_TILES``), their
    periodograms averaged over tiles and frames."""
    window = torch.hann_window(size, periodic=False, dtype=torch.float32, device=frames.device)
    window = window[:, None] * window[None, :]
    h, w = frames.shape[-2:]
    half = size // 2
    stride = half * max(1, math.ceil(math.sqrt((h // half) * (w // half) / SPECTRUM_MAX_TILES)))
    total, count = None, 0
    for frame in frames.split(1):
        tiles = frame.float().unfold(2, size, stride).unfold(3, size, stride)  # [1,C,nh,nw,size,size]
        p = torch.fft.rfft2(tiles * window).abs().double().pow(2).sum(dim=(0, 2, 3))
        total = p if total is None else total + p
        count += tiles.shape[2] * tiles.shape[3]
    return total / count


def match_spectrum(carried: torch.Tensor, own: torch.Tensor) -> torch.Tensor:
    """``carried`` [T,C,H,W] (one shot's detail, carried from its key frame) filtered so that its mean power spectrum
    is ``own``'s, the shot's frames' own detail [T,C,H,W].

    Carried detail is one draw, shown in every frame; its spectrum is that draw's, which strays from the typical
    one by chance, and the clip's quality is then that of the stray draw. One small linear filter per shot and
    channel (``SPECTRUM_TILE``² taps, the same for every frame) gives it the frames' mean spectrum: the detail still
    moves with the picture (a filter that does not vary in space commutes with the motion, and a short one keeps
    the frame's edges local), its energy is what video mode off adds, and its look is the typical draw's. A gain
    is at most ``SPECTRUM_MAX_GAIN``. Frames smaller than the tile are returned as they are."""
    h, w = carried.shape[-2:]
    size = SPECTRUM_TILE
    if min(h, w) < size:
        return carried
    target, current = _power(own, size), _power(carried, size)
    floor = current.mean(dim=(-2, -1), keepdim=True) * 1e-12 + torch.finfo(torch.float64).tiny
    gain = (target / current.clamp_min(floor)).sqrt().clamp(max=SPECTRUM_MAX_GAIN)
    kernel = torch.fft.fftshift(torch.fft.irfft2(gain, s=(size, size)), dim=(-2, -1))  # zero phase, centred
    kernel = kernel.to(device=carried.device, dtype=torch.float32)[:, None]  # [C,1,size,size]
    pad = (size // 2, size // 2 - 1, size // 2, size // 2 - 1)
    out = [F.conv2d(F.pad(frame.float(), pad, mode="reflect"), kernel, groups=kernel.shape[0])
           for frame in carried.split(1)]
    return torch.cat(out).to(carried.dtype)


def _light(motion):
    """A ``_motion`` result without its flow field where an exact shift alone is used (keeps a long clip's plan
    small)."""
    flow, shift, off = motion
    if shift is not None and float(off.max()) == 0:
        return None, shift, off[..., :1, :1]
    return motion


def carry_detail(restored: torch.Tensor, bands: torch.Tensor) -> torch.Tensor:
    """The bands [T,H,W,C] of a clip's frames, carried along its motion (estimated on the restored frames [T,H,W,C];
    ``ClipMotion``)."""
    if bands.shape[0] < 2:
        return bands
    return ClipMotion(restored).carry(bands)
