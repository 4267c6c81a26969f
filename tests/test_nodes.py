"""Node definitions and the fit → apply → blend path, called exactly as ComfyUI's executor calls them."""
import copy
import math

import pytest
import torch
import torch.nn.functional as F

from deepot_core import LatentTransport, PatchStatistics
from node_harness import load_pack, node_class, node_classes, run_node

NODE_IDS = {
    "DeepOT_MakeRealistic": "Make Realistic (Deep OT)",
    "DeepOT_FitLatentTransport": "Fit Latent Transport",
    "DeepOT_ApplyLatentTransport": "Apply Latent Transport",
    "DeepOT_PDBlend": "PD Blend",
    "DeepOT_SaveLatentTransport": "Save Latent Transport",
    "DeepOT_LoadLatentTransport": "Load Latent Transport",
    "DeepOT_HarmoniseColours": "Harmonise Colours",
    "DeepOT_DegradeImage": "Degrade Image",
    "DeepOT_UndoNoiseClipping": "Undo Noise Clipping",
    "DeepOT_LoadImageFolder": "Load Image Folder",
}
FIT, APPLY, BLEND = "DeepOT_FitLatentTransport", "DeepOT_ApplyLatentTransport", "DeepOT_PDBlend"


@pytest.fixture(autouse=True)
def models_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPOT_MODELS_DIR", str(tmp_path / "models"))


def make_latent(seed, channels=4, batch=2, size=12, smooth=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, channels, size, size, generator=g)
    x[:, 1] += 0.5 * x[:, 0]  # correlated channels, like a real VAE
    if smooth:
        x = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    return x


@pytest.fixture
def pair():
    natural = {"samples": make_latent(0)}
    restored = {"samples": make_latent(1, smooth=True), "batch_index": [3, 4]}
    return natural, restored


def test_the_extension_lists_every_node_named_exactly():
    assert {node_id: cls.GET_SCHEMA().display_name for node_id, cls in node_classes().items()} == NODE_IDS
    assert list(node_classes()) == list(NODE_IDS)  # menu order


@pytest.mark.parametrize("node_id", sorted(NODE_IDS))
def test_every_node_is_documented_and_well_formed(node_id):
    cls = node_class(node_id)
    schema = cls.GET_SCHEMA()
    assert schema.category.startswith("latent/transport")
    assert isinstance(schema.description, str) and len(schema.description) > 40
    assert issubclass(cls, load_pack().nodes.comfy_v3.io.ComfyNode)
    for spec in schema.inputs:
        assert spec.tooltip, f"{node_id}.{spec.id} has no tooltip"
        if spec.get_io_type() in ("INT", "FLOAT"):
            assert spec.min <= spec.default <= spec.max, spec.id
    for spec in schema.outputs:
        assert spec.tooltip, f"{node_id} output {spec.display_name} has no tooltip"
    # optional inputs come after the required ones: new ones are appended, so saved widget positions hold
    flags = [spec.optional for spec in schema.inputs]
    assert flags == sorted(flags)


def test_patch_size_widget_only_steps_through_odd_sizes():
    options = node_class(FIT).INPUT_TYPES()["required"]["patch_size"][1]
    # ComfyUI's INT widget snaps to min + k·step, so min 1 / step 2 gives 1, 3, 5, 7, 9.
    assert (options["min"], options["step"], options["max"], options["default"] % 2) == (1, 2, 9, 1)


def test_fit_apply_blend_round_trip(pair):
    natural, restored = pair
    transport, report = run_node(FIT, natural=natural, restored=restored)
    assert "samples: restored" in report and "colour gap" in report
    (moved,) = run_node(APPLY, latent=restored, transport=transport)
    assert moved is not restored and moved["batch_index"] == [3, 4]
    assert moved["samples"].shape == restored["samples"].shape
    assert torch.isfinite(moved["samples"]).all()
    # the transport makes the smooth latents' patch statistics closer to the natural ones
    std = lambda z: z.std(dim=(0, 2, 3))
    gap_before = (std(restored["samples"]) - std(natural["samples"])).abs().sum()
    gap_after = (std(moved["samples"]) - std(natural["samples"])).abs().sum()
    assert gap_after < 0.5 * gap_before
    (unchanged,) = run_node(APPLY, latent=restored, transport=transport, strength=0.0)
    torch.testing.assert_close(unchanged["samples"], restored["samples"], atol=1e-5, rtol=1e-5)


def test_zero_shot_fit_without_restored(pair):
    natural, restored = pair
    transport, report = run_node(FIT, natural=natural)
    assert transport.zero_shot and "zero-shot" in report
    (moved,) = run_node(APPLY, latent=restored, transport=transport)
    # each image is transported with its own patch statistics as the source (independent fit per image)
    target = PatchStatistics(3).update(natural["samples"])
    for i in range(2):
        image = restored["samples"][i:i + 1]
        own = LatentTransport(PatchStatistics(3).update(image), target).apply(image.double()).float()
        torch.testing.assert_close(moved["samples"][i:i + 1], own, rtol=1e-4, atol=1e-4)


def test_fit_reports_a_palette_gap_and_advises_harmonising(pair):
    natural, restored = pair
    shift = torch.tensor([2.0, 0, 0, 0]).view(1, 4, 1, 1)
    _, near = run_node(FIT, natural=natural, restored=restored)
    assert "no need to harmonise" in near
    # two collections (different patch counts): harmonise, and nothing about pairs
    _, far = run_node(FIT, natural=natural, restored={"samples": restored["samples"][:1] + shift})
    assert "run Harmonise Colours" in far and "pairs" not in far
    # the same number of patches, as calibration pairs give: the gap may be the restorer's, so no blanket advice
    _, paired = run_node(FIT, natural=natural, restored={"samples": restored["samples"] + shift})
    assert "do not harmonise pairs" in paired and "two different collections" in paired


def test_previous_transport_accumulates_statistics(pair):
    natural, restored = pair
    first, _ = run_node(FIT, natural=natural, restored=restored)
    second, _ = run_node(FIT, natural=natural, restored=restored, previous=first)
    assert second.target.count == pytest.approx(2 * first.target.count)
    assert second.source.count == pytest.approx(2 * first.source.count)
    assert first.target.count == pytest.approx(second.target.count / 2)  # previous left untouched
    with pytest.raises(ValueError, match="^Fit Latent Transport: .*patch_size 3"):
        run_node(FIT, natural=natural, restored=restored, patch_size=5, previous=first)


def test_masks_weight_the_fit(pair):
    natural, restored = pair
    half = torch.zeros(1, 96, 96)
    half[:, :, :48] = 1.0
    transport, _ = run_node(FIT, natural=natural, restored=restored, natural_mask=half)
    full, _ = run_node(FIT, natural=natural, restored=restored)
    assert 0 < transport.target.count < 0.7 * full.target.count


def test_fit_shows_progress_and_checks_for_cancel(pair, monkeypatch):
    natural, restored = pair
    bridge = load_pack().nodes.comfy_bridge
    calls = []
    monkeypatch.setattr(bridge, "check_interrupted", lambda: calls.append(1))
    run_node(FIT, natural=natural, restored=restored)
    assert len(calls) == 4  # once per image of each set

    class Interrupted(Exception):
        pass

    def cancel():
        raise Interrupted()

    monkeypatch.setattr(bridge, "check_interrupted", cancel)
    with pytest.raises(Interrupted):  # ComfyUI's own exception passes through unwrapped
        run_node(FIT, natural=natural, restored=restored)


def test_apply_keeps_every_key_and_mutates_nothing(pair):
    natural, restored = pair
    noise_mask = torch.ones(1, 96, 96)
    latent = {**restored, "noise_mask": noise_mask}
    snapshot = copy.deepcopy(latent)
    transport, _ = run_node(FIT, natural=natural, restored=restored)
    stats_before = transport.target.mean.clone()
    mask = torch.zeros(2, 96, 96)
    mask[:, :48] = 1
    (out,) = run_node(APPLY, latent=latent, transport=transport, mask=mask, strength=1.5)
    assert set(out) == set(latent) and out["noise_mask"] is noise_mask
    for key in latent:
        if isinstance(latent[key], torch.Tensor):
            assert torch.equal(latent[key], snapshot[key])
        else:
            assert latent[key] == snapshot[key]
    assert torch.equal(transport.target.mean, stats_before)
    # the 96-pixel mask's top half is the latent's top 6 rows: moved there at strength 1.5, untouched below
    x = latent["samples"]
    (full,) = run_node(APPLY, latent=latent, transport=transport, strength=1.5)
    torch.testing.assert_close(out["samples"][:, :, :6], full["samples"][:, :, :6], rtol=0, atol=1e-6)
    assert torch.equal(out["samples"][:, :, 6:], x[:, :, 6:])
    assert float((full["samples"][:, :, :6] - x[:, :, :6]).abs().min()) > 0  # every masked-in value moved


def test_apply_on_video_latents_and_low_precision(pair):
    natural, restored = pair
    transport, _ = run_node(FIT, natural=natural, restored=restored)
    frames = make_latent(5, batch=2)  # [T=2, C, H, W]
    video = {"samples": frames.permute(1, 0, 2, 3)[None]}  # [1, C, T, H, W]: frame t is samples[:, :, t]
    (out,) = run_node(APPLY, latent=video, transport=transport)
    assert out["samples"].shape == (1, 4, 2, 12, 12)
    expected = transport.apply(frames.double()).float()  # every frame on its own, in the core, in float64
    torch.testing.assert_close(out["samples"][0].permute(1, 0, 2, 3), expected, rtol=1e-5, atol=1e-5)
    half = {"samples": restored["samples"].to(torch.bfloat16)}
    (out,) = run_node(APPLY, latent=half, transport=transport)
    assert out["samples"].dtype == torch.bfloat16
    reference = transport.apply(half["samples"].double())
    torch.testing.assert_close(out["samples"].double(), reference, rtol=2e-2, atol=2e-2)  # bf16: 8 mantissa bits


@pytest.mark.parametrize("bad, pattern", [
    ({"noise_mask": torch.ones(1, 8, 8)}, "not a LATENT with 'samples'"),
    ("samples", "not a LATENT"),
    ({"samples": [1, 2]}, "one tensor"),
])
def test_latent_without_samples_is_a_clear_error(pair, bad, pattern):
    natural, restored = pair
    transport, _ = run_node(FIT, natural=natural, restored=restored)
    with pytest.raises(ValueError, match=f"^Apply Latent Transport: .*{pattern}"):
        run_node(APPLY, latent=bad, transport=transport)
    with pytest.raises(ValueError, match=f"^Fit Latent Transport: .*{pattern}"):
        run_node(FIT, natural=bad)


def test_nan_latents_are_a_clear_error(pair):
    natural, restored = pair
    transport, _ = run_node(FIT, natural=natural, restored=restored)
    for value in (math.nan, math.inf):
        broken = restored["samples"].clone()
        broken[0, 0, 0, 0] = value
        with pytest.raises(ValueError, match="^Apply Latent Transport: latents contain NaN or Inf; check the VAE"):
            run_node(APPLY, latent={"samples": broken}, transport=transport)
    with pytest.raises(ValueError, match="^Fit Latent Transport: .*NaN/Inf"):
        run_node(FIT, natural={"samples": torch.full((1, 4, 8, 8), math.nan)})


def test_transport_of_other_channel_count_is_a_clear_error(pair):
    natural, restored = pair
    transport, _ = run_node(FIT, natural=natural, restored=restored)
    flux = {"samples": torch.randn(1, 16, 12, 12)}
    with pytest.raises(ValueError, match="^Apply Latent Transport: this transport was fitted on 4-channel latents "
                                         "but got 16 channels; use the VAE"):
        run_node(APPLY, latent=flux, transport=transport)
    with pytest.raises(ValueError, match="^Fit Latent Transport: .*channels"):
        run_node(FIT, natural=natural, restored=flux)


def test_all_zero_mask_is_a_clear_error(pair):
    natural, restored = pair
    transport, _ = run_node(FIT, natural=natural, restored=restored)
    zero = torch.zeros(1, 96, 96)
    with pytest.raises(ValueError, match="^Apply Latent Transport: 'mask' is all zero"):
        run_node(APPLY, latent=restored, transport=transport, mask=zero)
    with pytest.raises(ValueError, match="^Fit Latent Transport: 'natural_mask' is all zero"):
        run_node(FIT, natural=natural, restored=restored, natural_mask=zero)


def test_even_patch_size_is_refused_with_the_fix(pair):
    natural, restored = pair
    with pytest.raises(ValueError, match="^Fit Latent Transport: patch_size must be odd .* set it to 5"):
        run_node(FIT, natural=natural, restored=restored, patch_size=4)


def test_wrong_object_on_the_transport_socket(pair):
    _, restored = pair
    with pytest.raises(ValueError, match="^Apply Latent Transport: 'transport' must be a LATENT_TRANSPORT"):
        run_node(APPLY, latent=restored, transport={"samples": restored["samples"]})


def images(seed, batch=1, size=32, channels=3):
    return torch.rand(batch, size, size, channels, generator=torch.Generator().manual_seed(seed))


def test_pd_blend_endpoints_and_residual_decode():
    restored, transported, reconstructed = images(0), images(1), images(2)
    (zero,) = run_node(BLEND, restored=restored, transported=transported, perception=0.0)
    (one,) = run_node(BLEND, restored=restored, transported=transported, perception=1.0)
    torch.testing.assert_close(zero, restored)
    torch.testing.assert_close(one, transported)
    (residual,) = run_node(BLEND, restored=restored, transported=transported, reconstructed=reconstructed,
                           detail_sigma=0.0, perception=1.0)
    # the node is the library's blend: residual decode with its default natural-slope cap
    from deepot_core import pd_blend
    torch.testing.assert_close(residual, pd_blend(restored, transported, 1.0, reconstructed=reconstructed,
                                                  detail_sigma=0.0))
    uncapped = pd_blend(restored, transported, 1.0, reconstructed=reconstructed, detail_sigma=0.0, natural_slopes=None)
    torch.testing.assert_close(uncapped, (restored + transported - reconstructed).clamp(0, 1))


def test_pd_blend_perception_list_yields_a_batch():
    restored, transported = images(0, batch=2), images(1, batch=2)
    (out,) = run_node(BLEND, restored=restored, transported=transported, perceptions="1, 0 ,0.5; 0")
    assert out.shape == (8, 32, 32, 3)
    for k, p in enumerate([1.0, 0.0, 0.5, 0.0]):  # in the order typed, repeats kept
        torch.testing.assert_close(out[2 * k:2 * k + 2], (1 - p) * restored + p * transported)
    (single,) = run_node(BLEND, restored=restored, transported=transported, perceptions=" ", perception=0.0)
    assert single.shape == (2, 32, 32, 3)
    with pytest.raises(ValueError, match="^PD Blend: perceptions must be numbers .* 'abc'"):
        run_node(BLEND, restored=restored, transported=transported, perceptions="0, abc")
    with pytest.raises(ValueError, match="^PD Blend: perception must be in"):
        run_node(BLEND, restored=restored, transported=transported, perceptions="0, 3")


def test_pd_blend_handles_crop_broadcast_and_rgba():
    restored = images(0, batch=1, size=35, channels=4)
    transported = images(1, batch=3, size=32)
    (out,) = run_node(BLEND, restored=restored, transported=transported, perception=0.5)
    assert out.shape == (3, 32, 32, 4)
    crop = restored[:, 1:33, 1:33]  # 35 → 32: centre crop, one row and column off the top and left
    torch.testing.assert_close(out[..., :3], 0.5 * crop[..., :3] + 0.5 * transported)
    assert torch.equal(out[..., 3:], crop[..., 3:].expand(3, -1, -1, -1))  # restored alpha, for every image


def test_apply_checks_for_cancel(pair, monkeypatch):
    natural, restored = pair
    transport, _ = run_node(FIT, natural=natural, restored=restored)
    bridge = load_pack().nodes.comfy_bridge
    calls = []
    monkeypatch.setattr(bridge, "check_interrupted", lambda: calls.append(1))
    run_node(APPLY, latent=restored, transport=transport)
    assert calls
