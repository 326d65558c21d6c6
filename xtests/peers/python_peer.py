"""The Python peer of the produce/consume matrix (xtests/README.md, "The matrix").

    python_peer.py produce --bootstrap HOST:PORT --spec SPEC.json --topic-prefix PREFIX
    python_peer.py consume --bootstrap HOST:PORT --spec SPEC.json --topic-prefix PREFIX --group GROUP --out OUT.json

confluent-kafka-python's plain Producer / Consumer (bytes in, bytes out: no serializers) and
fieldcrypt.Codec; the records of SPEC.json are already serialized. Run it with the venv of
bindings/python/run-tests.sh (`run-tests.sh xtest-peer OUTDIR` writes a launcher). Any failure:
a message on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any, NoReturn, Optional, Union

from confluent_kafka import Consumer, KafkaError, Message, Producer

import fieldcrypt

FORMATS = ("json", "avro", "protobuf", "json_schema")
CONSUME_TIMEOUT_S = 60.0
FLUSH_TIMEOUT_S = 60.0

Headers = list[tuple[str, Optional[bytes]]]


class PeerError(Exception):
    pass


def fail(message: str) -> NoReturn:
    raise PeerError(message)


def unb64(s: str | None) -> bytes | None:
    return None if s is None else base64.b64decode(s, validate=True)


def b64(b: bytes | None) -> str | None:
    return None if b is None else base64.b64encode(b).decode("ascii")


def record_json(key: bytes | None, value: bytes | None, headers: Headers) -> dict[str, Any]:
    return {"key": b64(key), "value": b64(value), "headers": [[n, b64(v)] for n, v in headers]}


def header_list(headers: Any) -> Headers:
    """Message headers (confluent-kafka: None or a list of (name, bytes | None))."""
    out: Headers = []
    for name, value in headers or []:
        out.append((name, value.encode() if isinstance(value, str) else value))
    return out


def load_spec(path: str) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    spec: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8"))
    formats = spec.get("formats") or {}
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        fail(f"{path}: unknown formats {unknown}")
    return spec, {f: formats[f] for f in FORMATS if f in formats}


def codec(spec: dict[str, Any], config: str) -> fieldcrypt.Codec:
    """The spec's policy with its configuration document `config` as Codec's keyword arguments."""
    try:
        return fieldcrypt.Codec(spec["policy"], **spec[config])
    except fieldcrypt.Error as e:
        fail(f"codec of {config}: {e.kind}: {e}")


def produce(args: argparse.Namespace) -> None:
    spec, formats = load_spec(args.spec)
    c = codec(spec, "producer_config")
    producer = Producer({"bootstrap.servers": args.bootstrap, "enable.idempotence": True, "linger.ms": 5})
    delivered: list[str] = []
    errors: list[str] = []

    def on_delivery(err: Optional[KafkaError], msg: Message) -> None:
        if err is not None:
            errors.append(f"{msg.topic()}: delivery failed: {err.str()}")
        else:
            delivered.append(msg.topic() or "")

    total = 0
    for fmt, records in formats.items():
        topic = f"{args.topic_prefix}-{fmt}"
        for i, r in enumerate(records):
            key, value = unb64(r["key"]), unb64(r["value"])
            headers = [(str(n), unb64(v)) for n, v in r["headers"]]
            try:
                sealed = c.encrypt(topic, value, headers, key=key)
            except fieldcrypt.Error as e:
                fail(f"{topic} record {i}: encrypt: {e.kind}: {e}")
            out_headers: list[tuple[str, Union[str, bytes, None]]] = list(sealed.headers)  # every header
            while True:
                try:
                    producer.produce(topic, value=sealed.value, key=sealed.key, headers=out_headers,
                                     on_delivery=on_delivery)
                    break
                except BufferError:
                    producer.poll(0.1)
            producer.poll(0)
            total += 1
    left = producer.flush(FLUSH_TIMEOUT_S)
    if errors:
        fail("; ".join(errors))
    if left or len(delivered) != total:
        fail(f"{total - len(delivered)} of {total} records not delivered after {FLUSH_TIMEOUT_S:.0f} s")
    print(f"python peer: produced {total} records to {args.topic_prefix}-*", file=sys.stderr)


def consume(args: argparse.Namespace) -> None:
    spec, formats = load_spec(args.spec)
    c = codec(spec, "consumer_config")
    want = {f"{args.topic_prefix}-{fmt}": (fmt, len(records)) for fmt, records in formats.items()}
    got: dict[str, list[dict[str, Any]]] = {fmt: [] for fmt in formats}
    consumer = Consumer({
        "bootstrap.servers": args.bootstrap,
        "group.id": args.group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    try:
        consumer.subscribe(list(want))
        deadline = time.monotonic() + CONSUME_TIMEOUT_S
        while any(len(got[fmt]) < n for fmt, n in want.values()):
            if time.monotonic() > deadline:
                short = ", ".join(f"{topic}: {len(got[fmt])} of {n}" for topic, (fmt, n) in want.items()
                                  if len(got[fmt]) < n)
                fail(f"not every record arrived within {CONSUME_TIMEOUT_S:.0f} s ({short})")
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                # A topic not created yet (or a broker still starting) is transient; the deadline
                # bounds the wait.
                if err.fatal():
                    fail(f"consumer: {err.str()}")
                print(f"python peer: consumer: {err.str()}", file=sys.stderr)
                continue
            topic = msg.topic() or ""
            fmt, n = want[topic]
            if len(got[fmt]) >= n:
                print(f"python peer: {topic}: a record beyond the {n} expected, ignored", file=sys.stderr)
                continue
            key, value, headers = msg.key(), msg.value(), header_list(msg.headers())
            try:
                opened = c.decrypt(topic, value, headers, key=key)
            except fieldcrypt.Error as e:
                fail(f"{topic} record {len(got[fmt])}: decrypt: {e.kind}: {e}")
            got[fmt].append({
                "raw": record_json(key, value, headers),
                "decrypted": record_json(opened.key, opened.value, opened.headers),
            })
    finally:
        consumer.close()
    Path(args.out).write_text(json.dumps({"formats": got}, indent=1) + "\n", encoding="utf-8")
    print(f"python peer: consumed {sum(len(v) for v in got.values())} records from {args.topic_prefix}-*",
          file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python_peer.py", description=__doc__.splitlines()[0] if __doc__ else None)
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("produce", "consume"):
        p = commands.add_parser(name)
        p.add_argument("--bootstrap", required=True, help="HOST:PORT")
        p.add_argument("--spec", required=True, help="SPEC.json")
        p.add_argument("--topic-prefix", required=True, help="topics are PREFIX-FORMAT")
        if name == "consume":
            p.add_argument("--group", required=True, help="consumer group")
            p.add_argument("--out", required=True, help="OUT.json")
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # a usage error is a failure like any other: status 1 (--help: 0)
        return 0 if e.code in (0, None) else 1
    try:
        if args.command == "produce":
            produce(args)
        else:
            consume(args)
    except PeerError as e:
        print(f"python peer: {args.command}: error: {e}", file=sys.stderr)
        return 1
    except (OSError, ValueError, KeyError, TypeError) as e:  # an unreadable or malformed spec
        print(f"python peer: {args.command}: error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # anything else: with its traceback, still status 1
        traceback.print_exc()
        print(f"python peer: {args.command}: error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
