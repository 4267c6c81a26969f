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
