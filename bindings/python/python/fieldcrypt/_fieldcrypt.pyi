"""Type stubs of the compiled module `fieldcrypt._fieldcrypt` (hand-written; checked with
`python -m mypy.stubtest fieldcrypt`)."""

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, Literal, TypedDict, Union, final

from typing_extensions import TypeAlias

__all__ = [
    "AvroSerializer",
    "AvroDeserializer",
    "JSONSerializer",
    "JSONDeserializer",
    "Codec",
    "PolicyStatus",
    "Record",
    "Error",
    "PolicyError",
    "ConfigError",
    "RecordError",
    "FormatError",
    "UnsupportedVersionError",
    "CryptoError",
    "KeyNotFoundError",
    "AccessDeniedError",
    "KmsError",
    "RegistryError",
    "LimitExceededError",
    "ShreddedError",
    "HEADER_NAME",
    "__version__",
]

__version__: Final[str]
HEADER_NAME: Final[str]
"""The name of the record header fieldcrypt writes: ``"fieldcrypt"``."""

_HeaderValue: TypeAlias = Union[bytes, bytearray, str, None]
_Headers: TypeAlias = Union[Sequence[tuple[str, _HeaderValue]], Mapping[str, _HeaderValue], None]
"""Record headers in confluent-kafka's forms: a list of ``(name, value)`` tuples or a dict."""

_ClientConfig: TypeAlias = Union[Mapping[str, Any], Literal["from_env"]]

class _KmsConfig(TypedDict, total=False):
    local: Mapping[str, Any]
    vault: _ClientConfig
    aws: _ClientConfig
    azure: _ClientConfig
    gcp: _ClientConfig

class _Stats(TypedDict):
    records_encrypted: int
    records_decrypted: int
    fields_encrypted: int
    fields_decrypted: int
    fields_withheld: int
    deks_created: int
    kms_wrap_calls: int
    kms_unwrap_calls: int
    kms_derive_calls: int
    kms_errors: int
    kms_denials_cached: int
    dek_cache_hits: int
    dek_cache_misses: int

_BatchItem: TypeAlias = Union[
    tuple[Union[bytes, None], _Headers],
    tuple[Union[bytes, None], _Headers, Union[bytes, None]],
    "Record",
]

@final
class Record:
    """A record after :meth:`Codec.encrypt` or :meth:`Codec.decrypt`."""

    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> list[tuple[str, bytes | None]]:
        """A new list of ``(name, value)`` tuples: the input's headers, plus the ``fieldcrypt``
        header after encrypt (minus it after a decrypt that left no ciphertext)."""

@final
class PolicyStatus:
    """The policy in force and the reload counters: :meth:`Codec.policy_status`. For a codec
    with a fixed policy: one load, no source."""

    @property
    def policy_id(self) -> str: ...
    @property
    def revision(self) -> int: ...
    @property
    def signed_by(self) -> str | None:
        """The id of the trusted key whose signature verified the policy in force (None if the
        policy was not verified)."""

    @property
    def source(self) -> str | None:
        """Where the policy is read from (None for a policy given to the constructor)."""

    @property
    def loads(self) -> int:
        """Policies loaded, the first included."""

    @property
    def rejections(self) -> int:
        """Documents refused (signature, parse, rollback, policy id)."""

    @property
    def fetch_errors(self) -> int:
        """Fetches that failed (source unreachable, unreadable, timed out)."""

    @property
    def last_error(self) -> Error | None:
        """The error of the last rejection or failed fetch as the exception of its kind (not
        raised: ``.kind`` and ``str()`` give its kind and message), or None."""

@final
class Codec:
    """Encrypts and decrypts the fields of Kafka records as a policy says. Thread-safe and
    cheap to share: build one per process.

    :param policy: the policy: a dict, JSON text, or the path of a policy file; plain, or a
        signed envelope (``fieldcrypt policy sign``). None when ``policy_source`` is given.
    :param kms: KMS clients by name: ``"local"`` (``{"key_file": path}``, ``{"keys": {...}}``,
        ``{"secrets": {name: secret}}``; development only), ``"vault"``, ``"aws"``, ``"azure"``,
        ``"gcp"`` (each a dict of options or ``"from_env"``). Credentials come from here, never
        from the policy.
    :param profile: decrypt as this profile of the policy (default: every field the KMS allows).
    :param registry: a Schema Registry: its URL, or ``{"url", "basic_auth", "bearer_token",
        "ca_pem", "timeout", "max_retries", "backoff", "cache_capacity", "latest_ttl"}``.
    :param schemas: writer schemas given up front instead: ``{schema id or GUID: {"type":
        "AVRO" | "PROTOBUF" | "JSON", "schema": text, "name": str, "references": {name: text}}}``.
    :param limits: data-key limits: ``dek_max_uses``, ``dek_max_age`` (seconds),
        ``dek_cache_capacity``, ``dek_cache_ttl``, ``dek_denied_ttl``, ``dek_outage_extra_uses``,
        ``kms_retry_interval``.
    :param validate_json_schema: validate JSON Schema records against their writer schema.
    :param key_store: where per-subject data keys live (docs/SHREDDING.md): ``{"file": path,
        "refresh": seconds}`` or ``{"kafka": {"bootstrap", "topic", "timeout", "create_topic",
        "replication_factor", "properties"}}``.
    :param trusted_keys: ``{key id: Ed25519 public key (Base64 or PEM)}``: the policy, given or
        fetched, must be a signed envelope verified by one of them.
    :param policy_source: follow a policy instead of being given one: ``{"file": path}``,
        ``{"url": url, "headers": {...}}`` or ``{"kafka": {"bootstrap", "topic", "timeout",
        "properties"}}``, with ``"policy_id"``, ``"interval"`` (seconds between background
        fetches), ``"manual": True`` (fetch only on :meth:`reload`), ``"min_revision"``,
        ``"allow_unsigned"`` (without ``trusted_keys``; development only).
    :raises Error: the subclass of the problem (``PolicyError``, ``ConfigError``...).
    """

    def __new__(
        cls,
        policy: str | Mapping[str, Any] | os.PathLike[str] | None = None,
        *,
        kms: _KmsConfig | Mapping[str, Any],
        profile: str | None = None,
        registry: str | Mapping[str, Any] | None = None,
        schemas: Mapping[int | str, Mapping[str, Any]] | None = None,
        limits: Mapping[str, float] | None = None,
        validate_json_schema: bool = False,
        key_store: Mapping[str, Any] | None = None,
        trusted_keys: Mapping[str, str] | None = None,
        policy_source: Mapping[str, Any] | None = None,
    ) -> Codec: ...
    def encrypt(
        self, topic: str, value: bytes | None, headers: _Headers = None, *, key: bytes | None = None
    ) -> Record:
        """Encrypts the fields the policy selects for ``topic``. The input is not changed."""

    def decrypt(
        self, topic: str, value: bytes | None, headers: _Headers = None, *, key: bytes | None = None
    ) -> Record:
        """Decrypts what this codec's profile and KMS access allow. The input is not changed."""

    def encrypt_batch(self, topic: str, records: Iterable[_BatchItem]) -> list[Record]:
        """:meth:`encrypt` over ``(value, headers)`` / ``(value, headers, key)`` tuples or
        Records, with the GIL released for the whole batch. The first failure raises, with
        ``index`` set."""

    def decrypt_batch(self, topic: str, records: Iterable[_BatchItem]) -> list[Record]:
        """:meth:`decrypt` over a batch, like :meth:`encrypt_batch`."""

    def stats(self) -> _Stats:
        """Counters since the codec was built: records, fields, data keys, KMS calls."""

    def clear_key_cache(self) -> None:
        """Drops every cached unwrapped data key; the next records ask the KMS again."""

    def shred(self, subject: str) -> int:
        """Crypto-shreds a data subject: deletes its data keys from the key store; returns how many."""

    def rotate_subject(self, subject: str) -> None:
        """Stores a new data key for a data subject; older records still decrypt."""

    def reload(self) -> bool:
        """Fetches the policy source now (the GIL released): True when a new revision is in
        force, False when the source had nothing new. A refused document raises
        :class:`PolicyError` (the policy in force stays); an unreachable source the error of
        its kind; a codec with a fixed policy :class:`ConfigError`."""

    def policy_status(self) -> PolicyStatus:
        """The policy in force and the reload counters."""

@final
class AvroSerializer:
    """A drop-in for confluent-kafka's ``AvroSerializer``: ``serializer(obj, ctx)`` encodes the
    dict to Avro in Rust, frames it (``0x00``, the 4-byte big-endian schema id) and encrypts the
    fields ``codec``'s policy selects for ``ctx.topic``, in one call; the ``fieldcrypt`` header
    is added to ``ctx.headers`` in place (as :class:`fieldcrypt.kafka.EncryptingSerializer`
    does: pass ``headers=[]`` to ``produce``). The caller's dict is never changed.

    :param schema_registry_client: a confluent-kafka ``SchemaRegistryClient`` (or any object
        with ``register_schema`` / ``get_latest_version``), its URL, or None with
        ``conf={"schema_id": N}``. The subject ``<topic>-value`` (``-key``) is registered once.
    :param schema_str: the Avro schema (text, or confluent-kafka's ``Schema``).
    :param codec: the :class:`Codec`; it must know the schema id (its ``registry=`` or
        ``schemas=``).
    :param conf: ``{"schema_id": int, "auto.register.schemas": bool}`` (unknown keys are a
        :class:`ConfigError`); with ``auto.register.schemas`` False the subject's latest version
        is used.
    """

    def __new__(
        cls, schema_registry_client: Any, schema_str: Any, codec: Codec, conf: Mapping[str, Any] | None = None
    ) -> AvroSerializer: ...
    def __call__(self, obj: Any, ctx: Any = None) -> bytes | None: ...

@final
class AvroDeserializer:
    """A drop-in for confluent-kafka's ``AvroDeserializer``: ``deserializer(data, ctx)``
    decrypts with ``codec`` (using ``ctx.headers``, unchanged) and decodes the Avro datum to a
    dict in Rust. The writer schema is ``schema_str`` when given, else fetched by the frame's id
    from ``schema_registry_client`` (``get_schema``), once per id.
    """

    def __new__(
        cls,
        schema_registry_client: Any,
        schema_str: Any = None,
        codec: Codec | None = None,
        conf: Mapping[str, Any] | None = None,
    ) -> AvroDeserializer: ...
    def __call__(self, data: bytes | None, ctx: Any = None) -> Any: ...

@final
class JSONSerializer:
    """Like :class:`AvroSerializer`, for JSON, with confluent-kafka ``JSONSerializer``'s argument
    order: the dict is written as compact JSON in Rust (dict key order kept) and encrypted in the
    same call. With ``schema_str`` the JSON is Confluent-framed under the subject's schema id
    (registered as type ``JSON``, or ``conf={"schema_id": N}``); with None it is plain JSON.
    Records are not validated against the schema.
    """

    def __new__(
        cls, schema_str: Any, schema_registry_client: Any, codec: Codec, conf: Mapping[str, Any] | None = None
    ) -> JSONSerializer: ...
    def __call__(self, obj: Any, ctx: Any = None) -> bytes | None: ...

@final
class JSONDeserializer:
    """Decrypts a JSON record (Confluent-framed or plain) with ``codec`` and parses it in Rust.
    ``schema_str`` and ``schema_registry_client`` are accepted for confluent-kafka's call shape;
    records are not validated. Objects come back with their keys sorted."""

    def __new__(
        cls,
        schema_str: Any,
        codec: Codec,
        schema_registry_client: Any = None,
        conf: Mapping[str, Any] | None = None,
    ) -> JSONDeserializer: ...
    def __call__(self, data: bytes | None, ctx: Any = None) -> Any: ...

class Error(Exception):
    """Base class of every fieldcrypt error."""

    kind: str
    """The error kind's stable name: ``"policy"``, ``"config"``, ``"record"``, ``"format"``,
    ``"unsupported_version"``, ``"crypto"``, ``"key_not_found"``, ``"access_denied"``, ``"kms"``,
    ``"registry"``, ``"limit_exceeded"`` or ``"shredded"`` (each subclass has its own as a class attribute; the
    base class has ``"error"``)."""
    retryable: bool
    """Whether the same call may succeed later (a KMS or registry that could not be reached)."""
    index: int | None
    """In a batch call, the position of the record that failed; else None."""

class PolicyError(Error): ...
class ConfigError(Error): ...
class RecordError(Error): ...
class FormatError(Error): ...
class UnsupportedVersionError(Error): ...
class CryptoError(Error): ...
class KeyNotFoundError(Error): ...
class AccessDeniedError(Error): ...
class KmsError(Error): ...
class RegistryError(Error): ...
class LimitExceededError(Error): ...
class ShreddedError(Error): ...
