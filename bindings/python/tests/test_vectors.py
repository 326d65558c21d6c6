"""The cross-language test vectors (xtests/README.md, "Test vectors"), run by the Python binding.

For every `xtests/vectors/v*.json`:

- each positive case decrypts its `encrypted` record with a codec of `configs[decrypt_config]`
  and must give `decrypted` exactly (key, value, headers in order);
- each negative case must fail with a `fieldcrypt.Error` of the stated `kind`;
- each positive case's `plaintext` is encrypted with a codec of `configs[encrypt_config]`; with
  FIELDCRYPT_XTEST_OUT set, the results go to `$FIELDCRYPT_XTEST_OUT/encrypted-python.json` for
  the Rust checker (`cargo run -p fieldcrypt-xtests --bin check-encrypted -- FILE`). Deterministic
  (AES-256-SIV) cases must also give the vector's encrypted key and value byte for byte.

A codec is made of `policies[...]` and `configs[...]` as they are: the configuration document's
options are `Codec`'s keyword arguments. No vector file at all is a failure, never a skip.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import pytest

import fieldcrypt

ROOT = Path(__file__).resolve().parents[3]
VECTORS = ROOT / "xtests" / "vectors"
RESULTS_NAME = "encrypted-python.json"

Headers = list[tuple[str, Optional[bytes]]]
Parts = tuple[Optional[bytes], Optional[bytes], Headers]  # key, value, headers


def _load(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return doc


FILES: list[tuple[str, dict[str, Any]]] = [(p.name, _load(p)) for p in sorted(VECTORS.glob("v*.json"))]


def _params(section: str) -> list[Any]:
    return [
        pytest.param(name, doc, case, id=f"{Path(name).stem}:{case['id']}")
        for name, doc in FILES
        for case in doc.get(section, [])
    ]


def unb64(s: str | None) -> bytes | None:
    return None if s is None else base64.b64decode(s, validate=True)


def b64(b: bytes | None) -> str | None:
    return None if b is None else base64.b64encode(b).decode("ascii")


def parts(record: dict[str, Any]) -> Parts:
    """A vector RECORD as (key, value, [(name, bytes | None), ...])."""
    headers = [(str(name), unb64(value)) for name, value in record["headers"]]
    return unb64(record["key"]), unb64(record["value"]), headers


def record_json(r: fieldcrypt.Record) -> dict[str, Any]:
    return {"key": b64(r.key), "value": b64(r.value), "headers": [[n, b64(v)] for n, v in r.headers]}


def codec(doc: dict[str, Any], policy: str, config: str) -> fieldcrypt.Codec:
    """A codec of `policies[policy]` and `configs[config]`: the configuration document's options
    are Codec's keyword arguments (schema ids as string keys, as in the document)."""
    return fieldcrypt.Codec(doc["policies"][policy], **doc["configs"][config])


def decrypt(c: fieldcrypt.Codec, topic: str, record: dict[str, Any]) -> Parts:
    key, value, headers = parts(record)
    out = c.decrypt(topic, value, headers, key=key)
    return out.key, out.value, out.headers


def test_vector_files_exist() -> None:
    assert FILES, f"no test vector files (v*.json) in {VECTORS}"
    for name, doc in FILES:
        assert doc.get("format") == "fieldcrypt-test-vectors", f"{name}: format is {doc.get('format')!r}"
        assert isinstance(doc.get("version"), int), f"{name}: no version"
        assert doc.get("cases"), f"{name}: no positive cases"


@pytest.mark.parametrize(("name", "doc", "case"), _params("cases"))
def test_decrypt(name: str, doc: dict[str, Any], case: dict[str, Any]) -> None:
    got = decrypt(codec(doc, case["policy"], case["decrypt_config"]), case["topic"], case["encrypted"])
    assert got == parts(case["decrypted"])


@pytest.mark.parametrize(("name", "doc", "case"), _params("negative"))
def test_negative(name: str, doc: dict[str, Any], case: dict[str, Any]) -> None:
    c = codec(doc, case["policy"], case["decrypt_config"])
    with pytest.raises(fieldcrypt.Error) as raised:
        decrypt(c, case["topic"], case["record"])
    assert raised.value.kind == case["error"], f"{type(raised.value).__name__}: {raised.value}"


@pytest.fixture(scope="module")
def encrypt_results() -> Iterator[dict[tuple[str, str], dict[str, Any]]]:
    """The encrypt results by (vector file, case id); written out once the module's tests ran
    (in the vector files' order) when FIELDCRYPT_XTEST_OUT is set."""
    results: dict[tuple[str, str], dict[str, Any]] = {}
    yield results
    out = os.environ.get("FIELDCRYPT_XTEST_OUT")
    if not out:
        return
    ordered = [
        {"vectors": name, "id": case["id"], "record": results[(name, case["id"])]}
        for name, doc in FILES
        for case in doc.get("cases", [])
        if (name, case["id"]) in results
    ]
    Path(out).mkdir(parents=True, exist_ok=True)
    document = {"format": "fieldcrypt-test-vector-results", "version": 1, "language": "python", "results": ordered}
    (Path(out) / RESULTS_NAME).write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")


@pytest.mark.parametrize(("name", "doc", "case"), _params("cases"))
def test_encrypt(
    name: str, doc: dict[str, Any], case: dict[str, Any], encrypt_results: dict[tuple[str, str], dict[str, Any]]
) -> None:
    key, value, headers = parts(case["plaintext"])
    sealed = codec(doc, case["policy"], case["encrypt_config"]).encrypt(case["topic"], value, headers, key=key)
    encrypt_results[(name, case["id"])] = record_json(sealed)
    if case.get("deterministic"):
        want_key, want_value, _ = parts(case["encrypted"])
        assert (sealed.key, sealed.value) == (want_key, want_value), "deterministic: key and value must equal the vector's"
