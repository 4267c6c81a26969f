"""Dev tool (not run by pytest): run example workflows in a real ComfyUI and make their thumbnails from the output.

A template's thumbnail must be what the workflow really produces, so this queues
the workflow (converted with the server's own ``/object_info``), fetches the
images its nodes listed in ``/history`` and lays crops of them side by side with
captions::

    python tests/example_thumbnails.py --url http://127.0.0.1:8188 deepot_denoise_dncnn_taesd ...

The server needs what the workflow needs (models, ``input/deepot_photos``).
"""
import argparse
import io
import json
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parent))
import workflow_tools as wt  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "example_workflows"
#: Per example: the title, the crop box (left, top, size) and the panels (node title, image index, caption).
SPECS = {
    "deepot_denoise_dncnn_taesd": ("DOT denoising: DnCNN, clipping undone, + TAESD (SD1.5 latent)",
                                   (96, 96, 192), [("noisy input (held out)", 0, "noisy input (sigma 50)"),
                                                   ("Save Image", 0, "perception 0 (DnCNN)"),
                                                   ("Save Image", 1, "perception 0.5"),
                                                   ("Save Image", 2, "perception 1")]),
    "deepot_denoise_dncnn_taef1": ("DOT denoising: DnCNN, clipping undone, + TAEF1 (FLUX.1, 16 ch)",
                                   (96, 96, 192), [("noisy input (held out)", 0, "noisy input (sigma 50)"),
                                                   ("Save Image", 0, "perception 0 (DnCNN)"),
                                                   ("Save Image", 1, "perception 0.5"),
                                                   ("Save Image", 2, "perception 1")]),
    "deepot_reuse_dncnn_taesd": ("DOT reuse: the saved DnCNN + TAESD transport on any photo",
                                 (224, 96, 256), [("noisy input", 0, "noisy input (sigma 50)"),
                                                  ("DnCNN output (perception 0)", 0, "perception 0 (DnCNN)"),
                                                  ("Save Image", 0, "perception 0.75")]),
}
#: Inputs set for the thumbnail run only, per example: class type → inputs. The Make Realistic examples show a
#: held-out photo (not in deepot_photos) put in ComfyUI/input under that name, and both ends of the slider.
OVERRIDES = {
    "deepot_make_realistic_upscale": {"LoadImage": {"image": "holdout_kodim20.png"},
                                      "DeepOT_MakeRealistic": {"perceptions": "0, 1"}},
    "deepot_make_realistic_denoise": {"DeepOT_MakeRealistic": {"perceptions": "0, 1"}},
    "deepot_make_realistic_reuse": {"LoadImage": {"image": "holdout_kodim23_noisy50.png"},
                                    "DeepOT_MakeRealistic": {"perceptions": "0, 0.75"}},
}
SPECS.update({
    "deepot_make_realistic_upscale": ("Make Realistic after a x4 upscaler (4x Compact Pretrain) + TAESD, held-out photo",
                                      (0, 0, 384), [("Save Image", 0, "x4 upscaler (perception 0)"),
                                                    ("Save Image", 1, "Make Realistic, perception 1")]),
    "deepot_make_realistic_denoise": ("Make Realistic after DnCNN (sigma 50) + TAESD",
                                      (96, 96, 256), [("Save Image", 0, "DnCNN (perception 0)"),
                                                      ("Save Image", 12, "Make Realistic, perception 1")]),
    "deepot_make_realistic_reuse": ("A saved transport, a held-out photo (DnCNN)",
                                    (0, 0, 256), [("Save Image", 0, "DnCNN (perception 0)"),
                                                  ("Save Image", 1, "Make Realistic, perception 0.75")]),
})
GAP, TITLE, CAPTION = 8, 34, 26
BACKGROUND, TEXT = (30, 30, 34), (235, 235, 235)


def http(url: str, data=None) -> bytes:
    body = None if data is None else json.dumps(data).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.read()


def run(url: str, prompt: dict, timeout: float = 1800) -> dict:
    prompt_id = json.loads(http(url + "/prompt", {"prompt": prompt}))["prompt_id"]
    deadline = time.time() + timeout
    while time.time() < deadline:
        entry = json.loads(http(f"{url}/history/{prompt_id}")).get(prompt_id)
        if entry and entry.get("status", {}).get("completed"):
            return entry
        if entry and entry.get("status", {}).get("status_str") == "error":
            raise RuntimeError(json.dumps(entry["status"])[:2000])
        time.sleep(1)
    raise TimeoutError(prompt_id)


def font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:
        return ImageFont.load_default()


def thumbnail(url: str, name: str) -> Path:
    title, (left, top, size), panels = SPECS[name]
    definitions = wt.object_info_definitions(json.loads(http(url + "/object_info")))
    prompt = wt.to_api(wt.load(EXAMPLES / f"{name}.json"), definitions)
    for node in prompt.values():
        node["inputs"].update(OVERRIDES.get(name, {}).get(node["class_type"], {}))
    entry = run(url, prompt)
    by_title = {node["_meta"]["title"]: node_id for node_id, node in prompt.items()}
    sheet = Image.new("RGB", (len(panels) * (size + GAP) + GAP, TITLE + size + CAPTION + GAP), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    draw.text((GAP, 6), title, fill=TEXT, font=font(20))
    for k, (node_title, index, caption) in enumerate(panels):
        image = entry["outputs"][by_title[node_title]]["images"][index]
        query = urllib.parse.urlencode({key: image[key] for key in ("filename", "subfolder", "type")})
        with Image.open(io.BytesIO(http(f"{url}/view?{query}"))) as picture:
            crop = picture.convert("RGB").crop((left, top, left + size, top + size))
        x = GAP + k * (size + GAP)
        sheet.paste(crop, (x, TITLE))
        draw.text((x, TITLE + size + 4), caption, fill=TEXT, font=font(16))
    out = EXAMPLES / f"{name}.jpg"
    sheet.save(out, quality=88, optimize=True)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="+", choices=sorted(SPECS))
    parser.add_argument("--url", default="http://127.0.0.1:8188")
    args = parser.parse_args(argv)
    for name in args.names:
        print(thumbnail(args.url.rstrip("/"), name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
