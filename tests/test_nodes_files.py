"""Save / Load Latent Transport nodes: the models folder, no silent overwrite, re-run on change, bad files."""
import os

import pytest
import torch

from node_harness import load_pack, node_class, run, run_node

SAVE, LOAD, FIT = "DeepOT_SaveLatentTransport", "DeepOT_LoadLatentTransport", "DeepOT_FitLatentTransport"


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPOT_MODELS_DIR", str(tmp_path / "latent_transport"))
    return tmp_path / "latent_transport"


@pytest.fixture(scope="module")
def transport():
    g = torch.Generator().manual_seed(0)
    natural = {"samples": torch.randn(2, 4, 10, 10, generator=g)}
    restored = {"samples": 0.5 * torch.randn(2, 4, 10, 10, generator=g)}
    return run_node(FIT, natural=natural, restored=restored)[0]


PROMPT = {"1": {"class_type": "VAELoader", "inputs": {"vae_name": "taesd"}},
          "2": {"class_type": "DeepOT_FitLatentTransport", "inputs": {"patch_size": 3}}}


def test_save_writes_into_the_folder_with_provenance_and_load_reads_it(folder, transport):
    (path,) = run_node(SAVE, transport=transport, filename="faces/sd15", prompt=PROMPT, extra_pnginfo=None)
    assert path == str(folder / "faces" / "sd15.safetensors") and os.path.isfile(path)
    assert "faces/sd15.safetensors" in node_class(LOAD).INPUT_TYPES()["required"]["transport_name"][1]["options"]
    loaded, info = run_node(LOAD, transport_name="faces/sd15.safetensors")
    assert torch.equal(loaded.map.matrix, transport.map.matrix)
    assert loaded.metadata["comfyui"]["prompt"] == PROMPT
    assert "VAELoader: taesd" in info and "patch 3×3" in info
    assert loaded.metadata["space"] == "comfy:taesd"


def test_saved_space_stops_the_command_line_from_misusing_the_file(folder, transport):
    from deepot_core.tooling.spaces import check_space
    from deepot_core.transport import LatentTransport
    from deepot_core.tooling.autoencoders import PixelSpace

    prompt = {"1": {"class_type": "VAELoader", "inputs": {"vae_name": "pixel_space"}}}
    (path,) = run_node(SAVE, transport=transport, filename="pix", prompt=prompt)
    loaded = LatentTransport.load(path)
    assert loaded.metadata["space"] == "comfy:pixel_space"  # ComfyUI's pixel space holds 2x − 1, not x
    with pytest.raises(ValueError, match="fitted in the 'comfy:pixel_space' space"):
        check_space(loaded, PixelSpace(), "pixel")
    (unknown,) = run_node(SAVE, transport=transport, filename="nothing_known")
    assert LatentTransport.load(unknown).metadata["space"] == "comfy:workflow"


def test_save_shows_the_path_like_an_output_node(folder, transport):
    cls = node_class(SAVE)
    schema = cls.GET_SCHEMA()
    assert schema.is_output_node and cls.INPUT_TYPES()["hidden"] == {"prompt": ("PROMPT",),
                                                                    "extra_pnginfo": ("EXTRA_PNGINFO",)}
    out = run(SAVE, transport=transport, filename="ui", overwrite=False)
    assert out.ui.as_dict() == {"text": (str(folder / "ui.safetensors"),)} and out.args == (out.ui.value,)


def test_load_shows_channels_patch_samples_and_space_on_the_node(folder, transport):
    run_node(SAVE, transport=transport, filename="shown", prompt=PROMPT)
    out = run(LOAD, transport_name="shown.safetensors")
    shown = out.ui.as_dict()["text"][0].splitlines()
    assert shown == ["shown.safetensors", "space: comfy:taesd", "channels: 4", "patch: 3×3 (D = 36)",
                     f"samples: restored {transport.source.count:.0f}, natural {transport.target.count:.0f}"]
    assert "space: comfy:taesd" in out.args[1].splitlines()
    zero_shot = run_node(FIT, natural={"samples": torch.randn(2, 4, 9, 9)}, patch_size=1)[0]
    zero_shot.save(folder / "plain.safetensors")  # no space recorded (a file written by the library)
    lines = run(LOAD, transport_name="plain.safetensors").ui.as_dict()["text"][0].splitlines()
    assert lines[1:4] == ["space: not recorded", "channels: 4", "patch: 1×1 (D = 4)"]
    assert lines[4].startswith(f"samples: natural {zero_shot.target.count:.0f} (zero-shot")


def test_save_never_overwrites_unless_asked(folder, transport, tmp_path):
    (path,) = run_node(SAVE, transport=transport, filename="one")
    before = open(path, "rb").read()
    other = run_node(FIT, natural={"samples": torch.randn(1, 4, 9, 9)})[0]
    with pytest.raises(OSError, match="^Save Latent Transport: .*one.safetensors already exists; turn on "
                                      "'overwrite'"):
        run_node(SAVE, transport=other, filename="one.safetensors")
    assert open(path, "rb").read() == before
    run_node(SAVE, transport=other, filename="one", overwrite=True)
    assert open(path, "rb").read() != before
    assert sorted(p.name for p in folder.iterdir()) == ["one.safetensors"]  # no temporary files left


@pytest.mark.parametrize("name", ["../escape", "/etc/passwd", "a/../../b", ""])
def test_names_outside_the_folder_are_refused(folder, transport, name):
    with pytest.raises((OSError, ValueError), match="^Save Latent Transport: "):
        run_node(SAVE, transport=transport, filename=name)
    assert not (folder.parent / "escape.safetensors").exists()
    result = node_class(LOAD).validate_inputs(transport_name=name or "x")
    assert isinstance(result, str) and result.startswith("Load Latent Transport: ")


def test_symlink_leaving_the_folder_is_refused(folder, transport, tmp_path):
    outside = tmp_path / "outside.safetensors"
    transport.save(outside)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "link.safetensors").symlink_to(outside)
    with pytest.raises(OSError, match="^Load Latent Transport: .*outside the models folder"):
        run_node(LOAD, transport_name="link.safetensors")


def test_load_fingerprint_follows_the_file(folder, transport):
    run_node(SAVE, transport=transport, filename="moving")
    cls = node_class(LOAD)
    first = cls.fingerprint_inputs(transport_name="moving.safetensors")
    assert first and first == cls.fingerprint_inputs(transport_name="moving.safetensors")
    other = run_node(FIT, natural={"samples": torch.randn(1, 4, 9, 9)})[0]
    run_node(SAVE, transport=other, filename="moving", overwrite=True)
    assert cls.fingerprint_inputs(transport_name="moving.safetensors") != first
    assert cls.validate_inputs(transport_name="moving.safetensors") is True


def test_missing_and_damaged_files_are_clear_errors(folder, transport):
    with pytest.raises(OSError, match="^Load Latent Transport: no transport file named 'gone.safetensors'"):
        run_node(LOAD, transport_name="gone.safetensors")
    assert node_class(LOAD).validate_inputs(transport_name="gone.safetensors").startswith("Load Latent Transport")
    (path,) = run_node(SAVE, transport=transport, filename="broken")
    data = bytearray(open(path, "rb").read())
    data[-20] ^= 0xFF
    open(path, "wb").write(bytes(data))
    with pytest.raises(OSError, match="^Load Latent Transport: broken.safetensors is damaged"):
        run_node(LOAD, transport_name="broken.safetensors")
    open(path, "wb").write(b"\x80\x04K\x01.")  # a pickle with the right extension
    with pytest.raises(OSError, match="^Load Latent Transport: broken.safetensors"):
        run_node(LOAD, transport_name="broken.safetensors")


def test_bridge_falls_back_to_the_environment_folder(folder):
    bridge = load_pack().nodes.comfy_bridge
    assert not bridge.in_comfyui()
    assert bridge.transport_folders() == [folder]
    assert bridge.torch_device() == torch.device("cpu")


def test_folder_registration_keeps_extra_model_paths(tmp_path, monkeypatch):
    """Inside ComfyUI: models/latent_transport comes first, folders from extra_model_paths.yaml stay."""
    import sys
    import types

    bridge = load_pack().nodes.comfy_bridge
    extra = str(tmp_path / "shared_transports")
    fake = types.ModuleType("folder_paths")
    fake.models_dir = str(tmp_path / "models")
    fake.folder_names_and_paths = {"latent_transport": ([extra], set())}  # as the yaml loader leaves it
    fake.get_folder_paths = lambda name: list(fake.folder_names_and_paths[name][0])
    fake.get_filename_list = lambda name: ["from_comfy.safetensors"]
    monkeypatch.setitem(sys.modules, "folder_paths", fake)
    bridge._optional.cache_clear()
    try:
        bridge.register_folder()
        paths, extensions = fake.folder_names_and_paths["latent_transport"]
        assert paths == [str(tmp_path / "models" / "latent_transport"), extra] and extensions == {".safetensors"}
        assert bridge.save_path("x.safetensors") == (tmp_path / "models" / "latent_transport" / "x.safetensors")
        assert bridge.list_transport_files() == ["from_comfy.safetensors"]
    finally:
        bridge._optional.cache_clear()
