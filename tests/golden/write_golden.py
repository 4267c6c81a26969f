"""Write the golden transport files of the current format version (run once per new version, then commit).

    python tests/golden/write_golden.py

For every case below it writes ``v<version>_<case>.transport.safetensors`` (made by
``LatentTransport.save`` exactly as users' files are) and ``v<version>_<case>.expected.safetensors``:
the latents the transport was fitted on, probe latents, and what ``apply`` gave on them when
the file was written, plus the expected metadata as JSON. ``tests/test_golden_files.py``
loads every pair it finds, so files of older versions keep being checked forever.
Existing files are never replaced: a version's golden files are written once.
"""
import json
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from deepot_core import LatentTransport, PatchStatistics  # noqa: E402
from deepot_core.constants import FILE_FORMAT_VERSION  # noqa: E402

#: A fixed creation time, so the files do not depend on when they were written.
CREATED = 1_700_000_000.25
#: Strengths the expected outputs are recorded at.
STRENGTHS = (1.0, 0.5, -0.25)


def latents(seed, c, b=2, h=10, w=10, scale=1.0, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, c, h, w, generator=g, dtype=torch.float64) * scale + shift


def header_length(path: Path) -> int:
    return int.from_bytes(path.read_bytes()[:8], "little")


def low_header_byte(transport) -> int:
    """The last byte of the header length ``transport`` would be saved with."""
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        return header_length(transport.save(Path(tmp) / "t.safetensors")) & 0xFF


def cases():
    """(name, transport, fit latents, probe latents, mask); each covers something the others do not."""
    # paired, 2 channels, p = 3: one NaN pixel in the restored set (skipped patches > 0), unicode metadata
    source = latents(1, 2)
    source[0, 1, 4, 4] = float("nan")
    target = latents(2, 2, scale=1.4, shift=0.3)
    paired = LatentTransport(PatchStatistics(3).update(source), PatchStatistics(3).update(target), eps=2e-3,
                             metadata={"space": "comfy:taesd", "note": "golden — ünïcode \"quoted\" [v1]"},
                             created=CREATED)
    probe = latents(3, 2, b=1, h=8, w=9)
    mask = torch.linspace(0, 1, 8 * 9, dtype=torch.float64).reshape(1, 8, 9)
    yield "paired", paired, {"source": source, "target": target}, probe, mask
    # zero-shot, 4 channels, p = 1, masked natural statistics
    target = latents(4, 4, h=6, w=6, scale=0.7, shift=-0.1)
    weights = (torch.arange(36, dtype=torch.float64).reshape(1, 6, 6) % 3) / 2
    zero_shot = LatentTransport(None, PatchStatistics(1).update(target, mask=weights), metadata={},
                                created=CREATED)
    yield "zero_shot", zero_shot, {"target": target, "target_mask": weights}, latents(5, 4, b=2, h=5, w=7), None
    # paired, 3 channels, p = 1, a note padded so the header length ends in byte 0x80: the first byte of a
    # pickle, which made format-1 readers before issue 9 refuse this valid file
    source, target = latents(6, 3, h=6, w=6), latents(7, 3, h=6, w=6, scale=0.5, shift=1.0)
    stats = PatchStatistics(1).update(source), PatchStatistics(1).update(target)
    probe = latents(8, 3, b=1, h=4, w=4)
    for pad in range(256):
        padded = LatentTransport(*stats, metadata={"note": "x" * pad}, created=CREATED)
        if low_header_byte(padded) == 0x80:
            yield "header_0x80", padded, {"source": source, "target": target}, probe, None
            break


def main() -> int:
    for name, transport, fit_inputs, probe, mask in cases():
        stem = f"v{FILE_FORMAT_VERSION}_{name}"
        path, expected_path = HERE / f"{stem}.transport.safetensors", HERE / f"{stem}.expected.safetensors"
        if path.exists() or expected_path.exists():
            print(f"{stem}: exists, left alone")
            continue
        transport.save(path)
        expected = {f"fit.{k}": v for k, v in fit_inputs.items()}
        expected["probe"] = probe
        for s in STRENGTHS:
            expected[f"apply.{s:g}"] = transport.apply(probe, strength=s)
        expected["probe_float32"] = probe.float()
        expected["apply_float32.1"] = transport.apply(probe.float())
        if mask is not None:
            expected["mask"] = mask
            expected["apply_masked.1"] = transport.apply(probe, mask=mask)
        meta = {"channels": transport.channels, "patch_size": transport.patch_size, "eps": transport.eps,
                "zero_shot": transport.zero_shot, "created": transport.created, "user": transport.metadata,
                "format_version": FILE_FORMAT_VERSION, "strengths": list(STRENGTHS),
                "source_skipped": None if transport.zero_shot else transport.source.skipped,
                "target_count": transport.target.count}
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in expected.items()}, str(expected_path),
                  metadata={"expected": json.dumps(meta, sort_keys=True)})
        print(f"{stem}: {path.stat().st_size} + {expected_path.stat().st_size} bytes, "
              f"header length {header_length(path)} (low byte {header_length(path) & 0xFF:#04x})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
