"""A labelled sheet of a perception sweep, for PD Blend's preview on the canvas.

PD Blend with a perceptions list returns every image at each value in turn, one
flat batch that the next node consumes unchanged; looking at that batch, nobody
can tell which image is which value. The sheet shows one row per image and one
column per perception, each tile captioned with its value. Captions are drawn
with Pillow, which ComfyUI ships; it is imported here only, so ``deepot_core``
never needs it.
"""
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

#: Longest side of one tile, in pixels (larger images are shrunk for the sheet only).
MAX_TILE = 256
#: Most image rows shown; a note under the sheet says how many were left out.
MAX_ROWS = 8
#: Gap between tiles (pixels), smallest and largest caption font (pixels), and the colours (0..255).
GAP, MIN_FONT, MAX_FONT = 4, 12, 28
BACKGROUND, CAPTION_COLOUR = (24, 24, 24), (235, 235, 235)


def caption(value: float) -> str:
    """The label of one column: ``p = 0.5``."""
    return f"p = {value:g}"


def font_size(tile_w: int) -> int:
    """Captions grow with the tiles, so they stay readable when the canvas shrinks the sheet to the node."""
    return max(MIN_FONT, min(MAX_FONT, tile_w // 10))


def caption_height(tile_w: int) -> int:
    return font_size(tile_w) + 8


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)  # scalable (Pillow ≥ 10.1 with FreeType)
    except TypeError:
        return ImageFont.load_default()


def _tiles(images: torch.Tensor) -> torch.Tensor:
    """RGB tiles no larger than MAX_TILE on their long side, as uint8 [N, h, w, 3]."""
    x = images.detach().float().cpu()
    x = x[..., :3] if x.shape[-1] >= 3 else x[..., :1].expand(*x.shape[:-1], 3)
    h, w = x.shape[1:3]
    scale = min(1.0, MAX_TILE / max(h, w))
    if scale < 1.0:
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        x = F.interpolate(x.movedim(-1, 1), size=size, mode="bilinear", antialias=True,
                          align_corners=False).movedim(1, -1)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def layout(columns: int, rows: int, tile_h: int, tile_w: int, note: bool = False):
    """Sheet width, height and the (top, left) corner of every tile, row-major; its caption sits just above."""
    caption = caption_height(tile_w)
    corners = [(GAP + row * (caption + tile_h + GAP) + caption, GAP + col * (tile_w + GAP))
               for row in range(rows) for col in range(columns)]
    height = rows * (caption + tile_h) + (rows + 1) * GAP + (caption if note else 0)
    return columns * tile_w + (columns + 1) * GAP, height, corners


def sweep_sheet(images: torch.Tensor, values: Sequence[float]) -> torch.Tensor:
    """A [1, H, W, 3] IMAGE: row b, column k is image b at ``values[k]`` (input: perception-major batch)."""
    from PIL import Image, ImageDraw

    columns = len(values)
    if columns == 0 or images.shape[0] % columns:
        raise ValueError(f"a sweep of {len(values)} values needs a batch that is a multiple of it, "
                         f"got {images.shape[0]} images")
    batch = images.shape[0] // columns
    rows = min(batch, MAX_ROWS)
    shown = images.view(columns, batch, *images.shape[1:])[:, :rows].transpose(0, 1).reshape(-1, *images.shape[1:])
    tiles = _tiles(shown).numpy()
    note = batch > rows
    tile_h, tile_w = tiles.shape[1:3]
    width, height, corners = layout(columns, rows, tile_h, tile_w, note=note)
    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    font, strip = _font(font_size(tile_w)), caption_height(tile_w)
    for index, (top, left) in enumerate(corners):
        draw.text((left + 2, top - strip + 3), caption(values[index % columns]), fill=CAPTION_COLOUR, font=font)
        sheet.paste(Image.fromarray(tiles[index]), (left, top))
    if note:
        draw.text((GAP + 2, height - strip + 3), f"first {rows} of {batch} images", fill=CAPTION_COLOUR, font=font)
    return torch.from_numpy(np.asarray(sheet, dtype=np.float32) / 255.0).unsqueeze(0)
