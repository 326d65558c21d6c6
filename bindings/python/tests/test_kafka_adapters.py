"""fieldcrypt.kafka's adapters around confluent-kafka's serializers, with confluent-kafka's own
SerializationContext as SerializingProducer / DeserializingConsumer build it, and Confluent's
AvroSerializer / JSONSerializer against its in-memory mock registry. (The same through a real
broker and registry: tests_servers/.)"""

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
from confluent_kafka.serialization import (
    MessageField,
    SerializationContext,
    SerializationError,
    StringDeserializer,
    StringSerializer,
)

import fieldcrypt
from fieldcrypt.kafka import DecryptingDeserializer, EncryptingSerializer
from support import CUSTOMER, PAYMENT, PII, make_codec

SERDE_CONF = {"auto.register.schemas": True, "subject.name.strategy.type": "TOPIC"}


def value_ctx(topic, headers):
    return SerializationContext(topic, MessageField.VALUE, headers)


def test_string_serializer_round_trip():
    codec = make_codec()
    serialize = EncryptingSerializer(StringSerializer(), codec)
    deserialize = DecryptingDeserializer(StringDeserializer(), codec)
    text = json.dumps(CUSTOMER, separators=(",", ":"))
    headers = [("trace", b"t-1")]
    ctx = value_ctx("customers", headers)
    stored = serialize(text, ctx)
    assert b"hunter2" not in stored
    assert ctx.headers is headers, "the very list produce() will send"
    assert [n for n, _ in headers] == ["trace", "fieldcrypt"]
    consumed = list(headers)  # what the consumer's msg.headers() gives
    assert deserialize(stored, value_ctx("customers", consumed)) == text
    assert consumed == headers, "the deserializer does not change the record's headers"


def test_dict_headers_and_raw_bytes():
    codec = make_codec()
    headers = {"trace": "t-1"}
    stored = EncryptingSerializer(None, codec)(json.dumps(CUSTOMER).encode(), value_ctx("customers", headers))
    assert set(headers) == {"trace", "fieldcrypt"}
    plain = DecryptingDeserializer(None, codec)(stored, value_ctx("customers", list(headers.items())))
    assert json.loads(plain) == CUSTOMER


def test_without_headers_the_serializer_refuses_rather_than_lose_the_header():
    serialize = EncryptingSerializer(StringSerializer(), make_codec())
    with pytest.raises(SerializationError, match="headers=\\[\\]"):
        serialize(json.dumps(CUSTOMER), value_ctx("customers", None))
    with pytest.raises(SerializationError):
        serialize(json.dumps(CUSTOMER), None)
    # Nothing to encrypt, nothing to add: no headers needed.
    assert serialize("plain", value_ctx("audit", None)) == b"plain"
    # A headers list reused from an earlier produce() already has a fieldcrypt header.
    headers = []
    serialize(json.dumps(CUSTOMER), value_ctx("customers", headers))
    with pytest.raises(fieldcrypt.RecordError):
        serialize(json.dumps(CUSTOMER), value_ctx("customers", headers))


def test_key_field():
    policy = {"fieldcrypt_policy": 1, "id": "keys",
              "encrypt": [{"name": "k", "topics": ["orders"], "part": "key", "fields": ["customer"],
                           "key": "local://k", "algorithm": "AES256_SIV"}]}
    codec = fieldcrypt.Codec(policy, kms={"local": {"secrets": {"k": "dev"}}})
    headers = []
    key = '{"customer":"ada@example.com"}'
    ctx = SerializationContext("orders", MessageField.KEY, headers)
    stored = EncryptingSerializer(StringSerializer(), codec)(key, ctx)
    assert b"ada@example.com" not in stored and [n for n, _ in headers] == ["fieldcrypt"]
    back = DecryptingDeserializer(StringDeserializer(), codec)(stored, SerializationContext("orders", MessageField.KEY, headers))
    assert back == key


class Recorder:
    def __init__(self):
        self.calls = []

    def __call__(self, obj, ctx):
        return obj

    def set_cluster_id_resolver(self, resolver):
        self.calls.append(("resolver", resolver))

    def close(self):
        self.calls.append(("close",))


def test_hooks_are_forwarded():
    inner = Recorder()
    for adapter in (EncryptingSerializer(inner, make_codec()), DecryptingDeserializer(inner, make_codec())):
        adapter.set_cluster_id_resolver(print)
        adapter.close()
    assert inner.calls == [("resolver", print), ("close",)] * 2
    # Plain callables have neither: nothing happens.
    EncryptingSerializer(lambda o, c: o, make_codec()).close()


def mock_registry():
    return SchemaRegistryClient.new_client({"url": "mock://fieldcrypt-tests"})


def registered(sr, serializer, topic, record):
    """Serializes once (registering the schema) and returns the schema id in the frame."""
    frame = serializer(record, value_ctx(topic, []))
    return struct.unpack(">I", frame[1:5])[0]


@pytest.mark.parametrize("fmt", ["avro", "json"])
def test_confluent_schema_serializers(fmt):
    record = json.loads((PAYMENT / "payment.json").read_text())
    sr = mock_registry()
    topic = f"payments-{fmt}"
    if fmt == "avro":
        text = (PAYMENT / "payment.avsc").read_text()
        inner = AvroSerializer(sr, text, conf=SERDE_CONF)
        reader = AvroDeserializer(sr)
        schema_type = "AVRO"
    else:
        text = (PAYMENT / "payment.schema.json").read_text()
        inner = JSONSerializer(text, sr, conf=SERDE_CONF)
        reader = JSONDeserializer(None, schema_registry_client=sr)
        schema_type = "JSON"
    schema_id = registered(sr, inner, topic, record)
    codec = make_codec(schemas={schema_id: {"type": schema_type, "schema": text}})

    headers = []
    stored = EncryptingSerializer(inner, codec)(record, value_ctx(topic, headers))
    for secret in PII:
        assert secret.encode() not in stored
    # Still valid under the writer schema: Confluent's deserializer reads the encrypted record.
    encrypted = reader(stored, value_ctx(topic, headers))
    assert encrypted["full_name"] == record["full_name"] and encrypted["email"] != record["email"]
    back = DecryptingDeserializer(reader, codec)(stored, value_ctx(topic, list(headers)))
    assert back == record


def test_fieldcrypt_imports_without_confluent_kafka():
    code = ("import sys; sys.modules['confluent_kafka'] = None\n"
            "import fieldcrypt, fieldcrypt.kafka\n"
            "s = fieldcrypt.kafka.EncryptingSerializer(None, None)\n"
            "try:\n    s(b'x', None)\nexcept ImportError:\n    print('lazy')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path("/"))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "lazy", "confluent-kafka is imported only when an adapter needs it"
