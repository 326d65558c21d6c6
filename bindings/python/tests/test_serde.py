"""fieldcrypt's drop-in AvroSerializer / AvroDeserializer (dict -> Avro -> encrypted, in one
call in Rust, and back), against confluent-kafka's own serializers and its mock registry."""

import copy
import json
import struct

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry import avro as confluent_avro
from confluent_kafka.serialization import MessageField, SerializationContext, SerializationError

import fieldcrypt
from fieldcrypt.kafka import EncryptingSerializer
from support import PAYMENT, PII, make_codec

AVSC = (PAYMENT / "payment.avsc").read_text()
RECORD = json.loads((PAYMENT / "payment.json").read_text())
TOPIC = "payments"


def ctx(headers, topic=TOPIC, field=MessageField.VALUE):
    return SerializationContext(topic, field, headers)


def mock_registry(name):
    return SchemaRegistryClient.new_client({"url": f"mock://fieldcrypt-serde-{name}"})


def codec_for(schema_id):
    return make_codec(schemas={schema_id: {"type": "AVRO", "schema": AVSC}})


def test_round_trip_with_a_static_schema_id():
    codec = codec_for(7)
    serialize = fieldcrypt.AvroSerializer(None, AVSC, codec, conf={"schema_id": 7})
    deserialize = fieldcrypt.AvroDeserializer(None, AVSC, codec)
    record = copy.deepcopy(RECORD)
    headers = [("trace", b"t-1")]
    stored = serialize(record, ctx(headers))
    assert record == RECORD, "the caller's dict is not changed"
    assert stored[:5] == b"\x00" + struct.pack(">I", 7)
    for secret in PII:
        assert secret.encode() not in stored
    assert [n for n, _ in headers] == ["trace", fieldcrypt.HEADER_NAME], "added in place"
    assert deserialize(stored, ctx(list(headers))) == RECORD
    # The same dict again: encrypted afresh, never twice.
    headers = []
    again = serialize(record, ctx(headers))
    assert again != stored and deserialize(again, ctx(headers)) == RECORD


def test_dict_headers_null_union_and_none():
    codec = codec_for(1)
    serialize = fieldcrypt.AvroSerializer(None, AVSC, codec, conf={"schema_id": 1})
    deserialize = fieldcrypt.AvroDeserializer(None, AVSC, codec)
    record = {**RECORD, "phone": None}
    headers = {}
    stored = serialize(record, ctx(headers))
    assert fieldcrypt.HEADER_NAME in headers
    assert deserialize(stored, ctx(list(headers.items()))) == record
    no_phone = {k: v for k, v in RECORD.items() if k != "phone"}
    headers = []
    assert deserialize(serialize(no_phone, ctx(headers)), ctx(headers)) == {**no_phone, "phone": None}
    assert serialize(None, ctx([])) is None
    assert deserialize(None, ctx([])) is None


def test_confluent_deserializer_reads_our_output_and_we_read_theirs():
    sr = mock_registry("interop")
    schema_id = 1  # the first schema of this mock registry
    codec = codec_for(schema_id)
    # Ours registers <topic>-value through the client (the mock compares schema texts, so
    # Confluent's serializer then uses that version rather than register its normalized text).
    ours = fieldcrypt.AvroSerializer(sr, AVSC, codec)
    headers = []
    stored = ours(RECORD, ctx(headers))
    assert struct.unpack(">I", stored[1:5])[0] == schema_id
    theirs = confluent_avro.AvroSerializer(sr, AVSC, conf={"auto.register.schemas": False, "use.latest.version": True})
    frame = theirs(copy.deepcopy(RECORD), ctx([]))
    assert struct.unpack(">I", frame[1:5])[0] == schema_id
    plain_reader = confluent_avro.AvroDeserializer(sr)
    seen = plain_reader(stored, ctx(headers))
    assert {k: v for k, v in seen.items() if k not in ("email", "ssn", "address", "phone")} == {
        k: v for k, v in RECORD.items() if k not in ("email", "ssn", "address", "phone")
    }
    assert seen["email"] != RECORD["email"] and seen["address"]["city"] == RECORD["address"]["city"]

    # Confluent-serialized, then encrypted by fieldcrypt.kafka: our deserializer (schema from
    # the registry by id) reads it.
    headers = []
    sealed = EncryptingSerializer(theirs, codec)(copy.deepcopy(RECORD), ctx(headers))
    assert fieldcrypt.AvroDeserializer(sr, None, codec)(sealed, ctx(headers)) == RECORD
    # and their bytes, unencrypted, too.
    assert fieldcrypt.AvroDeserializer(sr, None, codec)(frame, ctx([])) == RECORD


def test_key_part_uses_the_key_subject():
    sr = mock_registry("key")
    codec = make_codec()
    key_schema = '{"type": "record", "name": "K", "fields": [{"name": "id", "type": "string"}]}'
    serialize = fieldcrypt.AvroSerializer(sr, key_schema, codec)
    key = serialize({"id": "k-1"}, ctx([], topic="other", field=MessageField.KEY))
    assert sr.get_latest_version("other-key").schema_id == struct.unpack(">I", key[1:5])[0]


def test_errors():
    codec = codec_for(1)
    serialize = fieldcrypt.AvroSerializer(None, AVSC, codec, conf={"schema_id": 1})
    with pytest.raises(fieldcrypt.FormatError, match="field email"):
        serialize({**RECORD, "email": 5}, ctx([]))
    with pytest.raises(fieldcrypt.FormatError, match="field ssn"):
        serialize({k: v for k, v in RECORD.items() if k != "ssn"}, ctx([]))
    with pytest.raises(TypeError):
        serialize({**RECORD, "tags": {1, 2}}, ctx([]))
    with pytest.raises(SerializationError):
        serialize(RECORD, None)
    with pytest.raises(SerializationError, match="headers"):
        serialize(RECORD, ctx(None))
    with pytest.raises(fieldcrypt.ConfigError, match="unknown serializer option"):
        fieldcrypt.AvroSerializer(None, AVSC, codec, conf={"schema.id": 1})
    with pytest.raises(fieldcrypt.ConfigError, match="schema_id"):
        fieldcrypt.AvroSerializer(None, AVSC, codec)(RECORD, ctx([]))
    with pytest.raises(fieldcrypt.FormatError):
        fieldcrypt.AvroSerializer(None, '{"type": "nope"}', codec)
    deserialize = fieldcrypt.AvroDeserializer(None, AVSC, codec)
    with pytest.raises(SerializationError, match="Confluent-framed"):
        deserialize(b"{}", ctx([]))
    with pytest.raises(fieldcrypt.FormatError, match="truncated"):
        deserialize(b"\x00\x00\x00\x00\x01\x02", ctx([]))


# ---- JSON ------------------------------------------------------------------------------------

JSON_SCHEMA = (PAYMENT / "payment.schema.json").read_text()


def test_json_schemaless_round_trip_keeps_key_order():
    from support import CUSTOMER

    codec = make_codec()
    serialize = fieldcrypt.JSONSerializer(None, None, codec)
    deserialize = fieldcrypt.JSONDeserializer(None, codec)
    headers = []
    stored = serialize(CUSTOMER, ctx(headers, topic="customers"))
    assert b"hunter2" not in stored and fieldcrypt.HEADER_NAME in dict(headers)
    assert stored.startswith(b'{"name":"Ada","password":')
    assert deserialize(stored, ctx(headers, topic="customers")) == CUSTOMER
    with pytest.raises(ValueError, match="NaN"):
        serialize({"x": float("nan")}, ctx([], topic="customers"))


def test_json_schema_framed_interop_with_confluent():
    from confluent_kafka.schema_registry.json_schema import JSONDeserializer as TheirJSONDeserializer

    sr = mock_registry("json")
    codec = make_codec(schemas={1: {"type": "JSON", "schema": JSON_SCHEMA}})
    serialize = fieldcrypt.JSONSerializer(JSON_SCHEMA, sr, codec)
    headers = []
    stored = serialize(RECORD, ctx(headers))
    assert stored[:5] == b"\x00\x00\x00\x00\x01"
    for secret in PII:
        assert secret.encode() not in stored
    theirs = TheirJSONDeserializer(None, schema_registry_client=sr)(stored, ctx(headers))
    assert theirs["full_name"] == RECORD["full_name"] and theirs["email"] != RECORD["email"]
    assert fieldcrypt.JSONDeserializer(None, codec)(stored, ctx(headers)) == RECORD
