"""A real SerializingProducer and DeserializingConsumer through Kafka, with Confluent's
AvroSerializer / JSONSerializer (schemas auto-registered in the registry) wrapped by
fieldcrypt.kafka's adapters, and the codec fetching writer schemas from the same registry.

What the broker stores is checked with a plain Consumer: PII-tagged fields are ciphertext, the
record has the `fieldcrypt` header, and Confluent's deserializer alone still reads it."""

import json
import uuid

import pytest
from confluent_kafka import Consumer, SerializingProducer, DeserializingConsumer
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
from confluent_kafka.serialization import MessageField, SerializationContext, StringSerializer

import fieldcrypt
from fieldcrypt.kafka import DecryptingDeserializer, EncryptingSerializer
from support import KEYS, PAYMENT, PII, POLICY

# Subjects `<topic>-value`: the default ASSOCIATED strategy asks for an endpoint Apicurio lacks.
SERDE_CONF = {"subject.name.strategy.type": "TOPIC"}
RECORDS = 5


def records():
    base = json.loads((PAYMENT / "payment.json").read_text())
    out = []
    for i in range(RECORDS):
        r = dict(base, id=f"{base['id']}-{i}", customer_id=base["customer_id"] + i)
        if i == 1:
            r["phone"] = None
        out.append(r)
    return out


def create_topic(kafka, topic):
    admin = AdminClient({"bootstrap.servers": kafka})
    for future in admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)]).values():
        future.result(timeout=60)


def consume(consumer, topic, n):
    consumer.subscribe([topic])
    out = []
    try:
        for _ in range(600):  # at most ~60 s
            msg = consumer.poll(0.1)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            out.append(msg)
            if len(out) == n:
                return out
    finally:
        consumer.close()
    pytest.fail(f"consumed {len(out)} of {n} records from {topic}")


def consumer_conf(kafka):
    return {"bootstrap.servers": kafka, "group.id": f"fieldcrypt-py-{uuid.uuid4()}", "auto.offset.reset": "earliest"}


@pytest.mark.parametrize("fmt", ["avro", "json"])
def test_producer_to_consumer_through_kafka(kafka, registry_url, fmt):
    topic = f"payments-py-{fmt}-{uuid.uuid4()}"
    create_topic(kafka, topic)
    sr = SchemaRegistryClient({"url": registry_url, "timeout": 30})
    if fmt == "avro":
        serializer = AvroSerializer(sr, (PAYMENT / "payment.avsc").read_text(),
                                    conf={**SERDE_CONF, "auto.register.schemas": True})
        deserializer = AvroDeserializer(sr, conf=SERDE_CONF)
    else:
        serializer = JSONSerializer((PAYMENT / "payment.schema.json").read_text(), sr,
                                    conf={**SERDE_CONF, "auto.register.schemas": True})
        deserializer = JSONDeserializer(None, schema_registry_client=sr, conf=SERDE_CONF)
    codec = fieldcrypt.Codec(POLICY, kms={"local": {"key_file": KEYS}}, registry={"url": registry_url, "timeout": 30})

    producer = SerializingProducer({
        "bootstrap.servers": kafka,
        "key.serializer": StringSerializer(),
        "value.serializer": EncryptingSerializer(serializer, codec),
    })
    sent = records()
    delivered = []
    for i, record in enumerate(sent):
        producer.produce(topic, key=f"k{i}", value=record, headers=[("source", b"python-binding")],
                         on_delivery=lambda err, msg: delivered.append(err))
    assert producer.flush(60) == 0
    assert delivered == [None] * RECORDS

    # What the broker holds: ciphertext where the schema tags PII, the fieldcrypt header.
    stored = consume(Consumer(consumer_conf(kafka)), topic, RECORDS)
    for msg, record in zip(stored, sent):
        headers = dict(msg.headers())
        assert headers["source"] == b"python-binding" and headers["fieldcrypt"]
        for secret in PII:
            assert secret.encode() not in msg.value()
        # Confluent's deserializer alone reads the encrypted record: same schema, same id.
        encrypted = deserializer(msg.value(), SerializationContext(topic, MessageField.VALUE, msg.headers()))
        assert encrypted["full_name"] == record["full_name"] and encrypted["email"] != record["email"]

    # A decrypting consumer gets the records back as they were produced.
    consumer = DeserializingConsumer({**consumer_conf(kafka), "value.deserializer": DecryptingDeserializer(deserializer, codec)})
    received = consume(consumer, topic, RECORDS)
    assert [m.value() for m in received] == sent
    assert [m.key() for m in received] == [f"k{i}".encode() for i in range(RECORDS)]

    # A consumer without the KEK sees ciphertext (its profile's fallback), not an error.
    blind = fieldcrypt.Codec(POLICY, kms={}, registry=registry_url)
    consumer = DeserializingConsumer({**consumer_conf(kafka), "value.deserializer": DecryptingDeserializer(deserializer, blind)})
    withheld = consume(consumer, topic, RECORDS)
    assert withheld[0].value()["email"] != sent[0]["email"]
    assert blind.stats()["fields_withheld"] > 0
