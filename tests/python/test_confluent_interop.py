"""fieldcrypt on records made by Confluent's own serializers (confluent-kafka for Python).

For each of AvroSerializer, JSONSerializer and ProtobufSerializer, against the Schema Registry
at FIELDCRYPT_REGISTRY (Apicurio's Confluent-compatible API in CI):

  serialize the payment record (the serializer auto-registers its schema)
  -> `fieldcrypt encrypt` -> deserialize with Confluent's deserializer: the untagged fields are
     unchanged, every PII-tagged field holds a Base64 ciphertext, a `fieldcrypt` header is set
  -> `fieldcrypt decrypt` -> deserialize: the record equals the original.

Environment: FIELDCRYPT_REGISTRY (required: the tests fail without it, they never skip) and
FIELDCRYPT_BIN (the CLI; default: target/debug/fieldcrypt of this workspace). tests/python/run.sh
sets up both the venv and the CLI.
"""

import base64
import binascii
import copy
import json
import os
import subprocess
import sys
import types
import uuid
from pathlib import Path

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer, ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from google.protobuf import descriptor_pb2, descriptor_pool, json_format

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas"
PAYMENT = SCHEMAS / "payment"
POLICY = SCHEMAS / "policies" / "demo.json"
LOCAL_KEYS = SCHEMAS / "keys" / "local-dev.json"

# The fields of the payment schemas tagged PII, which the demo policy's rule `payment-pii`
# encrypts on topics `payments` and `payments-*`.
TAGGED = ("email", "ssn", "address.street", "phone")
# AES-256-GCM's 12-byte nonce and 16-byte tag alone are 28 bytes: a ciphertext is longer.
MIN_CIPHERTEXT_LEN = 29

# Subjects `<topic>-value`. The current default, ASSOCIATED, first asks the registry for topic
# associations (GET /associations/...), an endpoint Apicurio lacks (404, then TOPIC anyway).
SERDE_CONF = {"subject.name.strategy.type": "TOPIC"}


# --------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="session")
def registry_url():
    url = os.environ.get("FIELDCRYPT_REGISTRY", "").strip()
    if not url:
        pytest.fail(
            "FIELDCRYPT_REGISTRY is not set: start a registry (scripts/servers.sh start apicurio; "
            'eval "$(scripts/servers.sh env)") or run tests/python/run.sh with it exported',
            pytrace=False,
        )
    return url


@pytest.fixture(scope="session")
def fieldcrypt_bin():
    path = os.environ.get("FIELDCRYPT_BIN")
    if not path:
        meta = subprocess.run(
            ["cargo", "metadata", "--format-version", "1", "--no-deps"],
            cwd=ROOT, capture_output=True, text=True, check=True,
        )
        path = str(Path(json.loads(meta.stdout)["target_directory"]) / "debug" / "fieldcrypt")
    if not os.access(path, os.X_OK):
        pytest.fail(f"fieldcrypt CLI not found at {path}: cargo build -p fieldcrypt-cli, or set FIELDCRYPT_BIN",
                    pytrace=False)
    return path


@pytest.fixture(scope="session")
def sr(registry_url):
    # A registry that stalls fails the test (after the client's retries) instead of hanging it.
    return SchemaRegistryClient({"url": registry_url, "timeout": 30})


@pytest.fixture
def topic():
    # A topic of its own per test: the serializers register under `<topic>-value`, so runs and
    # tests never meet in the registry. `payments-*` is what the demo policy encrypts.
    return f"payments-{uuid.uuid4()}"


@pytest.fixture(params=["phone", "no-phone"])
def record(request):
    """The standard payment record; and the same with its nullable PII field `phone` null."""
    rec = json.loads((PAYMENT / "payment.json").read_text())
    if request.param == "no-phone":
        rec["phone"] = None
    return rec


class FieldcryptFailed(AssertionError):
    def __init__(self, command, returncode, stderr):
        super().__init__(f"fieldcrypt {command} exited {returncode}: {stderr.strip()}")
        self.stderr = stderr


class Fieldcrypt:
    def __init__(self, binary, registry):
        self.binary = binary
        self.registry = registry

    def run(self, command, topic, value, headers=(), key=None):
        """Pipes one record through `fieldcrypt encrypt|decrypt`; returns (value, headers)."""
        b64 = lambda b: None if b is None else base64.b64encode(b).decode("ascii")  # noqa: E731
        line = {"key": b64(key), "value": b64(value), "headers": [[n, b64(v)] for n, v in headers]}
        proc = subprocess.run(
            [self.binary, command, "--policy", str(POLICY), "--local-keys", str(LOCAL_KEYS),
             "--registry", self.registry, "--topic", topic],
            input=json.dumps(line) + "\n", capture_output=True, text=True, timeout=120,
        )
        if proc.returncode != 0:
            raise FieldcryptFailed(command, proc.returncode, proc.stderr)
        lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
        assert len(lines) == 1, f"fieldcrypt {command} wrote {len(lines)} lines for 1 record: {proc.stdout!r}"
        out = json.loads(lines[0])
        assert out["key"] == line["key"], "fieldcrypt changed the record key"
        value = None if out["value"] is None else base64.b64decode(out["value"], validate=True)
        hdrs = [(n, None if v is None else base64.b64decode(v, validate=True)) for n, v in out["headers"]]
        return value, hdrs

    def encrypt(self, *args, **kw):
        return self.run("encrypt", *args, **kw)

    def decrypt(self, *args, **kw):
        return self.run("decrypt", *args, **kw)


@pytest.fixture(scope="session")
def fieldcrypt(fieldcrypt_bin, registry_url):
    return Fieldcrypt(fieldcrypt_bin, registry_url)


# --------------------------------------------------------------------------------------------
# helpers


def get_path(obj, path):
    """The value at a dotted path of a dict or a Protobuf message (None: null / unset)."""
    for name in path.split("."):
        if isinstance(obj, dict):
            obj = obj.get(name)
        else:
            field = obj.DESCRIPTOR.fields_by_name[name]
            if field.has_presence and not obj.HasField(name):
                return None
            obj = getattr(obj, name)
    return obj


def set_path(obj, path, value):
    *parents, last = path.split(".")
    for name in parents:
        obj = obj[name] if isinstance(obj, dict) else getattr(obj, name)
    if isinstance(obj, dict):
        obj[last] = value
    elif value is None:
        obj.ClearField(last)
    else:
        setattr(obj, last, value)


def assert_encrypted(original, encrypted):
    """`encrypted` is `original` with each tagged field that has a value replaced by a Base64
    ciphertext (a tagged field that is null stays null); every other field is unchanged."""
    expected = copy.deepcopy(original)
    for path in TAGGED:
        plain, cipher = get_path(original, path), get_path(encrypted, path)
        if plain is None:
            assert cipher is None, f"{path}: null became {cipher!r}"
            continue
        assert isinstance(cipher, str), f"{path}: {cipher!r} is not a string"
        assert cipher != plain, f"{path} was not encrypted: {cipher!r}"
        try:
            raw = base64.b64decode(cipher, validate=True)
        except binascii.Error:
            pytest.fail(f"{path}: {cipher!r} is not Base64")
        assert len(raw) >= MIN_CIPHERTEXT_LEN, f"{path}: ciphertext of {len(raw)} bytes is too short"
        assert plain.encode() not in raw, f"{path}: the plaintext is in the clear inside the ciphertext"
        set_path(expected, path, cipher)
    # Everything but the tagged fields reads back exactly as written.
    assert encrypted == expected


def assert_fieldcrypt_header(headers):
    names = [n for n, _ in headers]
    assert "fieldcrypt" in names, f"no fieldcrypt header after encrypt, headers: {names}"
    value = dict(headers)["fieldcrypt"]
    assert value, "the fieldcrypt header is empty"


def ctx(topic, headers):
    # The serializer may put the schema id into a header instead of the payload prefix
    # (`schema.id.serializer`); the list collects what it adds, and the deserializers read it.
    return SerializationContext(topic, MessageField.VALUE, headers)


def round_trip(fieldcrypt, topic, serialized, headers, deserialize, original):
    """encrypt -> check -> decrypt -> check; `deserialize(bytes, headers)` is Confluent's."""
    snapshot = copy.deepcopy(original)

    enc_value, enc_headers = fieldcrypt.encrypt(topic, serialized, headers)
    assert enc_value != serialized, "fieldcrypt encrypt left the value unchanged"
    assert_fieldcrypt_header(enc_headers)
    # Headers the serializer set (e.g. a schema id header) travel through unchanged.
    for h in headers:
        assert h in enc_headers, f"header {h[0]!r} lost by encrypt"
    encrypted = deserialize(enc_value, enc_headers)
    assert_encrypted(original, encrypted)

    dec_value, dec_headers = fieldcrypt.decrypt(topic, enc_value, enc_headers)
    decrypted = deserialize(dec_value, dec_headers)
    assert decrypted == original

    assert original == snapshot, "the record was mutated along the way"
    return enc_value, dec_value


# --------------------------------------------------------------------------------------------
# Avro


def test_avro(sr, fieldcrypt, topic, record):
    original = copy.deepcopy(record)
    serializer = AvroSerializer(sr, (PAYMENT / "payment.avsc").read_text(), conf={**SERDE_CONF, "auto.register.schemas": True})
    deserializer = AvroDeserializer(sr, conf=SERDE_CONF)

    headers = []
    serialized = serializer(record, ctx(topic, headers))
    assert record == original, "AvroSerializer mutated the record"
    assert deserializer(serialized, ctx(topic, list(headers))) == record

    _, decrypted = round_trip(
        fieldcrypt, topic, serialized, headers,
        lambda value, hdrs: deserializer(value, ctx(topic, hdrs)), record,
    )
    # Avro's encoding is canonical: decrypting restores the serializer's very bytes.
    assert decrypted == serialized
    assert record == original


# --------------------------------------------------------------------------------------------
# JSON Schema


def test_json_schema(sr, fieldcrypt, topic, record):
    original = copy.deepcopy(record)
    # JSONSerializer validates the record (and JSONDeserializer the encrypted one) against the
    # schema: phone is ["null", "string"], so both null and a ciphertext string pass.
    serializer = JSONSerializer((PAYMENT / "payment.schema.json").read_text(), sr,
                                conf={**SERDE_CONF, "auto.register.schemas": True})
    deserializer = JSONDeserializer(None, schema_registry_client=sr, conf=SERDE_CONF)

    headers = []
    serialized = serializer(record, ctx(topic, headers))
    assert record == original, "JSONSerializer mutated the record"
    assert deserializer(serialized, ctx(topic, list(headers))) == record

    round_trip(
        fieldcrypt, topic, serialized, headers,
        lambda value, hdrs: deserializer(value, ctx(topic, hdrs)), record,
    )
    assert record == original


# --------------------------------------------------------------------------------------------
# Protobuf


def _descriptor_set(out_dir, proto):
    path = out_dir / (proto.replace("/", "_") + ".pb")
    _protoc(out_dir, f"--descriptor_set_out={path}", proto)
    fds = descriptor_pb2.FileDescriptorSet()
    fds.ParseFromString(path.read_bytes())
    return fds.file[0]


def _protoc(out_dir, *args):
    proc = subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{PAYMENT}", f"-I{SCHEMAS}", *args],
        cwd=out_dir, capture_output=True, text=True,
    )
    assert proc.returncode == 0, f"protoc {args} failed: {proc.stderr}"


def _meta_shape(fd):
    """What a reader of `(confluent.field_meta).tags` relies on in confluent/meta.proto."""
    meta = next(m for m in fd.message_type if m.name == "Meta")
    tags = next(f for f in meta.field if f.name == "tags")
    ext = next(e for e in fd.extension if e.name == "field_meta")
    return fd.package, (tags.number, tags.type, tags.label), (ext.number, ext.extendee, ext.type_name)


@pytest.fixture(scope="session")
def payment_pb2(tmp_path_factory):
    """Python classes for payment.proto and confluent/meta.proto, made now with grpcio-tools."""
    out = tmp_path_factory.mktemp("protogen")
    _protoc(out, f"--python_out={out}", "payment.proto", "confluent/meta.proto")
    assert (out / "payment_pb2.py").is_file() and (out / "confluent" / "meta_pb2.py").is_file()

    # confluent-kafka registers its own confluent/meta.proto (a superset of ours: it adds
    # `rules`) in the default descriptor pool, which refuses a second, different file of that
    # name. Then the generated payment_pb2 links against confluent-kafka's copy, once we have
    # checked that the two agree on everything the PII tags use.
    pool = descriptor_pool.Default()
    try:
        existing = pool.FindFileByName("confluent/meta.proto")
    except KeyError:
        existing = None
    saved_modules = {k: sys.modules.get(k) for k in ("confluent", "confluent.meta_pb2", "payment_pb2")}
    if existing is not None:
        theirs = descriptor_pb2.FileDescriptorProto.FromString(existing.serialized_pb)
        ours = _descriptor_set(out, "confluent/meta.proto")
        assert _meta_shape(ours) == _meta_shape(theirs), "schemas/confluent/meta.proto disagrees with Confluent's"
        from confluent_kafka.schema_registry.confluent import meta_pb2 as confluent_meta_pb2

        package = types.ModuleType("confluent")
        package.__path__ = []
        package.meta_pb2 = confluent_meta_pb2
        sys.modules["confluent"] = package
        sys.modules["confluent.meta_pb2"] = confluent_meta_pb2
    sys.path.insert(0, str(out))
    try:
        import payment_pb2 as module
    finally:
        sys.path.remove(str(out))
    yield module
    for name, mod in saved_modules.items():
        if mod is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = mod


def _payment_message(pb2, record):
    rec = {k: v for k, v in record.items() if v is not None}  # null phone: an unset `optional`
    return json_format.ParseDict(rec, pb2.Payment())


def _protobuf_deserializer(pb2):
    # Without a registry client: a Protobuf message class describes itself, and the client path
    # asks the registry for `?format=serialized`, which Apicurio's ccompat API does not serve
    # correctly (it fails for Base64-registered schemas and returns raw bytes for text ones).
    deserializer = ProtobufDeserializer(pb2.Payment, {**SERDE_CONF, "use.deprecated.format": False})
    return lambda value, hdrs, topic: deserializer(value, ctx(topic, hdrs))


def _protobuf_serialize(sr, pb2, topic, message):
    serializer = ProtobufSerializer(
        pb2.Payment, sr, conf={**SERDE_CONF, "auto.register.schemas": True, "use.deprecated.format": False},
    )
    headers = []
    serialized = serializer(message, ctx(topic, headers))
    return serialized, headers


def _protobuf_round_trip(fieldcrypt, pb2, topic, serialized, headers, message):
    deserialize = _protobuf_deserializer(pb2)
    assert deserialize(serialized, list(headers), topic) == message
    _, decrypted = round_trip(
        fieldcrypt, topic, serialized, headers,
        lambda value, hdrs: deserialize(value, hdrs, topic), message,
    )
    # fieldcrypt rewrites only the fields it encrypts and copies everything else byte for byte.
    assert decrypted == serialized


def test_protobuf(sr, fieldcrypt, payment_pb2, topic, record):
    """ProtobufSerializer as is: it auto-registers the schema as a Base64 FileDescriptorProto."""
    original = copy.deepcopy(record)
    message = _payment_message(payment_pb2, record)
    snapshot = copy.deepcopy(message)
    serialized, headers = _protobuf_serialize(sr, payment_pb2, topic, message)
    assert message == snapshot, "ProtobufSerializer mutated the message"
    _protobuf_round_trip(fieldcrypt, payment_pb2, topic, serialized, headers, message)
    assert message == snapshot and record == original


def test_protobuf_text_schema(sr, fieldcrypt, payment_pb2, topic, record):
    """ProtobufSerializer's bytes with the schema as Confluent's registry stores it: .proto text.

    confluent-kafka always registers Base64 descriptors (see test_protobuf), and with Apicurio
    it cannot look a text schema up (`?format=serialized`), so the serializer registers as
    usual, the test registers payment.proto's text (importing confluent/meta.proto without a
    reference, as Confluent's registry has it for the serializer's default skip.known.types)
    and points the frame's schema id at it; message indexes and payload are the serializer's.
    """
    original = copy.deepcopy(record)
    message = _payment_message(payment_pb2, record)
    snapshot = copy.deepcopy(message)
    serialized, headers = _protobuf_serialize(sr, payment_pb2, topic, message)
    assert message == snapshot, "ProtobufSerializer mutated the message"
    assert serialized[0] == 0 and not headers, "expected Confluent's prefix framing (magic byte 0)"

    text_id = sr.register_schema(f"{topic}-text-value",
                                 Schema((PAYMENT / "payment.proto").read_text(), "PROTOBUF"))
    reframed = b"\x00" + text_id.to_bytes(4, "big") + serialized[5:]
    _protobuf_round_trip(fieldcrypt, payment_pb2, topic, reframed, headers, message)
    assert message == snapshot and record == original
