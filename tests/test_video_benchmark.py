"""The video benchmark's clips and its shimmer measure: glued detail scores 0, fresh detail every frame about 1.4."""
import pytest
import torch
import torch.nn.functional as F

from benchmarks.video import MARGIN, move_back, render_clip, shimmer
from deepot_core import video as V


def photo(size=200, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = V._gauss(torch.rand(1, 3, size, size, generator=g), 1.5)
    return ((x - x.mean()) * 4 + 0.5).clamp(0, 1).permute(0, 2, 3, 1)


@pytest.mark.parametrize("shift", [(1.0, 0.0), (3.0, 2.0), (0.5, 0.25)])
def test_moving_frame_t_plus_1_back_gives_frame_t(shift):
    clip = render_clip(photo(), 64, 3, shift, 1.0)
    back = move_back(clip[1:], shift, 1.0)
    inner = (slice(None), slice(MARGIN + 4, -MARGIN - 4), slice(MARGIN + 4, -MARGIN - 4))
    err = (back - clip[:-1])[inner].abs().mean() / clip[inner].abs().mean()
    assert float(err) < 0.02


def test_zoom_moves_back_too():
    clip = render_clip(photo(), 64, 2, (0.0, 0.0), 1.02)
    back = move_back(clip[1:], (0.0, 0.0), 1.02)
    inner = (slice(None), slice(MARGIN + 4, -MARGIN - 4), slice(MARGIN + 4, -MARGIN - 4))
    assert float((back - clip[:-1])[inner].abs().mean()) < 0.01


def test_shimmer_is_zero_for_glued_detail_and_high_for_fresh_detail():
    g = torch.Generator().manual_seed(1)
    big = V._gauss(torch.randn(1, 3, 128, 160, generator=g), 1.0) - V._gauss(torch.randn(1, 3, 128, 160,
                                                                                        generator=g), 3.0)
    glued = render_clip(big.permute(0, 2, 3, 1), 64, 5, (2.0, 0.0), 1.0)
    assert shimmer(glued, (2.0, 0.0), 1.0) < 0.05
    fresh = V._gauss(torch.randn(5, 3, 64, 64, generator=g), 1.0).permute(0, 2, 3, 1)
    assert shimmer(fresh, (2.0, 0.0), 1.0) > 1.2


def test_finest_detail_glued_to_a_zoom_scores_low_and_dulled_detail_does_not():
    """The zoom's measure moves back on the exact 2× upsampling: the finest level carried that way scores near 0;
    carried by plain bicubic it loses energy, and that change counts."""
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(1, 3, 96, 96, generator=g)
    band = noise - V._gauss(noise, 1.0)
    zoom, c = 1.02, 47.5
    ys, xs = torch.meshgrid(torch.arange(96.0), torch.arange(96.0), indexing="ij")
    flow = torch.stack([c + (xs - c) / zoom - xs, c + (ys - c) / zoom - ys])[None]
    glued = torch.cat([band, V.warp_detail(band, flow)]).permute(0, 2, 3, 1)
    dulled = torch.cat([band, V.warp(band, flow)[0]]).permute(0, 2, 3, 1)
    assert shimmer(glued, (0.0, 0.0), zoom) < 0.1
    assert shimmer(dulled, (0.0, 0.0), zoom) > 0.3


def test_the_clip_photo_is_a_kodak_stem_or_a_path_and_a_wrong_one_is_named(tmp_path):
    from benchmarks.video import photo_file

    (tmp_path / "images" / "kodak24").mkdir(parents=True)
    kodak = tmp_path / "images" / "kodak24" / "kodim20.png"
    kodak.write_bytes(b"")
    other = tmp_path / "street scene.jpg"
    other.write_bytes(b"")
    assert photo_file(tmp_path, "kodim20") == kodak and photo_file(tmp_path, str(other)) == other
    with pytest.raises(SystemExit, match="kodim99.*kodim20"):
        photo_file(tmp_path, "kodim99")


def test_clips_come_from_each_named_collections_first_photo_halved_where_it_halves(tmp_path):
    """``--collections`` adds pd_curve's first test photo of each collection: after the 12 fit crops of CBSD68,
    Set14's first that is not excluded, Sun-Hays halved (as its collection is)."""
    from benchmarks.video import clip_photos
    from deepot_core.tooling.imageio import save_image

    g = torch.Generator().manual_seed(0)
    for folder, names, size in (("cbsd68", [f"{k:03d}" for k in range(14)], 40),
                                ("set14", ["bridge", "comic", "zebra"], 40), ("sun_hays80", ["a", "b"], 64),
                                ("kodak24", ["kodim20"], 40)):
        (tmp_path / "images" / folder).mkdir(parents=True)
        for name in names:
            save_image(torch.rand(1, size, size, 3, generator=g), tmp_path / "images" / folder / f"{name}.png")
    photos = clip_photos(tmp_path, ["kodim20"], ["sun_hays", "cbsd68", "set14"])
    assert [name for name, _ in photos] == ["kodim20", "cbsd68/012", "set14/comic", "sun_hays/a"]
    assert [tuple(image.shape) for _, image in photos] == [(1, 40, 40, 3)] * 3 + [(1, 32, 32, 3)]


def test_the_report_names_each_photo_and_the_worst_clip_against_each_limit():
    from benchmarks.video import extremes, markdown

    def pair(photo, shimmer_on, fd):
        base = {"photo": photo, "space": "taesd", "task": "sr4", "clip": "pan 1 px", "shimmer": 1.0,
                "detail": 1.0, "psnr_loss": 2.0, "swd_ratio": 0.3, "patch_fd_ratio": 0.2}
        on = dict(base, video=True, shimmer=shimmer_on, detail_vs_off=0.9, swd_vs_off=1.0, patch_fd_vs_off=fd,
                  frame_swd_vs_off=1.0, frame_patch_fd_vs_off=fd - 0.05)
        return [dict(base, video=False), on]

    one = pair("kodim20", 0.1, 1.0)
    assert "photo" not in markdown(one).splitlines()[0]
    rows = one + pair("highway", 0.3, 1.2)
    table = markdown(rows)
    assert table.splitlines()[0].startswith("| photo |") and "| highway | taesd |" in table
    report = extremes(rows)
    assert "at most 0.30 (highway taesd sr4 pan 1 px)" in report and "to 1.20 (highway" in report
    assert "patch-FD on/off 0.95 (kodim20 taesd sr4 pan 1 px) to 1.15 (highway" in report  # frame by frame


def test_frame_by_frame_measures_each_frame_against_its_own_clean_frame():
    from benchmarks.video import frame_by_frame

    g = torch.Generator().manual_seed(3)
    clean = torch.rand(4, 64, 64, 3, generator=g)
    swd, fd = frame_by_frame(clean, clean)
    assert len(swd) == len(fd) == 4 and max(swd) < 1e-6 and max(fd) < 1e-6
    noisy = (clean + torch.tensor([0.0, 0.02, 0.05, 0.1]).view(4, 1, 1, 1) * torch.randn(clean.shape, generator=g))
    swd, fd = frame_by_frame(noisy.clamp(0, 1), clean)
    assert fd == sorted(fd) and swd == sorted(swd) and fd[0] < 1e-6 < fd[1]
    # against the wrong frames (order lost) the first frame no longer matches
    assert frame_by_frame(noisy.clamp(0, 1), clean.flip(0))[1][0] > 1e-3
