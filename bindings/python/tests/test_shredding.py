"""Per-subject keys and crypto-shredding from Python, with the file key store (docs/SHREDDING.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import fieldcrypt

POLICY = {
    "fieldcrypt_policy": 1,
    "id": "py-shred",
    "encrypt": [
        {"name": "r", "topics": ["t"], "fields": ["email"], "key": "local://k", "subject": "customer_id"}
    ],
    "profiles": {"strict": {"decrypt": [{"topics": ["*"]}], "otherwise": "error"}},
}


def codec(store: Path, profile: str | None = None) -> fieldcrypt.Codec:
    return fieldcrypt.Codec(
        POLICY,
        kms={"local": {"secrets": {"k": b"py"}}},
        key_store={"file": str(store), "refresh": 0},
        profile=profile,
    )


def test_shred_one_subject_leaves_the_others(tmp_path: Path) -> None:
    store = tmp_path / "keys.jsonl"
    producer = codec(store)
    records = {
        c: producer.encrypt("t", json.dumps({"customer_id": c, "email": f"{c}@example.com"}).encode())
        for c in ("c-1", "c-2")
    }
    consumer = codec(store, "strict")
    producer.rotate_subject("c-1")
    assert producer.shred("c-1") == 2
    with pytest.raises(fieldcrypt.ShreddedError) as info:
        consumer.decrypt("t", records["c-1"].value, records["c-1"].headers)
    assert info.value.kind == "shredded"
    out = consumer.decrypt("t", records["c-2"].value, records["c-2"].headers)
    assert out.value is not None and b"c-2@example.com" in out.value


def test_shred_needs_a_key_store() -> None:
    plain = fieldcrypt.Codec({**POLICY, "encrypt": []}, kms={"local": {}})
    with pytest.raises(fieldcrypt.ConfigError):
        plain.shred("c-1")
