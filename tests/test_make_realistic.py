"""Make Realistic (Deep OT): the one-node path equals the modular chain, reuses its fit, and keeps any image whole.

The VAE here is a deterministic toy with ComfyUI's VAE interface (``encode`` crops to a multiple of its
downscale, as ComfyUI's does; ``decode`` returns IMAGE layout; tiled variants with ComfyUI's arguments), so the
chain's nodes and Make Realistic see the same object. A last test runs the real TAESD weights.
"""
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import node_harness

MAKE = "DeepOT_MakeRealistic"


class ToyVAE:
    """A 4-channel, /4 autoencoder: pixel-unshuffle, a fixed linear projection, and back with a soft clamp."""

    def __init__(self, down: int = 4, channels: int = 4, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.down, self.channels = down, channels
        self.weight = torch.randn(channels, 3 * down * down, generator=g) / down
        self.inverse = torch.linalg.pinv(self.weight)
        self.calls = []

    def spacial_compression_encode(self):
        return self.down

    def spacial_compression_decode(self):
        return self.down

    def encode(self, pixels):
        self.calls.append(("encode", tuple(pixels.shape)))
        return self._encode(pixels)

    def decode(self, latents):
        self.calls.append(("decode", tuple(latents.shape)))
        return self._decode(latents)

    def _encode(self, pixels):
        h, w = pixels.shape[1] // self.down * self.down, pixels.shape[2] // self.down * self.down
        top, left = (pixels.shape[1] - h) // 2, (pixels.shape[2] - w) // 2  # ComfyUI's centre crop
        x = F.pixel_unshuffle(pixels[:, top:top + h, left:left + w].movedim(-1, 1), self.down)
        return torch.einsum("kc,bchw->bkhw", self.weight, x)

    def _decode(self, latents):
        x = F.pixel_shuffle(torch.einsum("ck,bkhw->bchw", self.inverse, latents), self.down)
        return (0.5 + 0.5 * torch.tanh(2 * (x - 0.5))).movedim(1, -1)

    def encode_tiled(self, pixels, tile_x, tile_y, overlap):
        self.calls.append(("encode_tiled", tile_x, tile_y, overlap))
        return self._encode(pixels)

    def decode_tiled(self, latents, tile_x, tile_y, overlap):
        self.calls.append(("decode_tiled", tile_x, tile_y, overlap))
        return self._decode(latents)


def textured(seed: int, batch: int, h: int, w: int, tint=(1.0, 0.9, 0.8)) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    base = 0.5 + 0.25 * torch.sin(9 * x + 4 * y)[None, ..., None] * torch.tensor(tint)
    return (base + 0.12 * torch.randn(batch, h, w, 3, generator=g)).clamp(0, 1)


def smooth(image: torch.Tensor) -> torch.Tensor:
    """A blurred copy: what an MMSE restorer returns."""
    return F.avg_pool2d(image.movedim(-1, 1), 5, 1, 2, count_include_pad=False).movedim(1, -1)


@pytest.fixture(autouse=True)
def fresh_cache():
    cache = node_harness.load_pack().nodes.make_realistic.FIT_CACHE
    cache.entries.clear()
    yield cache
    cache.entries.clear()


def chain(vae, restored, natural=None, transport=None, perceptions="0, 0.5, 1", detail_sigma=2.0):
    """The modular chain as ComfyUI runs it: Harmonise → VAE Encode → Fit → Apply → VAE Decode ×2 → PD Blend."""
    run = node_harness.run_node
    if transport is None:
        harmonised, _ = run("DeepOT_HarmoniseColours", natural=natural, restored=restored)
        transport, _ = run("DeepOT_FitLatentTransport", natural={"samples": vae.encode(harmonised[..., :3])},
                           restored={"samples": vae.encode(restored[..., :3])})
    z = {"samples": vae.encode(restored[..., :3])}
    (moved,) = run("DeepOT_ApplyLatentTransport", latent=z, transport=transport)
    (out,) = run("DeepOT_PDBlend", restored=restored, transported=vae.decode(moved["samples"]),
                 reconstructed=vae.decode(z["samples"]), perceptions=perceptions, detail_sigma=detail_sigma)
    return out, transport


def test_without_a_transport_it_is_the_modular_chain():
    vae = ToyVAE()
    natural, restored = textured(1, 3, 32, 40), smooth(textured(2, 2, 32, 40, tint=(0.8, 0.9, 1.0)))
    expected, fitted = chain(vae, restored, natural)
    images, transport, report = node_harness.run_node(MAKE, restored=restored, vae=vae, natural=natural,
                                                      perception=1.0, perceptions="0, 0.5, 1")
    assert images.shape == expected.shape == (6, 32, 40, 3)
    assert torch.allclose(images, expected, atol=1e-6)
    assert torch.equal(transport.map.matrix, fitted.map.matrix)
    assert "fitted on 3 natural photo(s)" in report and "colour gap" in report
    assert not torch.allclose(images[4:], restored, atol=1e-3)  # perception 1 changed the image
    assert torch.allclose(images[:2], restored)  # perception 0 is the restored image


def test_with_a_transport_it_is_apply_decode_blend():
    vae = ToyVAE()
    natural, restored = textured(3, 3, 32, 32), smooth(textured(4, 1, 32, 32))
    _, transport = chain(vae, smooth(textured(5, 2, 32, 32)), natural)
    expected, _ = chain(vae, restored, transport=transport, perceptions="0.75", detail_sigma=1.0)
    images, same, report = node_harness.run_node(MAKE, restored=restored, vae=vae, transport=transport,
                                                 natural=natural, perception=0.75, detail_sigma=1.0)
    assert same is transport
    assert torch.allclose(images, expected, atol=1e-6)
    assert "no fit" in report and "'natural' is ignored" in report


def test_neither_natural_nor_transport_says_what_to_connect():
    with pytest.raises(ValueError, match=r"Make Realistic \(Deep OT\): connect 'natural'.*or 'transport'"):
        node_harness.run(MAKE, restored=textured(0, 1, 16, 16), vae=ToyVAE(), perception=1.0)


@pytest.mark.parametrize("vae, message", [(None, "'vae' must be a VAE"), ("taesd", "'vae' must be a VAE")])
def test_a_vae_that_is_no_vae_is_named(vae, message):
    with pytest.raises(ValueError, match=message):
        node_harness.run(MAKE, restored=textured(0, 1, 16, 16), vae=vae, natural=textured(1, 1, 16, 16),
                         perception=1.0)


def test_a_wrong_transport_and_a_nan_image_are_refused_by_name():
    with pytest.raises(ValueError, match="'transport' must be a LATENT_TRANSPORT"):
        node_harness.run(MAKE, restored=textured(0, 1, 16, 16), vae=ToyVAE(), transport="x", perception=1.0)
    bad = textured(0, 1, 16, 16)
    bad[0, 3, 3, 1] = float("nan")
    with pytest.raises(ValueError, match="restored contains NaN"):
        node_harness.run(MAKE, restored=bad, vae=ToyVAE(), natural=textured(1, 1, 16, 16), perception=1.0)


def test_a_transport_of_another_vae_is_refused_with_the_fix():
    _, transport = chain(ToyVAE(channels=4), smooth(textured(5, 2, 32, 32)), textured(3, 2, 32, 32))
    with pytest.raises(ValueError, match="fitted on 4-channel latents but got 6 channels"):
        node_harness.run(MAKE, restored=textured(0, 1, 32, 32), vae=ToyVAE(channels=6), transport=transport,
                         perception=1.0)


def test_only_perception_changed_reuses_the_fit(fresh_cache):
    vae = ToyVAE()
    natural, restored = textured(6, 2, 32, 32), smooth(textured(7, 1, 32, 32))
    first = node_harness.run_node(MAKE, restored=restored, vae=vae, natural=natural, perception=1.0)
    encodes, fits = len(vae.calls), fresh_cache.fits
    second = node_harness.run_node(MAKE, restored=restored.clone(), vae=vae, natural=natural.clone(),
                                   perception=0.5, detail_sigma=1.5)
    assert len(vae.calls) == encodes and fresh_cache.fits == fits  # no encode, no decode, no fit
    assert second[2].startswith("reused the fit")
    assert second[1] is first[1]
    expected, _ = chain(vae, restored, natural, perceptions="0.5", detail_sigma=1.5)
    assert torch.allclose(second[0], expected, atol=1e-6)
    # a changed input (one pixel of the photos), a changed fit setting or another VAE fits again
    natural[0, 0, 0, 0] = 1 - natural[0, 0, 0, 0]
    for change in ({"natural": natural}, {"natural": natural, "patch_size": 1}, {"natural": natural, "vae": ToyVAE()},
                   {"natural": natural, "harmonise": False}):
        node_harness.run_node(MAKE, **{"restored": restored, "vae": vae, "perception": 0.5, **change})
    assert fresh_cache.fits == fits + 4


@settings(max_examples=25, deadline=None)
@given(batch=st.integers(1, 2), height=st.integers(13, 30), width=st.integers(13, 30),
       channels=st.sampled_from([1, 3, 4]), perception=st.floats(0.0, 1.0), seed=st.integers(0, 2 ** 16))
def test_any_size_and_channel_count_comes_back_whole(batch, height, width, channels, perception, seed):
    """Sizes off the VAE's grid are padded, not cropped; grey and alpha pass; perception 0 is the input."""
    node_harness.load_pack().nodes.make_realistic.FIT_CACHE.entries.clear()
    restored = smooth(textured(seed, batch, height, width))
    if channels == 1:
        restored = restored.mean(-1, keepdim=True)
    elif channels == 4:
        restored = torch.cat([restored, torch.rand(batch, height, width, 1)], dim=-1)
    images, _, _ = node_harness.run_node(MAKE, restored=restored, vae=ToyVAE(), natural=textured(seed + 1, 2, 24, 24),
                                         perceptions=f"0, {perception}", perception=1.0)
    assert images.shape == (2 * batch, height, width, 3 if channels == 1 else channels)
    assert bool(torch.isfinite(images).all()) and float(images.min()) >= 0 and float(images.max()) <= 1
    rgb = restored.expand(*restored.shape[:-1], 3) if channels == 1 else restored
    assert torch.allclose(images[:batch], rgb, atol=1e-6)
    if channels == 4:
        assert torch.equal(images[batch:, ..., 3], restored[..., 3])  # alpha kept


def test_tiles_go_through_the_vaes_tiled_calls():
    vae = ToyVAE()
    node_harness.run_node(MAKE, restored=textured(0, 1, 32, 32), vae=vae, natural=textured(1, 1, 32, 32),
                          perception=1.0, tile_size=128)
    assert {c[0] for c in vae.calls} == {"encode_tiled", "decode_tiled"}  # nothing went through untiled
    assert ("encode_tiled", 128, 128, 16) in vae.calls and ("decode_tiled", 32, 32, 4) in vae.calls


def test_the_node_shows_before_after_and_the_report():
    restored = smooth(textured(8, 2, 32, 32))
    out = node_harness.run(MAKE, restored=restored, vae=ToyVAE(), natural=textured(9, 2, 32, 32), perception=1.0,
                           perceptions="0.5, 1")
    assert out.ui["text"][0] == out.args[2] and "Latent transport" in out.args[2]
    assert "images" in out.ui  # the sheet: the restored image (p = 0) beside each requested perception
    assert out.args[0].shape[0] == 4


def test_taesd_through_comfyuis_conventions(shared_data):
    """Real TAESD weights with ComfyUI's scale and shift: the node equals the chain and perception 1 adds detail."""
    from deepot_core.tooling.comfy_spaces import comfy_taesd_space

    space = comfy_taesd_space("taesd", shared_data / "vae_approx")

    class TAESDVAE:
        downscale_ratio = space.downscale

        def encode(self, pixels):
            return space.encode(pixels)

        def decode(self, latents):
            return space.decode(latents)

    from deepot_core.tooling.imageio import load_image

    photos = sorted((shared_data / "images" / "kodak24").glob("*.png"))
    natural = torch.cat([load_image(p)[:, :64, :64] for p in photos[:3]])
    restored = smooth(torch.cat([load_image(p)[:, 100:164, 100:164] for p in photos[3:5]]))
    vae = TAESDVAE()
    expected, _ = chain(vae, restored, natural, perceptions="1")
    images, _, _ = node_harness.run_node(MAKE, restored=restored, vae=vae, natural=natural, perception=1.0)
    assert torch.allclose(images, expected, atol=1e-5)
    fine = lambda x: (x - smooth(x)).pow(2).mean()  # noqa: E731
    assert float(fine(images)) > 1.2 * float(fine(restored))


def test_an_image_too_small_for_the_patch_says_how_large():
    with pytest.raises(ValueError, match="smaller than patch_size 3; use a smaller patch_size or larger images"):
        node_harness.run(MAKE, restored=textured(0, 1, 6, 6), vae=ToyVAE(), natural=textured(1, 1, 32, 32),
                         perception=1.0)


def test_cancel_stops_the_node_between_steps_and_keeps_no_half_fit(monkeypatch, fresh_cache):
    """ComfyUI's Cancel raises from the progress callback: the node stops there and caches nothing."""
    bridge = node_harness.load_pack().nodes.comfy_bridge
    steps = []

    class Interrupted(Exception):
        pass

    def check():
        steps.append(1)
        if len(steps) == 4:
            raise Interrupted

    monkeypatch.setattr(bridge, "check_interrupted", check)
    vae = ToyVAE()
    with pytest.raises(Interrupted):
        node_harness.run(MAKE, restored=textured(0, 1, 32, 32), vae=vae, natural=textured(1, 2, 32, 32),
                         perception=1.0)
    assert len(steps) == 4 and not fresh_cache.entries
    assert not [c for c in vae.calls if c[0] == "decode"]  # stopped before decoding anything
    monkeypatch.setattr(bridge, "check_interrupted", lambda: steps.append(1))
    steps.clear()
    node_harness.run(MAKE, restored=textured(0, 1, 32, 32), vae=vae, natural=textured(1, 2, 32, 32), perception=1.0)
    assert len(steps) >= 10  # every fit, transport and blend step reported progress


def test_video_frames_blends_the_batch_as_one_clip():
    """The switch reaches the blend (detail carried along the clip) and changes nothing at perception 0."""
    vae = ToyVAE()
    photo = smooth(textured(11, 1, 64, 96))
    clip = torch.cat([photo[:, :, t * 4:t * 4 + 48] for t in range(4)])  # a 4-px pan
    natural = textured(12, 2, 48, 48)
    off = node_harness.run_node(MAKE, restored=clip, vae=vae, natural=natural, perceptions="0, 1", perception=1.0)
    on = node_harness.run_node(MAKE, restored=clip, vae=vae, natural=natural, perceptions="0, 1", perception=1.0,
                               video_frames=True)
    assert torch.equal(on[0][:4], off[0][:4])
    assert not torch.allclose(on[0][4:], off[0][4:])
    expected, _ = chain(vae, clip, natural, perceptions="0, 1")
    assert torch.allclose(off[0], expected, atol=1e-6)  # video mode off is the chain, as before


def test_the_cache_keeps_fits_within_its_memory_budget_and_always_the_newest(fresh_cache, monkeypatch):
    vae, natural = ToyVAE(), textured(20, 2, 32, 32)
    one = 2 * 1 * 32 * 32 * 3 * 4  # two decoded float32 batches of one 32² image
    monkeypatch.setattr(fresh_cache, "budget", 2 * one)
    for seed in range(3):
        node_harness.run_node(MAKE, restored=textured(30 + seed, 1, 32, 32), vae=vae, natural=natural,
                              perception=1.0)
    assert len(fresh_cache.entries) == 2  # the oldest went first
    monkeypatch.setattr(fresh_cache, "budget", 1)
    node_harness.run_node(MAKE, restored=textured(40, 1, 32, 32), vae=vae, natural=natural, perception=1.0)
    assert len(fresh_cache.entries) == 1  # over budget, the newest still stays
