"""fieldcrypt: client-side field-level encryption for Kafka records.

A policy (a JSON document, see the project's docs/POLICY.md) says which fields of which topics
are encrypted, under which KMS key; a :class:`Codec` rewrites those fields inside the serialized
record bytes (teams keep their serializers and Kafka clients) and records in a ``fieldcrypt``
header what a consumer needs to decrypt them. The work is done by the Rust core; this package is
a thin binding.

    import fieldcrypt
    codec = fieldcrypt.Codec("policy.json", kms={"local": {"key_file": "keys.json"}})
    sealed = codec.encrypt("customers", b'{"password": "hunter2"}', headers=[])
    opened = codec.decrypt("customers", sealed.value, sealed.headers)

confluent-kafka adapters are in :mod:`fieldcrypt.kafka`; :class:`AvroSerializer` /
:class:`AvroDeserializer` (and :class:`JSONSerializer` / :class:`JSONDeserializer`) are drop-ins
for confluent-kafka's that encode and encrypt (decrypt and
decode) in one call.
"""

from ._fieldcrypt import (
    HEADER_NAME,
    AccessDeniedError,
    AvroDeserializer,
    AvroSerializer,
    Codec,
    ConfigError,
    CryptoError,
    Error,
    FormatError,
    JSONDeserializer,
    JSONSerializer,
    KeyNotFoundError,
    KmsError,
    LimitExceededError,
    ShreddedError,
    PolicyError,
    PolicyStatus,
    Record,
    RecordError,
    RegistryError,
    UnsupportedVersionError,
    __version__,
)

__all__ = [
    "HEADER_NAME",
    "AccessDeniedError",
    "AvroDeserializer",
    "AvroSerializer",
    "Codec",
    "ConfigError",
    "CryptoError",
    "Error",
    "FormatError",
    "JSONDeserializer",
    "JSONSerializer",
    "KeyNotFoundError",
    "KmsError",
    "LimitExceededError",
    "ShreddedError",
    "PolicyError",
    "PolicyStatus",
    "Record",
    "RecordError",
    "RegistryError",
    "UnsupportedVersionError",
    "__version__",
]
