#!/usr/bin/env python3
"""The produce/consume matrix (xtests/README.md): every producer language X encrypts and produces
the standard payment record in four formats through its own Kafka client to the real broker,
with Apicurio for the schemas and OpenBao (Vault Transit) as the KMS; every consumer language Y
consumes and decrypts what each X produced. Writes xtests/out/matrix.md; exits 1 if any cell failed.

    xtests/matrix.py --peers DIR [--out DIR] [--languages rust,python,go,csharp,java]

DIR holds one launcher per language, `peer-LANG` (made by xtests/run.sh). Needs FIELDCRYPT_KAFKA,
FIELDCRYPT_REGISTRY (Apicurio's Confluent-compatible API), FIELDCRYPT_VAULT_KEK and
FIELDCRYPT_VAULT_TOKEN (scripts/servers.sh env, scripts/kms/openbao.sh env). Standard library only.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import struct
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LANGUAGES = ["rust", "python", "go", "csharp", "java"]
FORMATS = ["json", "avro", "protobuf", "json_schema"]
NAMES = {"rust": "Rust", "python": "Python", "go": "Go", "csharp": "C#", "java": "Java"}
PII = [b"jane.doe@example.com", b"123-45-6789", b"1600 Amphitheatre Parkway"]


def env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        sys.exit(f"matrix: {name} is not set (start the servers: xtests/run.sh does)")
    return value


def b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode()


def register(registry: str, subject: str, schema: str, schema_type: str, references: list[dict[str, Any]]) -> int:
    body = json.dumps({"schema": schema, "schemaType": schema_type, "references": references}).encode()
    request = urllib.request.Request(
        f"{registry}/subjects/{subject}/versions",
        data=body,
        headers={"Content-Type": "application/vnd.schemaregistry.v1+json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return int(json.load(response)["id"])


def framed(schema_id: int, payload: bytes, message_indexes: bytes = b"") -> bytes:
    return b"\x00" + struct.pack(">I", schema_id) + message_indexes + payload


def spec(run: str) -> dict[str, Any]:
    registry = env("FIELDCRYPT_REGISTRY")
    schemas = ROOT / "schemas"
    payment = schemas / "payment"
    avro_id = register(registry, f"{run}-payment-avro", (payment / "payment.avsc").read_text(), "AVRO", [])
    # The import name stays `confluent/meta.proto`; the subject is this run's own.
    register(registry, f"{run}-confluent-meta", (schemas / "confluent/meta.proto").read_text(), "PROTOBUF", [])
    meta = [{"name": "confluent/meta.proto", "subject": f"{run}-confluent-meta", "version": 1}]
    proto_id = register(registry, f"{run}-payment-proto", (payment / "payment.proto").read_text(), "PROTOBUF", meta)
    json_id = register(registry, f"{run}-payment-json", (payment / "payment.schema.json").read_text(), "JSON", [])

    # Compact, as JSON serializers write it (fieldcrypt gives JSON back without insignificant whitespace).
    plain_json = json.dumps(json.loads((payment / "payment.json").read_text()), separators=(",", ":")).encode()
    values = {
        "json": plain_json,
        "avro": framed(avro_id, (payment / "payment.avro.bin").read_bytes()),
        # Message indexes [1]: `Payment` is the second message of payment.proto.
        "protobuf": framed(proto_id, (payment / "payment.pb.bin").read_bytes(), b"\x02\x02"),
        "json_schema": framed(json_id, plain_json),
    }
    formats = {}
    for fmt, value in values.items():
        records = [
            {"key": b64(b"pay-1"), "value": b64(value), "headers": [["trace", b64(b"t-1")], ["nothing", None]]},
            {"key": None, "value": b64(value), "headers": []},
        ]
        if fmt == "json":
            records.append({"key": b64(b"pay-1"), "value": None, "headers": []})  # a tombstone
        formats[fmt] = records
    config = {"kms": {"vault": {"token": env("FIELDCRYPT_VAULT_TOKEN"), "plain_http": True}}, "registry": registry}
    policy = {
        "fieldcrypt_policy": 1,
        "id": "xtest-matrix",
        "revision": 1,
        "encrypt": [
            {
                "name": "payment-pii",
                "topics": [f"{run}-*"],
                "tags": ["PII"],
                "fields": ["email", "ssn", "address.street", "phone"],
                "key": env("FIELDCRYPT_VAULT_KEK"),
            }
        ],
    }
    return {"policy": policy, "producer_config": config, "consumer_config": config, "formats": formats}


def run_peer(peers: Path, language: str, args: list[str], log: Path) -> tuple[bool, str]:
    started = time.monotonic()
    with log.open("w") as out:
        try:
            code = subprocess.run([str(peers / f"peer-{language}"), *args], stdout=out, stderr=subprocess.STDOUT, timeout=180).returncode
        except subprocess.TimeoutExpired:
            code = -1
    took = time.monotonic() - started
    if code == 0:
        return True, f"{took:.1f}s"
    tail = log.read_text(errors="replace").strip().splitlines()[-3:]
    return False, f"exit {code} after {took:.1f}s: " + " / ".join(tail)


def check(spec_doc: dict[str, Any], out_file: Path) -> list[str]:
    """What is wrong with a consumer's output, per format; nothing when the cell passes."""
    problems = []
    got = json.loads(out_file.read_text())["formats"]
    for fmt, expected in spec_doc["formats"].items():
        records = got.get(fmt, [])
        if len(records) != len(expected):
            problems.append(f"{fmt}: {len(records)} of {len(expected)} records")
            continue
        for i, (r, want) in enumerate(zip(records, expected)):
            if r["decrypted"] != want:
                problems.append(f"{fmt}[{i}]: decrypted record differs")
            if want["value"] is None:
                continue
            raw = r["raw"]
            stored = base64.b64decode(raw["value"] or "")
            if not any(name == "fieldcrypt" for name, _ in raw["headers"]):
                problems.append(f"{fmt}[{i}]: stored without a fieldcrypt header")
            if any(secret in stored for secret in PII):
                problems.append(f"{fmt}[{i}]: PII stored in the clear")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peers", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=ROOT / "xtests" / "out")
    parser.add_argument("--languages", default=",".join(LANGUAGES))
    args = parser.parse_args()
    languages = args.languages.split(",")
    bootstrap = env("FIELDCRYPT_KAFKA")
    run = f"xt-{int(time.time())}-{os.getpid()}"
    work = args.out / "matrix"
    work.mkdir(parents=True, exist_ok=True)
    spec_doc = spec(run)
    spec_file = work / "spec.json"
    spec_file.write_text(json.dumps(spec_doc, indent=1))
    common = ["--bootstrap", bootstrap, "--spec", str(spec_file)]

    produced: dict[str, tuple[bool, str]] = {}
    for x in languages:
        produced[x] = run_peer(args.peers, x, ["produce", *common, "--topic-prefix", f"{run}-{x}"], work / f"produce-{x}.log")
        print(f"matrix: {NAMES[x]} produced: {'ok' if produced[x][0] else 'FAILED'} ({produced[x][1]})", flush=True)

    def consume(pair: tuple[str, str]) -> tuple[str, str, bool, str]:
        x, y = pair
        if not produced[x][0]:
            return x, y, False, f"{NAMES[x]} did not produce"
        out_file = work / f"{y}-from-{x}.json"
        ok, detail = run_peer(
            args.peers,
            y,
            ["consume", *common, "--topic-prefix", f"{run}-{x}", "--group", f"{run}-{y}-from-{x}", "--out", str(out_file)],
            work / f"consume-{y}-from-{x}.log",
        )
        if ok:
            problems = check(spec_doc, out_file)
            if problems:
                return x, y, False, "; ".join(problems)
        return x, y, ok, detail

    pairs = [(x, y) for x in languages for y in languages]
    cells: dict[tuple[str, str], tuple[bool, str]] = {}
    # Two at a time: the machine has two cores and each peer is mostly waiting on the broker.
    with ThreadPoolExecutor(max_workers=2) as pool:
        for x, y, ok, detail in pool.map(consume, pairs):
            cells[(x, y)] = (ok, detail)
            print(f"matrix: {NAMES[x]:>6} -> {NAMES[y]:<6} {'ok' if ok else 'FAILED: ' + detail}", flush=True)

    failed = [(x, y) for (x, y), (ok, _) in cells.items() if not ok]
    formats = ", ".join(f for f in FORMATS if f in spec_doc["formats"])
    lines = [
        "# fieldcrypt cross-language matrix",
        "",
        f"Run `{run}`: each producer (row) encrypted and produced {sum(len(r) for r in spec_doc['formats'].values())} records "
        f"({formats}) through its own Kafka client to Kafka at {bootstrap}; schemas in Apicurio, KEK in OpenBao "
        f"({spec_doc['policy']['encrypt'][0]['key']}). Each consumer (column) consumed and decrypted them all. "
        "A cell passes when every record decrypted to the producer's plaintext and every stored record carried the "
        "fieldcrypt header and no PII in the clear.",
        "",
        "| producer \\ consumer | " + " | ".join(NAMES[y] for y in languages) + " |",
        "|---|" + "---|" * len(languages),
    ]
    for x in languages:
        row = [("✅ " + formats.replace("json_schema", "json-schema")) if cells[(x, y)][0] else "❌ " + cells[(x, y)][1] for y in languages]
        lines.append(f"| **{NAMES[x]}** | " + " | ".join(row) + " |")
    lines += ["", f"{len(pairs) - len(failed)} of {len(pairs)} cells passed."]
    (args.out / "matrix.md").write_text("\n".join(lines) + "\n")
    print(f"matrix: {len(pairs) - len(failed)} of {len(pairs)} cells passed; table in {args.out / 'matrix.md'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
