"""Avro, Protobuf and JSON Schema records with Confluent framing, writer schemas given as
`schemas=` (StaticSchemas), as core/tests/schema_formats.rs does it."""

import base64
import io
import json
import struct

import fastavro
import pytest

import fieldcrypt
from support import PAYMENT, PII, SCHEMAS, make_codec

GUID = "00010203-0405-0607-0809-0a0b0c0d0e0f"


def static_schemas():
    avsc = (PAYMENT / "payment.avsc").read_text()
    return {
        1: {"type": "AVRO", "schema": avsc, "name": "payment.avsc"},
        # bench.Payment imports confluent/meta.proto for its tags: a reference.
        2: {"type": "PROTOBUF", "schema": (PAYMENT / "payment.proto").read_text(), "name": "payment.proto",
            "references": {"confluent/meta.proto": (SCHEMAS / "confluent" / "meta.proto").read_text()}},
        3: {"type": "json", "schema": (PAYMENT / "payment.schema.json").read_text()},
        GUID: {"type": "AVRO", "schema": avsc},
    }


def schema_codec(**kw):
    return make_codec(schemas=static_schemas(), **kw)


def framed(schema_id, payload, indexes=b""):
    """Confluent's wire format: magic byte 0, the schema id (big-endian), Protobuf's message
    indexes, the payload."""
    return b"\0" + struct.pack(">I", schema_id) + indexes + payload


def avro_value():
    return framed(1, (PAYMENT / "payment.avro.bin").read_bytes())


def proto_value():
    # bench.Payment is the file's second message: indexes [1], as zig-zag varints count 1 (0x02)
    # and index 1 (0x02).
    return framed(2, (PAYMENT / "payment.pb.bin").read_bytes(), indexes=b"\x02\x02")


def json_value():
    doc = json.loads((PAYMENT / "payment.json").read_text())
    # Compact: fieldcrypt drops insignificant whitespace inside the objects it rewrites.
    return framed(3, json.dumps(doc, separators=(",", ":")).encode())


def round_trip(value, prefix_len, headers=()):
    producer = schema_codec()
    sealed = producer.encrypt("payments", value, list(headers))
    stored = sealed.value
    assert stored[:prefix_len] == value[:prefix_len], "the framing passes through unchanged"
    for secret in PII:
        assert secret.encode() in value
        assert secret.encode() not in stored, f"{secret} left in the clear"
    assert producer.stats()["fields_encrypted"] == 4
    opened = schema_codec().decrypt("payments", stored, sealed.headers)
    assert opened.value == value, "decrypt restores the exact original bytes"
    assert opened.headers == list(headers)
    return sealed


def test_avro():
    sealed = round_trip(avro_value(), 5)
    # Still valid Avro under the same writer schema: a consumer without fieldcrypt reads it.
    schema = fastavro.parse_schema(json.loads((PAYMENT / "payment.avsc").read_text()))
    record = fastavro.schemaless_reader(io.BytesIO(sealed.value[5:]), schema)
    assert record["full_name"] == "Jane Alexandra Doe"
    assert len(base64.b64decode(record["email"], validate=True)) > 28


def test_avro_schema_id_in_a_header():
    guid = bytes([1]) + bytes(range(16))  # the `__value_schema_id` header: version 1 + GUID
    value = (PAYMENT / "payment.avro.bin").read_bytes()
    sealed = round_trip(value, 0, headers=[("__value_schema_id", guid)])
    assert sealed.headers[0] == ("__value_schema_id", guid)


def test_protobuf():
    round_trip(proto_value(), 7)


def test_json_schema():
    sealed = round_trip(json_value(), 5)
    doc = json.loads(sealed.value[5:])
    assert doc["full_name"] == "Jane Alexandra Doe"
    assert len(doc["address"]["street"]) > 40


def test_json_schema_validation():
    doc = json.loads((PAYMENT / "payment.json").read_text())
    doc["amount_cents"] = "a lot"
    bad = framed(3, json.dumps(doc, separators=(",", ":")).encode())
    schema_codec().encrypt("payments", bad)  # not validated by default
    with pytest.raises(fieldcrypt.RecordError) as e:
        schema_codec(validate_json_schema=True).encrypt("payments", bad)
    assert "a lot" not in str(e.value), "the message names where, never the value"
    schema_codec(validate_json_schema=True).encrypt("payments", json_value())


def test_batches_of_schema_records():
    codec = schema_codec()
    values = [avro_value(), proto_value(), json_value()]
    sealed = codec.encrypt_batch("payments", [(v, []) for v in values])
    opened = schema_codec().decrypt_batch("payments", sealed)
    assert [r.value for r in opened] == values


def test_unknown_schema_and_no_schema_source():
    with pytest.raises(fieldcrypt.RegistryError) as e:
        schema_codec().encrypt("payments", framed(99, (PAYMENT / "payment.avro.bin").read_bytes()))
    assert "99" in str(e.value) and e.value.kind == "registry" and not e.value.retryable
    with pytest.raises(fieldcrypt.ConfigError):
        make_codec().encrypt("payments", avro_value())


def test_registry_that_cannot_be_reached_is_a_retryable_registry_error():
    # Nothing listens on port 1 of the loopback address.
    codec = make_codec(registry={"url": "http://127.0.0.1:1", "timeout": 2, "max_retries": 0})
    with pytest.raises(fieldcrypt.RegistryError) as e:
        codec.encrypt("payments", avro_value())
    assert e.value.retryable is True
    # The URL form builds the same client.
    make_codec(registry="http://127.0.0.1:1")
