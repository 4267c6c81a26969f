"""The transport document's fields one by one: what each accepts, the default an older file gets, and the
exact refusal (reason "metadata") for each way a field can be wrong."""
import pytest

from deepot_core import TransportFileError
from deepot_core.transport_document import DOCUMENT_FIELDS, document_fields

SHA = "0123456789abcdef" * 4
VALID = {"patch_size": 3, "channels": 4, "eps": 1e-4, "zero_shot": False, "created": 1.7e9, "sha256": SHA,
         "user": {"note": "x"}}


def refusal(document):
    with pytest.raises(TransportFileError) as caught:
        document_fields(document, "t.safetensors")
    assert caught.value.reason == "metadata"
    return str(caught.value)


def test_a_valid_document_reads_back_its_fields():
    assert document_fields(dict(VALID), "t.safetensors") == VALID


def test_the_optional_user_field_defaults_to_an_empty_object_and_null_means_empty():
    older = {k: v for k, v in VALID.items() if k != "user"}
    assert document_fields(older, "t.safetensors")["user"] == {}
    assert document_fields({**VALID, "user": None}, "t.safetensors")["user"] == {}
    assert [k for k, (_, default) in DOCUMENT_FIELDS.items() if default is not DOCUMENT_FIELDS["patch_size"][1]] == [
        "user"]


@pytest.mark.parametrize("key", ["patch_size", "channels", "eps", "zero_shot", "created", "sha256"])
def test_a_missing_required_field_is_named(key):
    document = {k: v for k, v in VALID.items() if k != key}
    assert refusal(document) == f"t.safetensors has incomplete metadata (no {key!r}); the file is damaged."


@pytest.mark.parametrize("key, value, why", [
    ("patch_size", 4, "patch_size must be odd and between 1 and 9, got 4; use 3 (the default) or another odd size"),
    ("patch_size", "x", "patch_size must be an odd integer, got 'x'; use 1, 3, 5, 7 or 9"),
    ("channels", "4", "'4' is not an integer"),
    ("channels", True, "True is not an integer"),
    ("channels", 0, "0 channels is out of range"),
    ("channels", 4097, "4097 channels is out of range"),
    ("eps", "0.1", "eps '0.1' is not a number in 0..1"),
    ("eps", 1.5, "eps 1.5 is not a number in 0..1"),
    ("zero_shot", "yes", "'yes' is not true or false"),
    ("zero_shot", 1, "1 is not true or false"),
    ("created", float("nan"), "nan is not a time stamp"),
    ("created", "2026", "'2026' is not a time stamp"),
    ("sha256", 123, "123 is not a SHA-256"),
    ("sha256", "abc", "'abc' is not a SHA-256"),
    ("sha256", SHA.upper(), f"{SHA.upper()!r} is not a SHA-256"),
    ("user", [1, 2], "user metadata is a list, not a JSON object"),
    ("user", "note", "user metadata is a str, not a JSON object"),
])
def test_an_invalid_field_says_what_is_wrong(key, value, why):
    message = refusal({**VALID, key: value})
    assert message == f"t.safetensors has invalid metadata {key!r} ({why}); the file is damaged."


def test_the_channel_limit_is_inclusive_and_the_feature_dimension_is_checked():
    assert document_fields({**VALID, "channels": 4096, "patch_size": 1}, "t.safetensors")["channels"] == 4096
    assert refusal({**VALID, "channels": 4096, "patch_size": 3}) == (
        "t.safetensors claims D = 4096·3² features, more than 4096; the file is damaged.")
    assert refusal({**VALID, "channels": 456, "patch_size": 3}) == (
        "t.safetensors claims D = 456·3² features, more than 4096; the file is damaged.")
    assert document_fields({**VALID, "channels": 455, "patch_size": 3}, "t.safetensors")["channels"] == 455


# ------------------------------------------------------------------ the document inside the safetensors metadata
def header_with(**metadata):
    from deepot_core.safetensors_reader import Header

    return Header(metadata=metadata, tensors={}, file_size=0)


def parse(**metadata):
    from deepot_core.transport_document import parse_document

    return parse_document(header_with(**metadata), "t.safetensors")


def parse_refusal(**metadata):
    with pytest.raises(TransportFileError) as caught:
        parse(**metadata)
    return caught.value.reason, str(caught.value)


def good_metadata(text='{"a": 1}', **changes):
    from deepot_core.transport_document import document_sha

    meta = {"format": "deepot.latent_transport", "format_version": "1", "deepot": text,
            "deepot_sha256": document_sha(text)}
    meta.update(changes)
    return {k: v for k, v in meta.items() if v is not None}


def test_a_document_parses_with_or_without_its_own_checksum():
    assert parse(**good_metadata()) == {"a": 1}
    assert parse(**good_metadata(deepot_sha256=None)) == {"a": 1}  # files written before issue 9


@pytest.mark.parametrize("changes, reason, message", [
    ({"format": None}, "foreign", "t.safetensors is a safetensors file but not a DeepOT latent transport (a model or "
                                  "LoRA?); load a file written by Save Latent Transport."),
    ({"format": "gguf"}, "foreign", "t.safetensors is a safetensors file but not a DeepOT latent transport (a model "
                                    "or LoRA?); load a file written by Save Latent Transport."),
    ({"format_version": None}, "version", "t.safetensors has an unreadable format version ''; the file is damaged."),
    ({"format_version": "v" * 30}, "version",
     f"t.safetensors has an unreadable format version {'v' * 20!r}; the file is damaged."),
    ({"format_version": "01"}, "version", "t.safetensors has an unreadable format version '01'; the file is damaged."),
    ({"format_version": "2"}, "version", "t.safetensors was written by a newer DeepOT (format 2, this one reads 1); "
                                         "update the pack."),
    ({"deepot": None, "deepot_sha256": None}, "metadata", "t.safetensors lacks its metadata document; the file is "
                                                          "damaged."),
    ({"deepot_sha256": "0" * 64}, "checksum", "t.safetensors is damaged: its metadata does not match its checksum."),
])
def test_each_fault_of_the_metadata_is_named(changes, reason, message):
    assert parse_refusal(**good_metadata(**changes)) == (reason, message)


@pytest.mark.parametrize("text, message", [
    ("{not json", "t.safetensors has damaged metadata (not JSON)."),
    ('{"a": 1, "a": 2}', "t.safetensors has damaged metadata (not JSON)."),  # a repeated key is not "the last wins"
    ("[1, 2]", "t.safetensors has damaged metadata (not a JSON object)."),
])
def test_a_document_that_is_not_one_json_object_is_refused(text, message):
    assert parse_refusal(**good_metadata(text)) == ("metadata", message)


def test_the_time_stamp_limit_is_exclusive():
    assert document_fields({**VALID, "created": 99_999_999_999.0}, "t.safetensors")["created"] == 99_999_999_999.0
    assert refusal({**VALID, "created": 1e11}) == (
        "t.safetensors has invalid metadata 'created' (100000000000.0 is not a time stamp); the file is damaged.")
    assert refusal({**VALID, "created": -1e11}).startswith("t.safetensors has invalid metadata 'created'")
