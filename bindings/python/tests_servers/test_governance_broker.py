"""The governance scenario of schemas/governance/README.md against a real broker: the policy
followed on a Kafka topic (`policy_source={"kafka": ...}`), signed revisions hot-reloaded, a
tampered one refused, per-subject keys in the Kafka key store and a shred seen by a fresh and a
running consumer.

The policy documents are published, and the key topic read back, with confluent-kafka in this
same process: its librdkafka and the one inside fieldcrypt's extension (symbols hidden) coexist."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, Producer

import fieldcrypt
from support import GOVERNANCE, GOVERNANCE_KMS, customer, in_clear, trusted_keys


def publish(kafka: str, topic: str, name: str) -> None:
    """A policy document as the security team's tooling publishes it: key = policy id."""
    producer = Producer({"bootstrap.servers": kafka})
    delivered = []
    producer.produce(topic, key=b"governance-demo", value=(GOVERNANCE / name).read_bytes(),
                     on_delivery=lambda err, msg: delivered.append(err))
    assert producer.flush(30) == 0
    assert delivered == [None]


def codec(kafka: str, policy_topic: str, key_topic: str, profile: str | None = None) -> fieldcrypt.Codec:
    return fieldcrypt.Codec(
        kms=GOVERNANCE_KMS,
        trusted_keys=trusted_keys(),
        policy_source={"kafka": {"bootstrap": kafka, "topic": policy_topic, "timeout": 20},
                       "policy_id": "governance-demo", "manual": True},
        key_store={"kafka": {"bootstrap": kafka, "topic": key_topic, "timeout": 20}},
        profile=profile,
    )


def record_keys(kafka: str, topic: str) -> list[str]:
    """The record keys of `topic`, read with confluent-kafka."""
    consumer = Consumer({"bootstrap.servers": kafka, "group.id": f"fieldcrypt-py-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest", "enable.partition.eof": True})
    consumer.subscribe([topic])
    keys: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            msg = consumer.poll(0.1)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    return keys
                pytest.fail(str(msg.error()))
            keys.append(msg.key().decode())
    finally:
        consumer.close()
    pytest.fail(f"{topic} not read to its end in 30 s ({len(keys)} records)")


def test_the_governance_scenario_through_kafka(kafka: str) -> None:
    run = uuid.uuid4().hex[:12]
    policy_topic, key_topic, topic = f"_fieldcrypt_policy-py-{run}", f"_fieldcrypt_keys-py-{run}", f"customers-py-{run}"

    # 1. Revision 1, signed: email encrypted, card not.
    publish(kafka, policy_topic, "policy-r1.signed.json")
    producer = codec(kafka, policy_topic, key_topic)
    status = producer.policy_status()
    assert (status.policy_id, status.revision, status.signed_by) == ("governance-demo", 1, "governance-test")
    assert status.source is not None and policy_topic in status.source
    assert in_clear(producer.encrypt(topic, customer("c-1")), "c-1") == ["card"]

    # 2. A tampered revision 2 is refused; revision 1 stays in force.
    publish(kafka, policy_topic, "policy-r2.tampered.json")
    with pytest.raises(fieldcrypt.PolicyError):
        producer.reload()
    status = producer.policy_status()
    assert (status.revision, status.rejections) == (1, 1)
    assert status.last_error is not None and status.last_error.kind == "policy"
    assert in_clear(producer.encrypt(topic, customer("c-1")), "c-1") == ["card"]

    # 3. The signed revision 2 loads without a restart: card is encrypted too.
    publish(kafka, policy_topic, "policy-r2.signed.json")
    assert producer.reload() is True
    assert producer.policy_status().revision == 2
    assert producer.reload() is False, "nothing new since"
    assert in_clear(producer.encrypt(topic, customer("c-1")), "c-1") == []

    # 4. Shredding c-2 through the producer's codec.
    records = {c: producer.encrypt(topic, customer(c)) for c in ("c-1", "c-2", "c-3")}
    running = codec(kafka, policy_topic, key_topic, "strict")
    assert running.policy_status().revision == 2
    for r in records.values():
        running.decrypt(topic, r.value, r.headers)
    assert producer.shred("c-2") >= 1
    fresh = codec(kafka, policy_topic, key_topic, "strict")
    for consumer in (fresh, running):
        deadline = time.monotonic() + 10
        for cid, r in records.items():
            if cid == "c-2":
                while True:
                    try:
                        consumer.decrypt(topic, r.value, r.headers)
                    except fieldcrypt.ShreddedError as e:
                        assert e.kind == "shredded"
                        break
                    assert time.monotonic() < deadline, "c-2 still decrypts 10 s after the shred"
                    time.sleep(0.05)
            else:
                out = consumer.decrypt(topic, r.value, r.headers)
                assert out.value is not None and f"{cid}@example.com".encode() in out.value

    # The key topic as confluent-kafka reads it: wrapped DEKs and the shred marker (subjects
    # hashed, docs/SHREDDING.md).
    keys = record_keys(kafka, key_topic)
    assert any(k.startswith("dek/") for k in keys) and any(k.startswith("shred/") for k in keys)
    assert not any("c-2" in k for k in keys)
