"""What the nodes show on the canvas (``io.NodeOutput(..., ui=...)``), and the pack on a ComfyUI without its API.

The ``ui`` part of a node's output is what ComfyUI sends to the frontend and keeps
in ``/history``: Fit's report, Load's file facts, PD Blend's labelled sweep sheet.
The outputs themselves keep their types. ``test_comfyui_integration.py`` checks
the same in a real server's ``/history``.
"""
import json
import subprocess
import sys
import textwrap

import pytest
import torch

from node_harness import PACK_ROOT, load_pack, run
from test_nodes import NODE_IDS

FIT, BLEND = "DeepOT_FitLatentTransport", "DeepOT_PDBlend"


def sheet_module():
    return load_pack().nodes.sweep_preview


def images(seed, batch=2, size=32, channels=3):
    return torch.rand(batch, size, size, channels, generator=torch.Generator().manual_seed(seed))


def test_fit_shows_its_report_on_the_node():
    g = torch.Generator().manual_seed(0)
    natural = {"samples": torch.randn(2, 4, 10, 10, generator=g)}
    restored = {"samples": 0.5 * torch.randn(2, 4, 10, 10, generator=g)}
    out = run(FIT, natural=natural, restored=restored)
    transport, report = out.args
    assert out.ui.as_dict() == {"text": (report,)}
    assert report.startswith("Latent transport: 4 channels, patch 3×3") and "colour gap" in report
    assert type(transport).__name__ == "LatentTransport"


def test_pd_blend_previews_a_sweep_and_nothing_for_one_value():
    restored, transported = images(0), images(1)
    single = run(BLEND, restored=restored, transported=transported, perception=0.5)
    assert single.ui is None and single.args[0].shape == (2, 32, 32, 3)
    sweep = run(BLEND, restored=restored, transported=transported, perceptions="1, 0, 0.5")
    (out,) = sweep.args
    assert out.shape == (6, 32, 32, 3)  # the output is unchanged: every image at each value in turn
    torch.testing.assert_close(sweep.ui.image, sheet_module().sweep_sheet(out, [1.0, 0.0, 0.5]))


def test_sheet_puts_image_b_at_value_k_in_row_b_column_k():
    sp = sheet_module()
    values = [0.0, 0.25, 1.0]
    batch = images(3, batch=2 * len(values), size=24)  # perception-major: index k·B + b
    sheet = sp.sweep_sheet(batch, values)[0]
    width, height, corners = sp.layout(len(values), 2, 24, 24)
    assert sheet.shape == (height, width, 3)
    for index, (top, left) in enumerate(corners):
        row, col = divmod(index, len(values))
        expected = (batch[col * 2 + row] * 255).round() / 255
        torch.testing.assert_close(sheet[top:top + 24, left:left + 24], expected, atol=0.5 / 255, rtol=0)


def test_every_tile_is_captioned_with_its_own_value():
    sp = sheet_module()
    values = [0.0, 0.5, 1.0, 2.0]
    sheet = sp.sweep_sheet(images(4, batch=3 * len(values), size=40), values)[0]
    _, _, corners = sp.layout(len(values), 3, 40, 40)
    strips = [sheet[top - sp.caption_height(40):top, left:left + 40] for top, left in corners]
    background = torch.tensor(sp.BACKGROUND) / 255
    for strip in strips:
        assert ((strip - background).abs().sum(-1) > 0.5).sum() > 15  # text was drawn
    by_column = [strips[i::len(values)] for i in range(len(values))]
    for column in by_column:  # the same caption in every row of a column ...
        for strip in column[1:]:
            torch.testing.assert_close(strip, column[0])
    captions = [column[0] for column in by_column]  # ... and a different one in every column
    assert all(not torch.equal(a, b) for i, a in enumerate(captions) for b in captions[i + 1:])
    assert [sp.caption(v) for v in values] == ["p = 0", "p = 0.5", "p = 1", "p = 2"]


def test_captions_grow_with_the_tiles_so_they_stay_readable_on_the_node():
    sp = sheet_module()
    assert sp.font_size(40) == sp.MIN_FONT < sp.font_size(160) < sp.font_size(sp.MAX_TILE) <= sp.MAX_FONT
    small, large = (sp.sweep_sheet(images(6, batch=2, size=size), [0.0, 1.0])[0] for size in (40, 256))
    ink = lambda strip: ((strip - torch.tensor(sp.BACKGROUND) / 255).abs().sum(-1) > 0.5).sum()
    assert ink(large[:sp.caption_height(256)]) > 2 * ink(small[:sp.caption_height(40)])


def test_sheet_shrinks_large_images_limits_rows_and_says_so():
    sp = sheet_module()
    big = images(5, batch=2 * (sp.MAX_ROWS + 3), size=600, channels=4)  # RGBA, 11 images × 2 values
    sheet = sp.sweep_sheet(big, [0.0, 1.0])[0]
    width, height, _ = sp.layout(2, sp.MAX_ROWS, sp.MAX_TILE, sp.MAX_TILE, note=True)
    assert sheet.shape == (height, width, 3)
    note = sheet[-sp.caption_height(sp.MAX_TILE):]
    assert ((note - torch.tensor(sp.BACKGROUND) / 255).abs().sum(-1) > 0.5).any()
    grey = sp.sweep_sheet(torch.rand(2, 16, 16, 1), [0.0, 1.0])[0]
    assert grey.shape[-1] == 3
    with pytest.raises(ValueError, match="multiple"):
        sp.sweep_sheet(images(0, batch=3), [0.0, 1.0])


def run_isolated(code: str) -> dict:
    """Run ``code`` in a fresh interpreter (no fake modules leak into this one); it prints one JSON line."""
    script = textwrap.dedent(f"""
        import importlib.util, json, logging, sys, types
        sys.path.insert(0, {str(PACK_ROOT / "tests")!r})
        records = []
        handler = logging.Handler()
        handler.emit = lambda record: records.append((record.levelname, record.getMessage()))
        logging.getLogger().addHandler(handler)
        logging.getLogger().setLevel(logging.INFO)
    """) + textwrap.dedent(code)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_without_comfyui_the_pack_imports_silently_on_the_stand_in():
    result = run_isolated("""
        import node_harness
        pack = node_harness.load_pack()
        v3 = pack.nodes.comfy_v3
        print(json.dumps({"records": records, "standin": v3.STANDIN, "missing": v3.MISSING,
                          "entry": hasattr(pack, "comfy_entrypoint"), "v1": hasattr(pack, "NODE_CLASS_MAPPINGS"),
                          "nodes": len(node_harness.node_classes())}))
    """)
    # V3 only: ComfyUI's loader would take NODE_CLASS_MAPPINGS first if the pack exported it
    assert result == {"records": [], "standin": True, "missing": None, "entry": True, "v1": False, "nodes": len(NODE_IDS)}


def test_a_comfyui_without_the_pinned_api_gets_one_clear_log_line():
    """An older ComfyUI: its modules are there, ``comfy_api.v0_0_2`` is not."""
    result = run_isolated("""
        for name in ("comfy", "comfy.model_management", "folder_paths"):
            sys.modules[name] = types.ModuleType(name)
        sys.modules["folder_paths"].models_dir = "/nonexistent/models"
        sys.modules["folder_paths"].folder_names_and_paths = {}
        import node_harness
        pack = node_harness.load_pack()
        print(json.dumps({"records": records, "mappings": getattr(pack, "NODE_CLASS_MAPPINGS", None),
                          "entry": hasattr(pack, "comfy_entrypoint")}))
    """)
    assert result["mappings"] == {} and result["entry"] is False
    assert len(result["records"]) == 1
    level, message = result["records"][0]
    assert level == "ERROR" and "\n" not in message
    assert message.startswith("ComfyUI-DeepOT needs ComfyUI 0.3.64 or newer") and "comfy_api.v0_0_2" in message
    assert "update ComfyUI" in message
