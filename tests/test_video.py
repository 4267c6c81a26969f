"""Video mode: motion is found on the frames, the added detail rides on it, and video mode off is untouched."""
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.video import move_back
from deepot_core import video as V
from deepot_core.blend import _gains, pd_sweep
from deepot_core.pyramid import laplacian_pyramid_bchw
from deepot_core.realistic import apply_to_clip
from deepot_core.statistics import PatchStatistics
from deepot_core.transport import LatentTransport

SIZE = 96


def scene(seed: int = 0, size: int = 160) -> torch.Tensor:
    """A textured grey-ish photo stand-in [1,size,size,3]: smooth shapes plus fine texture."""
    g = torch.Generator().manual_seed(seed)
    coarse = F.interpolate(torch.rand(1, 3, 10, 10, generator=g), size=(size, size), mode="bicubic",
                           align_corners=False)
    fine = F.avg_pool2d(torch.rand(1, 3, size, size, generator=g), 3, 1, 1)
    return (0.6 * coarse + 0.4 * fine).clamp(0, 1).permute(0, 2, 3, 1)


def window(image: torch.Tensor, dx: float, dy: float, size: int = SIZE, zoom: float = 1.0) -> torch.Tensor:
    """The size² window of ``image`` whose pixel x shows image(c + (x − c)/zoom + (dx, dy)) (bicubic)."""
    h, w = image.shape[1:3]
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64),
                            indexing="ij")
    c = (size - 1) / 2
    px = (w - size) / 2 + c + (xs - c) / zoom + dx
    py = (h - size) / 2 + c + (ys - c) / zoom + dy
    grid = torch.stack([px / (w - 1) * 2 - 1, py / (h - 1) * 2 - 1], -1)[None].float()
    return F.grid_sample(image.permute(0, 3, 1, 2), grid, mode="bicubic", align_corners=True).permute(0, 2, 3, 1)


@settings(max_examples=12, deadline=None)
@given(dx=st.floats(-4, 4), dy=st.floats(-4, 4), seed=st.integers(0, 100))
def test_the_flow_finds_a_pan_to_a_twentieth_of_a_pixel(dx, dy, seed):
    photo = scene(seed)
    before, after = V._grey(window(photo, 0, 0)), V._grey(window(photo, dx, dy))
    flow = V.optical_flow(after, before)  # before(x + f) = after(x): f = (dx, dy)
    inner = flow[..., 12:-12, 12:-12]
    assert float((inner[:, 0] - dx).abs().mean()) < 0.05 and float((inner[:, 1] - dy).abs().mean()) < 0.05


def test_the_flow_finds_a_zoom():
    photo = scene(3)
    before, after = V._grey(window(photo, 0, 0)), V._grey(window(photo, 0, 0, zoom=1.03))
    params = V.global_motion(after, before)
    assert abs(float(params[0, 1]) - (1 / 1.03 - 1)) < 2e-3 and abs(float(params[0, 4])) < 2e-3


def test_a_zoom_and_roll_are_found_as_one_and_a_shear_still_as_an_affine_motion():
    """The camera's motion is the simplest model the picture supports: a zoom with a roll is a similarity (no
    shear or uneven zoom left free to drift), a real shear is still taken as an affine motion."""
    photo = V._grey(scene(5, 200))
    before = photo[..., 50:150, 50:150]
    for truth, model in (([0.4, -0.02, 0.015, -0.3, -0.015, -0.02], "similarity"),
                         ([0.4, 0.0, 0.04, -0.3, 0.0, 0.0], "affine")):
        params = torch.tensor([truth])
        after = V.warp(photo, V._affine_flow(params, 200, 200))[0][..., 50:150, 50:150]
        found = V._simplest_motion(after, before, torch.zeros(1, 6))
        assert torch.allclose(found, params, atol=2e-3), (model, found)
        assert model == "affine" or abs(float(found[0, 1] - found[0, 5])) < 1e-6


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 1000), scale=st.floats(0.0, 3.0))
def test_the_camera_solver_never_leaves_a_start_that_fits_better(seed, scale):
    """Whatever it starts from, the estimate fits the frames at least as well as its start."""
    g = torch.Generator().manual_seed(seed)
    photo = V._grey(scene(seed % 7, 200))
    truth = torch.tensor([[1.5, 0.02, -0.01, -1.0, 0.01, 0.02]])
    after = V.warp(photo, V._affine_flow(truth, 200, 200))[0][..., 40:160, 40:160]
    before = photo[..., 40:160, 40:160]
    start = truth + scale * torch.randn(1, 6, generator=g) * torch.tensor([[1.0, 0.02, 0.02, 1.0, 0.02, 0.02]])
    for model in V.MOTION_MODELS:
        found = V.global_motion(after, before, start, model=model)
        assert float(V._fit_errors(after, before, found)) <= float(V._fit_errors(after, before,
                                                                              V._within_model(start, model)))


def test_a_zoom_along_a_highways_lanes_is_found_through_fresh_residue(shared_data):
    """A real scene whose structure runs along its lanes (Sun-Hays80's highway), zoomed 1 % a frame, each frame
    with its own fine residue as a denoiser leaves it. Free to shear, the path took a shear along the lanes
    (0.021) and a zoom 13 % short across them; as a similarity it is the zoom, to a tenth of a pixel at the edge."""
    from benchmarks.video import render_clip
    from deepot_core.tooling.imageio import load_image

    photo = load_image(shared_data / "images" / "sun_hays80" / "highway_sun_bpflsdaxnddnwcqi.jpg")
    clean = render_clip(photo, 256, 12, (0.0, 0.0), 1.01)
    g = torch.Generator().manual_seed(0)
    residue = V._gauss(torch.randn(12, 3, 256, 256, generator=g), 1.0).permute(0, 2, 3, 1)
    frames = (clean + 0.01 * residue / residue.std()).clamp(0, 1)
    assert V._structure_ratio(V._gauss(V._grey(frames), V.FLOW_PRESMOOTH_SIGMA)) < V.APERTURE_MIN_RATIO
    path = V._params(V._motion_frames(frames)[1][0])[-1]
    zoom = 1 / 1.01 ** 11 - 1
    expected = torch.tensor([0.0, zoom, 0.0, 0.0, 0.0, zoom], dtype=path.dtype)
    edge = (path - expected).abs() * torch.tensor([1, 128, 128, 1, 128, 128], dtype=path.dtype)
    assert float(edge.max()) < 0.1, path


def pan_clip(frames: int, step: float, seed: int = 0):
    """A pan's restored frames (smooth), and a fresh random band per frame (what each frame's decode adds)."""
    photo = F.avg_pool2d(scene(seed, 256).permute(0, 3, 1, 2), 5, 1, 2).permute(0, 2, 3, 1)
    restored = torch.cat([window(photo, t * step, 0) for t in range(frames)])
    g = torch.Generator().manual_seed(seed + 1)  # decoded detail is band-limited, not white: a difference of Gaussians
    noise = torch.randn(frames, 3, SIZE, SIZE, generator=g)
    bands = 0.2 * (V._gauss(noise, 1.0) - V._gauss(noise, 3.0))
    return restored, bands.permute(0, 2, 3, 1)


@pytest.mark.parametrize("step", [1.0, 2.5, 0.5])
def test_carried_detail_moves_with_the_picture(step):
    restored, bands = pan_clip(6, step)
    carried = V.carry_detail(restored, bands)
    assert torch.equal(carried[0], bands[0])  # the first frame shows its own detail
    for t in range(1, 6):
        moved = move_back(carried[t:t + 1], (step, 0.0), 1.0)  # an exact Fourier shift: no blur of the measure's own
        inner = (slice(None), slice(10, -10), slice(10, -10 - int(step) - 2))
        shimmer = (moved - carried[t - 1:t])[inner].abs().mean() / carried[inner].abs().mean()
        assert float(shimmer) < 0.15, (t, float(shimmer))
    # where the pan reveals new picture (the right edge), the frame's own detail is shown
    assert torch.equal(carried[5, :, -1], bands[5, :, -1])


def test_a_noisy_pan_stays_a_pure_shift_from_the_first_step():
    """A denoiser leaves fresh residue in every frame. The step right after a key frame once took the free affine
    fit, whose noise-sized zoom and shear made the whole path non-shift, so every band was resampled bicubically
    (a half-pixel pan's shimmer 0.28 instead of 0.14 in TAESD after FFDNet σ = 50)."""
    photo = F.avg_pool2d(scene(5, 256).permute(0, 3, 1, 2), 5, 1, 2).permute(0, 2, 3, 1)
    g = torch.Generator().manual_seed(6)
    frames = torch.cat([window(photo, 0.5 * t, 0.25 * t) for t in range(8)])
    frames = frames + 0.03 * torch.randn(frames.shape, generator=g)
    grey = V._gauss(V._grey(frames), V.FLOW_PRESMOOTH_SIGMA)
    path, _ = V.camera_path(grey)
    linear = (path[:, :2, :2] - torch.eye(2)).abs().amax(dim=(1, 2)) * SIZE
    assert float(linear.max()) < V.PURE_SHIFT_TOLERANCE, linear


@settings(max_examples=15, deadline=None)
@given(h=st.integers(4, 40), w=st.integers(4, 40), seed=st.integers(0, 1000))
def test_detail_upsampled_exactly_keeps_its_samples_and_half_pixels_are_exact_shifts(h, w, seed):
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(1, 3, h, w, generator=g)
    band = V._gauss(noise, 1.0) - V._gauss(noise, 3.0)
    up = V.upsample_exactly(band)
    assert up.shape == (1, 3, 2 * h, 2 * w) and torch.allclose(up[..., ::2, ::2], band, atol=1e-5)
    half = torch.zeros(1, 2, h, w)
    half[:, 0], half[:, 1] = 0.5, -0.5
    # equal but for the Nyquist frequency of an even padded length, which each interpolates its own way
    assert torch.allclose(V.warp_detail(band, half), V.shift_exactly(band, (0.5, -0.5)), atol=5e-3)


def test_carried_detail_keeps_its_finest_level_where_it_is_interpolated():
    """A zoom is carried by interpolation, not by an exact shift: sampled between the pixels of the band's exact
    2× upsampling it keeps its finest detail; plain bicubic between its own pixels dulls it."""
    g = torch.Generator().manual_seed(4)
    noise = torch.randn(1, 3, 64, 64, generator=g)
    band = noise - V._gauss(noise, 1.0)  # the finest level, as a denoiser's residue or decoded texture
    flow = V._affine_flow(torch.tensor([[0.3, 0.01, 0.0, -0.2, 0.0, 0.01]]), 64, 64)
    kept = float(V.warp_detail(band, flow)[..., 8:-8, 8:-8].pow(2).mean() / band[..., 8:-8, 8:-8].pow(2).mean())
    dulled = float(V.warp(band, flow)[0][..., 8:-8, 8:-8].pow(2).mean() / band[..., 8:-8, 8:-8].pow(2).mean())
    assert kept > 0.9 and dulled < 0.8, (kept, dulled)


def test_a_scene_whose_coarse_structure_runs_one_way_still_carries_detail_with_the_pan():
    """Broad diagonal stripes plus fine noise (blurred a little): blurred by 4 px for the motion estimate only the
    stripes remain, and motion along them is invisible (the estimate was (1.39, 1.67) px for a (2, 0) pan). The
    blur is then reduced until the frames show structure both ways."""
    g = torch.Generator().manual_seed(0)
    y, x = torch.meshgrid(torch.arange(128.0) / 128, torch.arange(128.0) / 128, indexing="ij")
    stripes = 0.5 + 0.25 * torch.sin(12 * x + 5 * y)[..., None] * torch.tensor([1.0, 0.8, 0.6])
    photo = (stripes + 0.15 * torch.randn(128, 128, 3, generator=g)).clamp(0, 1)[None]
    photo = V._gauss(photo.permute(0, 3, 1, 2), 2.0).permute(0, 2, 3, 1)
    restored = torch.cat([photo[:, 8:104, dx:dx + SIZE] for dx in (0, 2, 4)])
    assert V._structure_ratio(V._gauss(V._grey(restored), V.FLOW_PRESMOOTH_SIGMA)) < V.APERTURE_MIN_RATIO
    noise = torch.randn(3, 3, SIZE, SIZE, generator=g)
    bands = (0.2 * (V._gauss(noise, 1.0) - V._gauss(noise, 3.0))).permute(0, 2, 3, 1)
    carried = V.carry_detail(restored, bands)
    inner = (slice(None), slice(10, -10), slice(10, -14))
    for t in (1, 2):
        moved = move_back(carried[t:t + 1], (2.0, 0.0), 1.0)
        shimmer = (moved - carried[t - 1:t])[inner].abs().mean() / carried[inner].abs().mean()
        assert float(shimmer) < 0.15, (t, float(shimmer))


def test_photos_keep_the_full_motion_blur():
    """Frames with structure in every direction are blurred by FLOW_PRESMOOTH_SIGMA as before."""
    restored, _ = pan_clip(3, 1.0)
    expected = V._gauss(V._grey(restored), V.FLOW_PRESMOOTH_SIGMA)
    assert V._structure_ratio(expected) >= V.APERTURE_MIN_RATIO
    assert torch.equal(V._motion_frames(restored)[0], expected)


@settings(max_examples=25, deadline=None)
@given(h=st.integers(1, 40), w=st.integers(1, 40), frames=st.integers(2, 4), seed=st.integers(0, 1000),
       content=st.sampled_from(["noise", "flat", "fade"]))
def test_video_mode_takes_any_frame_size_and_content(h, w, frames, seed, content):
    """Thin, tiny, flat and fading clips are good input: finite output, perception 0 the restored frames (the
    camera solver once stopped on a singular matrix for frames 1–3 px high or flat)."""
    g = torch.Generator().manual_seed(seed)
    if content == "noise":
        restored = torch.rand(frames, h, w, 3, generator=g)
    else:
        levels = torch.linspace(0.2, 0.7, frames) if content == "fade" else torch.full((frames,), 0.5)
        restored = levels.view(-1, 1, 1, 1).expand(frames, h, w, 3).contiguous()
    transported = torch.rand(frames, h, w, 3, generator=g)
    out = pd_sweep(restored, transported, [0.0, 1.0], reconstructed=restored, video=True)
    assert out.shape == (2 * frames, h, w, 3) and torch.isfinite(out).all()
    assert torch.allclose(out[:frames], restored)


def test_flat_frames_that_change_brightness_do_not_move():
    """A fade holds no structure: the camera solver and the per-pixel flow keep still instead of following
    round-off (they once reached 10⁷ px)."""
    before, after = torch.full((1, 1, 32, 32), 0.6), torch.full((1, 1, 32, 32), 0.2)
    assert float(V.global_motion(after, before).abs().max()) < 0.05
    assert float(V.optical_flow(after, before).abs().max()) < 0.5


def test_a_scene_cut_is_never_smeared_across():
    first, _ = pan_clip(1, 0.0, seed=0)
    second = 1 - pan_clip(1, 0.0, seed=50)[0]
    bands = 0.05 * torch.randn(2, SIZE, SIZE, 3, generator=torch.Generator().manual_seed(9))
    carried = V.carry_detail(torch.cat([first, second]), bands)
    assert torch.equal(carried, bands)


def test_video_mode_keeps_perception_0_and_off_is_untouched():
    restored, bands = pan_clip(4, 1.5)
    transported = (restored + bands).clamp(0, 1)
    off = pd_sweep(restored, transported, [0.0, 1.0], reconstructed=restored)
    on = pd_sweep(restored, transported, [0.0, 1.0], reconstructed=restored, video=True)
    assert torch.allclose(on[:4], restored.clamp(0, 1)) and torch.allclose(off[:4], on[:4])
    assert not torch.allclose(on[4:], off[4:])
    single = pd_sweep(restored[:1], transported[:1], [1.0], reconstructed=restored[:1], video=True)
    assert torch.allclose(single, off[4:5])  # a one-frame clip: nothing to carry, gains of that frame


def test_per_clip_gains_are_one_per_level_for_the_whole_clip():
    restored, bands = pan_clip(4, 1.0)
    base = laplacian_pyramid_bchw(restored.permute(0, 3, 1, 2), 4)
    band = laplacian_pyramid_bchw((3 * bands).permute(0, 3, 1, 2), 4)
    per_frame = _gains(base, band, (1.5, 1.0, 0.9), (1.2,))
    per_clip = _gains(base, band, (1.5, 1.0, 0.9), (1.2,), per_clip=True)
    assert torch.equal(per_clip, per_clip[:1].expand_as(per_clip))
    assert float(per_clip.min()) < 1 and per_frame.shape == per_clip.shape


def test_video_gains_keep_the_shown_detail_within_the_natural_slope():
    """Each frame's own band here cancels most of that frame's fresh residue (as a transport that shrinks a
    denoiser's leftovers does) and adds strong detail; carried to later frames it no longer cancels their residue.
    The cap must hold for what is shown, the carried band, not for the bands each frame would have had."""
    photo = F.avg_pool2d(scene(9, 256).permute(0, 3, 1, 2), 5, 1, 2).permute(0, 2, 3, 1)
    g = torch.Generator().manual_seed(10)
    clean = 0.5 + 0.3 * (torch.cat([window(photo, 2.0 * t, 0) for t in range(6)]) - 0.5)
    fine = torch.randn(clean.shape, generator=g).permute(0, 3, 1, 2)
    residue = (fine - V._gauss(fine, 1.0)).permute(0, 2, 3, 1) * 0.05
    restored = clean + residue
    detail = torch.randn(clean.shape, generator=g).permute(0, 3, 1, 2)
    own = -0.95 * residue + 0.02 * (detail - V._gauss(detail, 1.0)).permute(0, 2, 3, 1)
    out = pd_sweep(restored, restored + own, [1.0], reconstructed=restored, detail_sigma=0.0, natural_floors=None,
                   video=True)

    def energy(images, level):
        return float(laplacian_pyramid_bchw(images.permute(0, 3, 1, 2).double(), 4)[level].pow(2).mean())

    cap = max(1.5 * energy(restored, 1), energy(restored, 0))
    assert energy(out, 0) <= 1.01 * cap
    unchecked = pd_sweep(restored, restored + own, [1.0], reconstructed=restored, detail_sigma=0.0,
                         natural_slopes=None, video=True)
    assert energy(unchecked, 0) > 1.2 * cap  # the carried band alone would break it


def test_a_zero_shot_transport_takes_one_source_per_clip_in_video_mode():
    g = torch.Generator().manual_seed(0)
    natural = torch.randn(2, 4, 12, 12, generator=g)
    transport = LatentTransport(None, PatchStatistics(3).update(natural))
    frames = torch.randn(3, 4, 10, 10, generator=g) * torch.tensor([1.0, 2.0, 3.0]).view(3, 1, 1, 1)
    clip = apply_to_clip(transport, frames, video=True)
    assert torch.allclose(clip, transport.apply(frames.movedim(0, 1)[None])[0].movedim(0, 1))
    assert not torch.allclose(clip, apply_to_clip(transport, frames))  # per frame: three sources
    fitted = LatentTransport(PatchStatistics(3).update(frames), PatchStatistics(3).update(natural))
    assert torch.allclose(apply_to_clip(fitted, frames, video=True), fitted.apply(frames), atol=1e-6)


def test_apply_latent_transports_video_switch_pools_a_zero_shot_source():
    import node_harness

    core = node_harness.core()
    g = torch.Generator().manual_seed(2)
    transport = core.LatentTransport(None, core.PatchStatistics(3).update(torch.randn(2, 4, 12, 12, generator=g)))
    frames = torch.randn(3, 4, 10, 10, generator=g) * torch.tensor([1.0, 2.0, 3.0]).view(3, 1, 1, 1)
    (clip,) = node_harness.run_node("DeepOT_ApplyLatentTransport", latent={"samples": frames}, transport=transport,
                                    strength=1.0, video_frames=True)
    (each,) = node_harness.run_node("DeepOT_ApplyLatentTransport", latent={"samples": frames}, transport=transport,
                                    strength=1.0)
    assert torch.allclose(clip["samples"], transport.apply(frames.movedim(0, 1)[None])[0].movedim(0, 1))
    assert torch.allclose(each["samples"], transport.apply(frames))


def _welch(frames: torch.Tensor) -> torch.Tensor:
    """Mean power [C,32,17] of frames [T,C,H,W] over half-overlapping Hann tiles (the measure match_spectrum uses)."""
    return V._power(frames, V.SPECTRUM_TILE)


def test_a_stray_carried_draw_gets_the_frames_typical_spectrum():
    """The first frame's draw is shown in every frame. Here it is blurrier and three times stronger than the
    frames' own draws; after matching, its power in every band of frequencies is theirs (within sampling error)."""
    g = torch.Generator().manual_seed(3)
    own = V._gauss(torch.randn(6, 3, 96, 96, generator=g), 0.7)
    stray = 3 * V._gauss(torch.randn(1, 3, 96, 96, generator=g), 1.0).expand(6, -1, -1, -1)
    matched = V.match_spectrum(stray, own)
    target, before, after = _welch(own), _welch(stray), _welch(matched)
    radius = torch.fft.fftfreq(32).abs()[:, None].hypot(torch.fft.rfftfreq(32)[None, :])
    for lo, hi in [(0.05, 0.15), (0.15, 0.25), (0.25, 0.35)]:
        ring = (radius >= lo) & (radius < hi)
        ratio = float(after[:, ring].mean() / target[:, ring].mean())
        assert 0.8 < ratio < 1.25, (lo, ratio, float(before[:, ring].mean() / target[:, ring].mean()))
    assert float(matched.pow(2).mean() / own.pow(2).mean()) == pytest.approx(1.0, rel=0.2)


def test_matching_is_one_filter_for_the_shot_so_the_detail_still_moves_with_the_picture():
    """A filter that does not vary in space or time commutes with a shift: matching a carried pan gives the
    matched first frame, panned."""
    g = torch.Generator().manual_seed(4)
    first = V._gauss(torch.randn(1, 3, 96, 96, generator=g), 1.2)
    carried = torch.cat([V.shift_exactly(first, (1.5 * t, 0.0)) for t in range(5)]).float()
    own = V._gauss(torch.randn(5, 3, 96, 96, generator=g), 0.6)
    matched = V.match_spectrum(carried, own)
    for t in range(1, 5):
        panned = V.shift_exactly(matched[:1], (1.5 * t, 0.0))
        inner = (slice(None), slice(None), slice(20, -20), slice(20, -20))
        error = (matched[t:t + 1] - panned)[inner].abs().mean() / matched[inner].abs().mean()
        assert float(error) < 0.02, (t, float(error))
    assert not torch.allclose(matched, carried, atol=1e-3)  # the filter did something


@settings(max_examples=20, deadline=None)
@given(frames=st.integers(1, 3), channels=st.integers(1, 4), h=st.integers(1, 70), w=st.integers(1, 70),
       content=st.sampled_from(["noise", "zero", "spike"]), dtype=st.sampled_from([torch.float32, torch.float64]))
def test_matching_takes_any_band(frames, channels, h, w, content, dtype):
    """Empty, tiny and single-spike bands are good input: same shape and dtype, finite, no bin raised more
    than SPECTRUM_MAX_GAIN (an empty carried band stays empty, frames below a tile are left as they are)."""
    g = torch.Generator().manual_seed(h * 71 + w)
    own = torch.randn(frames, channels, h, w, generator=g).to(dtype)
    carried = torch.zeros(frames, channels, h, w, dtype=dtype)
    if content == "noise":
        carried = 0.01 * torch.randn(frames, channels, h, w, generator=g).to(dtype)
    elif content == "spike":
        carried[..., h // 2, w // 2] = 1.0
    out = V.match_spectrum(carried, own)
    assert out.shape == carried.shape and out.dtype == dtype and torch.isfinite(out).all()
    if min(h, w) < V.SPECTRUM_TILE:
        assert torch.equal(out, carried)
    if content == "zero":
        assert float(out.abs().max()) == 0.0
    assert float(out.pow(2).sum()) <= V.SPECTRUM_MAX_GAIN ** 2 * float(carried.pow(2).sum()) * 1.01 + 1e-12


def test_a_clips_shots_split_at_its_cuts():
    first = pan_clip(3, 1.0, seed=0)[0]
    second = 1 - pan_clip(2, 1.0, seed=50)[0]
    assert V.ClipMotion(torch.cat([first, second])).shots() == [(0, 3), (3, 5)]
    assert V.ClipMotion(first).shots() == [(0, 3)]
    assert V.ClipMotion(first[:1]).shots() == [(0, 1)]


def test_video_mode_shows_the_typical_draw_moving_with_the_picture():
    """The first frame's own band is a stray draw, nine times the others' energy. Video mode shows the frames'
    mean energy (not the stray's, which carrying alone would show in every frame), and it moves with the pan."""
    restored, bands = pan_clip(6, 1.0)
    bands = torch.cat([3 * bands[:1], bands[1:]])
    out = pd_sweep(restored, restored + bands, [1.0], reconstructed=restored, detail_sigma=0.0,
                   natural_slopes=None, video=True)
    shown = out - restored.clamp(0, 1)
    energy = float(shown[:, 10:-10, 10:-10].pow(2).mean() / bands[:, 10:-10, 10:-10].pow(2).mean())
    assert 0.75 < energy < 1.3, energy  # the stray alone: 9 / (14 / 6) = 3.9
    for t in range(1, 6):
        moved = move_back(shown[t:t + 1], (1.0, 0.0), 1.0)
        inner = (slice(None), slice(12, -12), slice(12, -15))
        shimmer = (moved - shown[t - 1:t])[inner].abs().mean() / shown[inner].abs().mean()
        assert float(shimmer) < 0.15, (t, float(shimmer))


def test_video_gains_are_chosen_per_shot_not_across_a_cut():
    """Two shots, one with strong detail to cap and one with little: pooled over the clip, the quiet shot's
    gains would be those of the strong one."""
    first, b1 = pan_clip(3, 1.0, seed=0)
    second, b2 = pan_clip(3, 1.0, seed=50)
    restored = torch.cat([first, 1 - second])
    bands = torch.cat([4 * b1, 0.05 * b2])
    capped = pd_sweep(restored, restored + bands, [1.0], reconstructed=restored, detail_sigma=0.0, video=True)
    free = pd_sweep(restored, restored + bands, [1.0], reconstructed=restored, detail_sigma=0.0, video=True,
                    natural_slopes=None, natural_floors=None)
    assert V.ClipMotion(restored).shots() == [(0, 3), (3, 6)]
    loud = float((capped - restored)[:3].pow(2).mean() / (free - restored)[:3].pow(2).mean())
    quiet = float((capped - restored)[3:].pow(2).mean() / (free - restored)[3:].pow(2).mean())
    assert loud < 0.5 and quiet > 0.9, (loud, quiet)


def test_a_large_frames_spectrum_comes_from_spaced_tiles_and_reads_the_same(monkeypatch):
    """Frames with more tiles than SPECTRUM_MAX_TILES are sampled by tiles further apart: the same spectrum
    (white noise: flat), without holding every half-overlapping tile in memory."""
    g = torch.Generator().manual_seed(5)
    frames = V._gauss(torch.randn(2, 3, 200, 260, generator=g), 0.8)
    full = V._power(frames, V.SPECTRUM_TILE)
    monkeypatch.setattr(V, "SPECTRUM_MAX_TILES", 12)
    spaced = V._power(frames, V.SPECTRUM_TILE)
    ratio = (spaced / full)[:, 2:-2, 2:]  # away from the DC row and column, where few bins average
    assert float(ratio.mean()) == pytest.approx(1.0, abs=0.1) and float(ratio.median()) == pytest.approx(1.0, abs=0.1)
