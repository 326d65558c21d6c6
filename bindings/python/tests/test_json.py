"""Schemaless JSON with the demo policy: round trips, policy and header forms, profiles."""

import copy
import json

import pytest

import fieldcrypt
from support import CUSTOMER, KEYS, POLICY, customer_bytes, header_names, make_codec


def test_round_trip(codec):
    plain = customer_bytes()
    headers = [("trace", b"t-1"), ("empty", None)]
    sealed = codec.encrypt("customers", plain, headers)
    assert isinstance(sealed, fieldcrypt.Record)
    assert sealed.key is None
    stored = json.loads(sealed.value)
    assert stored["name"] == "Ada" and stored["city"] == "London"
    for secret in ("hunter2", "4111-1111-1111-1111"):
        assert secret.encode() not in sealed.value
    assert stored["password"] != "hunter2"
    # The input headers, then ours.
    assert sealed.headers[:2] == headers
    assert header_names(sealed.headers) == ["trace", "empty", fieldcrypt.HEADER_NAME]
    assert isinstance(dict(sealed.headers)["fieldcrypt"], bytes)

    opened = make_codec().decrypt("customers", sealed.value, sealed.headers)
    assert opened.value == plain
    assert opened.headers == headers, "the fieldcrypt header goes once nothing is left encrypted"
    assert opened.key is None


def test_policy_forms(tmp_path):
    doc = json.loads(POLICY.read_text())
    sealed = make_codec().encrypt("customers", customer_bytes())
    for policy in (POLICY, str(POLICY), doc, json.dumps(doc), "  \n" + json.dumps(doc)):
        opened = make_codec(policy=policy).decrypt("customers", sealed.value, sealed.headers)
        assert opened.value == customer_bytes(), policy


def test_header_forms(codec):
    plain = customer_bytes()
    as_dict = codec.encrypt("customers", plain, {"trace": b"t-1", "text": "caf\u00e9", "none": None})
    assert as_dict.headers[:3] == [("trace", b"t-1"), ("text", "caf\u00e9".encode()), ("none", None)]
    as_tuple = codec.encrypt("customers", plain, (("trace", bytearray(b"t-1")),))
    assert as_tuple.headers[0] == ("trace", b"t-1")
    assert codec.encrypt("customers", plain).headers[0][0] == "fieldcrypt"
    assert codec.encrypt("customers", plain, None).headers[0][0] == "fieldcrypt"
    # The decrypt side takes the same forms.
    opened = codec.decrypt("customers", as_dict.value, dict(as_dict.headers))
    assert opened.value == plain
    for bad in ("fieldcrypt", b"x", [("a",)], [(1, b"x")], [("a", 1)], 7):
        with pytest.raises(TypeError):
            codec.encrypt("customers", plain, bad)


def test_inputs_are_never_mutated(codec):
    plain = customer_bytes()
    headers = [("trace", b"t-1"), ("text", "x")]
    snapshot = copy.deepcopy(headers)
    sealed = codec.encrypt("customers", plain, headers)
    assert headers == snapshot and sealed.headers is not headers
    dict_headers = {"trace": b"t-1"}
    codec.encrypt("customers", plain, dict_headers)
    assert dict_headers == {"trace": b"t-1"}
    value = bytearray(b"v")
    codec.encrypt("customers", plain, [("b", value)])
    assert value == bytearray(b"v")
    stored_headers = list(sealed.headers)
    opened = codec.decrypt("customers", sealed.value, sealed.headers)
    assert sealed.headers == stored_headers, "decrypt left the encrypted record's headers alone"
    assert opened.headers is not sealed.headers
    # Each call returns new lists: changing one changes nothing else.
    opened.headers.append(("mine", b"1"))
    again = codec.decrypt("customers", sealed.value, sealed.headers)
    assert again.headers == [("trace", b"t-1"), ("text", b"x")]


def test_record_is_read_only_and_its_repr_shows_no_bytes(codec):
    sealed = codec.encrypt("customers", customer_bytes(), [("trace", b"t-1")])
    opened = codec.decrypt("customers", sealed.value, sealed.headers)
    with pytest.raises(AttributeError):
        opened.value = b"x"  # type: ignore[misc]
    assert "hunter2" not in repr(opened)
    assert repr(opened) == f"Record(key=None, value=<{len(opened.value)} bytes>, headers=['trace'])"
    assert "demo" in repr(codec)


def test_topics_without_rules_and_tombstones_pass_through(codec):
    other = codec.encrypt("audit", b"not even json", [("a", b"1")])
    assert other.value == b"not even json" and other.headers == [("a", b"1")]
    tombstone = codec.encrypt("customers", None, [])
    assert tombstone.value is None and tombstone.headers == []
    plain_record = codec.decrypt("customers", customer_bytes(), [])
    assert plain_record.value == customer_bytes(), "a record without the header is returned as it is"


def test_profiles():
    sealed = make_codec().encrypt("customers", customer_bytes())
    visa_only = make_codec(profile="visa-only").decrypt("customers", sealed.value, sealed.headers)
    doc = json.loads(visa_only.value)
    assert doc["visa"] == CUSTOMER["visa"]
    assert doc["password"] == json.loads(sealed.value)["password"], "withheld: stays ciphertext"
    assert "fieldcrypt" in header_names(visa_only.headers), "ciphertext left: the header stays"
    support = make_codec(profile="support").decrypt("customers", sealed.value, sealed.headers)
    assert json.loads(support.value)["password"] == "****"
    full = make_codec(profile="full").decrypt("customers", sealed.value, sealed.headers)
    assert full.value == customer_bytes()


def test_record_keys_and_inline_secrets():
    policy = {
        "fieldcrypt_policy": 1,
        "id": "keys",
        "encrypt": [
            {"name": "k", "topics": ["orders"], "part": "key", "fields": ["customer"], "key": "local://k",
             "algorithm": "AES256_SIV"},
        ],
    }
    codec = fieldcrypt.Codec(policy, kms={"local": {"secrets": {"k": "dev only"}}})
    key = b'{"customer":"ada@example.com"}'
    a = codec.encrypt("orders", b"v", key=key)
    b = codec.encrypt("orders", b"v", key=key)
    assert b"ada@example.com" not in a.key and a.value == b"v"
    assert a.key == b.key, "AES256_SIV is deterministic: equal keys partition alike"
    opened = fieldcrypt.Codec(policy, kms={"local": {"secrets": {"k": b"dev only"}}}).decrypt(
        "orders", a.value, a.headers, key=a.key)
    assert opened.key == key


def test_local_keys_given_inline():
    keys = json.loads(KEYS.read_text())
    sealed = make_codec().encrypt("customers", customer_bytes())
    for inline in (keys, json.dumps(keys)):
        codec = make_codec(kms={"local": {"keys": inline}})
        assert codec.decrypt("customers", sealed.value, sealed.headers).value == customer_bytes()


def test_stats():
    codec = make_codec()
    assert set(codec.stats()) == {
        "records_encrypted", "records_decrypted", "fields_encrypted", "fields_decrypted", "fields_withheld",
        "deks_created", "kms_wrap_calls", "kms_unwrap_calls", "kms_derive_calls", "kms_errors",
        "kms_denials_cached", "dek_cache_hits", "dek_cache_misses",
    }
    for _ in range(3):
        sealed = codec.encrypt("customers", customer_bytes())
        codec.decrypt("customers", sealed.value, sealed.headers)
    s = codec.stats()
    assert (s["records_encrypted"], s["fields_encrypted"]) == (3, 6)
    assert (s["records_decrypted"], s["fields_decrypted"]) == (3, 6)
    assert s["deks_created"] == 1 and s["kms_wrap_calls"] == 1, "one DEK, one KMS call"
    assert s["kms_unwrap_calls"] == 1 and s["dek_cache_misses"] == 1 and s["dek_cache_hits"] == 2
    codec.clear_key_cache()
    codec.decrypt("customers", sealed.value, sealed.headers)
    assert codec.stats()["kms_unwrap_calls"] == 2


def test_limits_are_passed_to_the_core():
    codec = make_codec(limits={"dek_max_uses": 4, "dek_max_age": 3600, "dek_cache_ttl": 0.5,
                               "dek_denied_ttl": 1, "dek_cache_capacity": 8, "dek_outage_extra_uses": 0,
                               "kms_retry_interval": 0.1})
    for _ in range(4):
        codec.encrypt("customers", customer_bytes())
    # Each record uses its DEK three times (two fields and the header authenticator); a DEK is
    # replaced once it has been used dek_max_uses times: records 1-2 on the first, 3-4 on a second.
    assert codec.stats()["deks_created"] == 2
    assert make_codec().stats()["deks_created"] == 0
