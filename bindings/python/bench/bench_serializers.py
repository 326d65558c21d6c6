"""Serializer throughput on the standard workload (/work/shared/bench or schemas/payment: the
11-field payment record, 4 PII-tagged fields), records/s, one thread:

  (a) confluent-kafka's AvroSerializer / AvroDeserializer with an ENCRYPT rule on the PII tag
      (mock:// registry and DEK registry, its local-kms);
  (b) confluent-kafka's plain AvroSerializer / AvroDeserializer;
  (c) (b) wrapped in fieldcrypt.kafka.EncryptingSerializer / DecryptingDeserializer;
  (d) fieldcrypt.AvroSerializer / AvroDeserializer (dict -> Avro -> encrypted in one Rust call).

Method: a plain timeit-style loop (time.perf_counter), per figure a warm-up of --warmup calls,
then --rounds rounds of --number calls; the median round is reported. Every serialize call, for
every variant, gets its own deep copy of the record (Confluent's rule executor mutates the
caller's dict) and a new SerializationContext with a new headers list, all made before the
round's clock starts (so the copies are not timed). Deserialize calls reuse one record.

  $HOME/.cache/fieldcrypt/venv-python-binding/bin/python bindings/python/bench/bench_serializers.py
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

from confluent_kafka.schema_registry import Rule, RuleKind, RuleMode, RuleParams, RuleSet, Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.rule_registry import RuleRegistry
from confluent_kafka.schema_registry.rules.encryption.encrypt_executor import FieldEncryptionExecutor
from confluent_kafka.schema_registry.rules.encryption.localkms.local_driver import LocalKmsDriver
from confluent_kafka.serialization import MessageField, SerializationContext

import fieldcrypt
from fieldcrypt.kafka import DecryptingDeserializer, EncryptingSerializer

ROOT = Path(__file__).resolve().parents[3]
TOPIC = "payments"


def workload_dir() -> Path:
    shared = Path("/work/shared/bench")
    return shared if (shared / "payment.avsc").exists() else ROOT / "schemas" / "payment"


def measure(fn: Callable[[], Any], number: int, rounds: int, warmup: int) -> float:
    """Median seconds per call."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - start) / number)
    return statistics.median(times)


def measure_serialize(ser: Any, record: dict[str, Any], number: int, rounds: int, warmup: int) -> float:
    """Median seconds per call; every call gets its own deep copy of the record and a new
    context with a new headers list, made before the round's clock starts."""

    def fresh(n: int) -> list[tuple[dict[str, Any], SerializationContext]]:
        return [(copy.deepcopy(record), SerializationContext(TOPIC, MessageField.VALUE, [])) for _ in range(n)]

    for obj, ctx in fresh(warmup):
        ser(obj, ctx)
    times = []
    for _ in range(rounds):
        calls = fresh(number)
        start = time.perf_counter()
        for obj, ctx in calls:
            ser(obj, ctx)
        times.append((time.perf_counter() - start) / number)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--number", type=int, default=2000, help="calls per round (default 2000)")
    ap.add_argument("--rounds", type=int, default=7, help="rounds; the median is reported (default 7)")
    ap.add_argument("--warmup", type=int, default=500, help="warm-up calls (default 500)")
    args = ap.parse_args()

    d = workload_dir()
    avsc = (d / "payment.avsc").read_text()
    record = json.loads((d / "payment.json").read_text())

    # Rule executors in registries of their own: the global one would make every serializer,
    # the plain ones too, configure (and run) the encryption executor.
    LocalKmsDriver.register()

    # One executor for (a)'s serializer and deserializer: it holds the (mock) DEK registry client.
    rules = RuleRegistry()
    rules.register_executor(FieldEncryptionExecutor())

    # (a) Confluent with an ENCRYPT rule on PII, its mock registry and local KMS.
    sr_rule = SchemaRegistryClient.new_client({"url": "mock://fieldcrypt-bench-rule"})
    rule = Rule(
        "encrypt-pii", "", RuleKind.TRANSFORM, RuleMode.WRITEREAD, "ENCRYPT", ["PII"],
        RuleParams({"encrypt.kek.name": "bench-kek", "encrypt.kms.type": "local-kms",
                    "encrypt.kms.key.id": "bench-key"}),
        None, None, "ERROR,ERROR", False,
    )
    sr_rule.register_schema(f"{TOPIC}-value", Schema(avsc, "AVRO", [], None, RuleSet(None, [rule])))
    rule_conf = {"secret": "bench-secret"}
    a_ser = AvroSerializer(sr_rule, avsc, conf={"auto.register.schemas": False, "use.latest.version": True},
                           rule_conf=rule_conf, rule_registry=rules)
    a_de = AvroDeserializer(sr_rule, rule_conf=rule_conf, rule_registry=rules)

    # (b) Confluent plain.
    sr = SchemaRegistryClient.new_client({"url": "mock://fieldcrypt-bench-plain"})
    schema_id = sr.register_schema(f"{TOPIC}-value", Schema(avsc, "AVRO"))
    b_ser = AvroSerializer(sr, avsc, conf={"auto.register.schemas": False, "use.latest.version": True},
                           rule_registry=RuleRegistry())
    b_de = AvroDeserializer(sr, rule_registry=RuleRegistry())

    # The fieldcrypt codec: the project's demo policy (rule payment-pii: the PII tag), local KMS.
    codec = fieldcrypt.Codec(
        ROOT / "schemas" / "policies" / "demo.json",
        kms={"local": {"key_file": ROOT / "schemas" / "keys" / "local-dev.json"}},
        schemas={schema_id: {"type": "AVRO", "schema": avsc}},
    )
    # (c) (b) wrapped in the adapters.
    c_ser = EncryptingSerializer(b_ser, codec)
    c_de = DecryptingDeserializer(b_de, codec)
    # (d) the drop-in.
    d_ser = fieldcrypt.AvroSerializer(sr, avsc, codec)
    d_de = fieldcrypt.AvroDeserializer(sr, None, codec)

    variants = {
        "a": ("confluent AvroSerializer + ENCRYPT rule", a_ser, a_de),
        "b": ("confluent AvroSerializer (plain)", b_ser, b_de),
        "c": ("(b) in fieldcrypt.kafka adapters", c_ser, c_de),
        "d": ("fieldcrypt.AvroSerializer (drop-in)", d_ser, d_de),
    }

    results: dict[str, tuple[float, float]] = {}
    for key, (name, ser, de) in variants.items():
        # Check the round trip first, and keep one serialized record (with its headers) to read.
        headers: list[tuple[str, bytes | None]] = []
        data = ser(copy.deepcopy(record), SerializationContext(TOPIC, MessageField.VALUE, headers))
        back = de(data, SerializationContext(TOPIC, MessageField.VALUE, list(headers)))
        assert back == record, f"({key}) round trip failed: {back}"
        if key != "b":
            assert b"123-45-6789" not in data, f"({key}) left the SSN in clear"
        s = measure_serialize(ser, record, args.number, args.rounds, args.warmup)
        dctx = SerializationContext(TOPIC, MessageField.VALUE, list(headers))
        t = measure(lambda: de(data, dctx), args.number, args.rounds, args.warmup)
        results[key] = (s, t)

    print(f"workload: {d}/payment.avsc + payment.json; python {sys.version.split()[0]}; "
          f"median of {args.rounds} rounds x {args.number} calls after {args.warmup} warm-up calls")
    print(f"{'':4}{'variant':44}{'serialize/s':>13}{'us':>8}{'deserialize/s':>15}{'us':>8}")
    for key, (name, _, _) in variants.items():
        s, t = results[key]
        print(f"({key}) {name:44}{1 / s:13,.0f}{s * 1e6:8.2f}{1 / t:15,.0f}{t * 1e6:8.2f}")

    def ratio(x: str, y: str) -> str:
        return (f"serialize {results[y][0] / results[x][0]:.2f}x, "
                f"deserialize {results[y][1] / results[x][1]:.2f}x")

    print("ratios (throughput of the first over the second):")
    print(f"  (c)/(b): {ratio('c', 'b')}   target >= 0.8")
    print(f"  (d)/(a): {ratio('d', 'a')}   target >= 30")
    print(f"  (d)/(b): {ratio('d', 'b')}   target > 1")


if __name__ == "__main__":
    main()
