"""Signed policies and hot reload from Python (schemas/governance/README.md), with a file policy
source: `policy_source=`, `trusted_keys=`, `Codec.reload()` and `Codec.policy_status()`. The
Kafka form of the same scenario is tests_servers/test_governance_broker.py."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import fieldcrypt
from support import GOVERNANCE, GOVERNANCE_KMS, customer, in_clear, trusted_keys

TOPIC = "customers-py"


def store(tmp_path: Path) -> dict[str, object]:
    """The per-subject keys of `customer_id` (the policy's `subject`) in a file key store."""
    return {"file": str(tmp_path / "keys.jsonl"), "refresh": 0}


def file_codec(path: Path, **kw) -> fieldcrypt.Codec:
    return fieldcrypt.Codec(
        kms=GOVERNANCE_KMS,
        key_store=store(path.parent),
        trusted_keys=trusted_keys(),
        policy_source={"file": str(path), "policy_id": "governance-demo", "manual": True},
        **kw,
    )


def test_a_file_policy_source_reloads_signed_revisions_and_refuses_a_tampered_one(tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    shutil.copy(GOVERNANCE / "policy-r1.signed.json", path)
    codec = file_codec(path)
    status = codec.policy_status()
    assert isinstance(status, fieldcrypt.PolicyStatus)
    assert (status.policy_id, status.revision, status.signed_by) == ("governance-demo", 1, "governance-test")
    assert status.source is not None and str(path) in status.source
    assert (status.loads, status.rejections, status.fetch_errors, status.last_error) == (1, 0, 0, None)
    assert in_clear(codec.encrypt(TOPIC, customer("c-1")), "c-1") == ["card"]
    assert codec.reload() is False, "the same document again: nothing new"

    # Revision 2 with its text changed after signing: refused, revision 1 stays in force.
    shutil.copy(GOVERNANCE / "policy-r2.tampered.json", path)
    with pytest.raises(fieldcrypt.PolicyError) as info:
        codec.reload()
    assert info.value.kind == "policy"
    status = codec.policy_status()
    assert (status.revision, status.rejections, status.loads) == (1, 1, 1)
    assert isinstance(status.last_error, fieldcrypt.PolicyError)
    assert status.last_error.kind == "policy" and str(status.last_error) == str(info.value)
    assert in_clear(codec.encrypt(TOPIC, customer("c-1")), "c-1") == ["card"]

    # The signed revision 2 loads without a new codec: card is encrypted too.
    shutil.copy(GOVERNANCE / "policy-r2.signed.json", path)
    assert codec.reload() is True
    status = codec.policy_status()
    assert (status.revision, status.loads, status.rejections, status.signed_by) == (2, 2, 1, "governance-test")
    assert "revision=2" in repr(codec) and "revision=2" in repr(status)
    sealed = codec.encrypt(TOPIC, customer("c-1"))
    assert in_clear(sealed, "c-1") == []
    # Through the batch and serializer paths as well, and back.
    [batched] = codec.encrypt_batch(TOPIC, [(customer("c-2"), [])])
    assert in_clear(batched, "c-2") == []
    opened = codec.decrypt(TOPIC, sealed.value, sealed.headers)
    assert opened.value is not None and b"4111-c-1" in opened.value and b"c-1@example.com" in opened.value


def test_a_missing_source_file_is_a_fetch_error_and_the_policy_stays(tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    shutil.copy(GOVERNANCE / "policy-r1.signed.json", path)
    codec = file_codec(path)
    path.unlink()
    with pytest.raises(fieldcrypt.Error) as info:
        codec.reload()
    status = codec.policy_status()
    assert (status.revision, status.fetch_errors, status.rejections) == (1, 1, 0)
    assert status.last_error is not None and status.last_error.kind == info.value.kind
    assert in_clear(codec.encrypt(TOPIC, customer("c-1")), "c-1") == ["card"]


def test_a_signed_policy_given_directly(tmp_path: Path) -> None:
    signed = (GOVERNANCE / "policy-r2.signed.json").read_text()
    codec = fieldcrypt.Codec(signed, kms=GOVERNANCE_KMS, key_store=store(tmp_path), trusted_keys=trusted_keys())
    status = codec.policy_status()
    assert (status.policy_id, status.revision, status.signed_by, status.source) == (
        "governance-demo", 2, "governance-test", None)
    assert (status.loads, status.rejections, status.fetch_errors, status.last_error) == (1, 0, 0, None)
    assert in_clear(codec.encrypt(TOPIC, customer("c-1")), "c-1") == []
    # A path works as well; a tampered envelope is refused.
    assert fieldcrypt.Codec(GOVERNANCE / "policy-r1.signed.json", kms=GOVERNANCE_KMS, key_store=store(tmp_path),
                            trusted_keys=trusted_keys()).policy_status().revision == 1
    with pytest.raises(fieldcrypt.PolicyError):
        fieldcrypt.Codec(GOVERNANCE / "policy-r2.tampered.json", kms=GOVERNANCE_KMS, key_store=store(tmp_path), trusted_keys=trusted_keys())
    # With trusted keys, an unsigned policy is refused.
    with pytest.raises(fieldcrypt.PolicyError):
        fieldcrypt.Codec(GOVERNANCE / "policy-r1.json", kms=GOVERNANCE_KMS, key_store=store(tmp_path), trusted_keys=trusted_keys())


def test_a_fixed_policy_has_nothing_to_reload(tmp_path: Path) -> None:
    codec = fieldcrypt.Codec(GOVERNANCE / "policy-r1.json", kms=GOVERNANCE_KMS, key_store=store(tmp_path))
    with pytest.raises(fieldcrypt.ConfigError) as info:
        codec.reload()
    assert type(info.value) is fieldcrypt.ConfigError and info.value.kind == "config"
    status = codec.policy_status()
    assert (status.policy_id, status.revision, status.signed_by, status.source, status.loads) == (
        "governance-demo", 1, None, None, 1)


def test_policy_and_source_configuration_errors(tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    shutil.copy(GOVERNANCE / "policy-r1.signed.json", path)
    source = {"file": str(path), "manual": True}
    with pytest.raises(fieldcrypt.ConfigError):
        fieldcrypt.Codec(kms=GOVERNANCE_KMS)  # no policy, no source
    with pytest.raises(fieldcrypt.ConfigError):
        fieldcrypt.Codec(GOVERNANCE / "policy-r1.json", kms=GOVERNANCE_KMS, policy_source=source,
                         trusted_keys=trusted_keys())
    with pytest.raises(fieldcrypt.ConfigError):
        fieldcrypt.Codec(kms=GOVERNANCE_KMS, policy_source=source)  # neither trusted_keys nor allow_unsigned
    with pytest.raises(fieldcrypt.ConfigError):
        fieldcrypt.Codec(kms=GOVERNANCE_KMS, policy_source=source, trusted_keys={})
    with pytest.raises(fieldcrypt.ConfigError):
        fieldcrypt.Codec(kms=GOVERNANCE_KMS, policy_source={**source, "fiel": "x"}, trusted_keys=trusted_keys())
    # allow_unsigned (development): a plain policy file is followed.
    shutil.copy(GOVERNANCE / "policy-r1.json", path)
    codec = fieldcrypt.Codec(kms=GOVERNANCE_KMS, key_store=store(tmp_path),
                             policy_source={**source, "allow_unsigned": True})
    assert (codec.policy_status().revision, codec.policy_status().signed_by) == (1, None)


def test_the_wheel_has_the_kafka_client() -> None:
    """The Kafka options are not refused as "no Kafka client in this build": the wheel is built
    with the `kafka` feature. (Against a port nothing listens on, the key store fails to reach
    its topic instead.)"""
    # create_topic False: the topic creation's admin request waits librdkafka's own request
    # timeout (60 s) for an unreachable broker; the metadata fetch honours `timeout`.
    unreachable = {"bootstrap": "127.0.0.1:1", "topic": "t", "timeout": 1, "create_topic": False}
    with pytest.raises(fieldcrypt.Error) as info:
        fieldcrypt.Codec(GOVERNANCE / "policy-r1.json", kms=GOVERNANCE_KMS, key_store={"kafka": unreachable})
    assert "no Kafka client" not in str(info.value)
    # Its options are still checked.
    with pytest.raises(fieldcrypt.ConfigError, match="bootstrap"):
        fieldcrypt.Codec(GOVERNANCE / "policy-r1.json", kms=GOVERNANCE_KMS, key_store={"kafka": {"topic": "t"}})
