"""confluent-kafka adapters: wrap any confluent-kafka ``Serializer`` / ``Deserializer`` (or any
callable ``(obj, ctx)``) so that a ``SerializingProducer`` encrypts and a
``DeserializingConsumer`` decrypts the fields the policy selects.

    from confluent_kafka import SerializingProducer
    from confluent_kafka.schema_registry.avro import AvroSerializer
    from fieldcrypt.kafka import EncryptingSerializer

    producer = SerializingProducer({
        "bootstrap.servers": ...,
        "value.serializer": EncryptingSerializer(AvroSerializer(sr, schema), codec),
    })
    producer.produce(topic, value=record, headers=[])   # a new headers list per record

How it works with confluent-kafka 2.x: ``SerializingProducer.produce`` hands the serializers a
``SerializationContext`` whose ``headers`` is the very object given to ``produce(headers=...)``,
and then produces that object. The serializer therefore adds the ``fieldcrypt`` header *in
place* (a list gets the codec's header list as its contents, a dict is updated), as Confluent's
own schema-id-in-header serializers do. So:

- pass ``headers=[]`` (or a dict) to ``produce`` when a record may be encrypted: with
  ``headers=None`` there is nowhere to put the header, and the serializer raises rather than
  send a record nobody can decrypt;
- pass a new list per record: a list that already carries a ``fieldcrypt`` header is refused
  (``RecordError``), as fieldcrypt never encrypts a record twice.

Each adapter works on its own part of the record (``ctx.field``: key or value), so wrap the
serializer of the part your policy encrypts. A topic whose policy encrypts fields of both the
key and the value needs :meth:`fieldcrypt.Codec.encrypt` with both parts in one call (a record
has one ``fieldcrypt`` header).

confluent-kafka is imported only when an adapter needs one of its classes, so ``fieldcrypt``
itself imports without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional

from ._fieldcrypt import HEADER_NAME, Codec

if TYPE_CHECKING:
    from confluent_kafka.serialization import SerializationContext

__all__ = ["DecryptingDeserializer", "EncryptingSerializer"]


def _serialization_error(message: str) -> Exception:
    from confluent_kafka.serialization import SerializationError

    return SerializationError(message)


def _is_key(ctx: SerializationContext) -> bool:
    # MessageField is a str enum: MessageField.KEY == "key".
    return bool(ctx.field == "key")


def _forward(inner: Any, method: str, *args: Any) -> None:
    """Calls ``inner.method(*args)`` if ``inner`` has it (confluent-kafka's optional serde hooks)."""
    f = getattr(inner, method, None)
    if callable(f):
        f(*args)


class EncryptingSerializer:
    """A serializer that runs ``inner(obj, ctx)``, then encrypts the bytes with ``codec`` for
    ``ctx.topic`` and adds the ``fieldcrypt`` header to ``ctx.headers`` (in place).

    ``inner`` may be None: ``obj`` is then the serialized bytes already.
    """

    def __init__(self, inner: Optional[Callable[[Any, Any], Optional[bytes]]], codec: Codec) -> None:
        self.inner = inner
        self.codec = codec

    def __call__(self, obj: Any, ctx: Optional[SerializationContext] = None) -> Optional[bytes]:
        if ctx is None:
            raise _serialization_error("EncryptingSerializer needs a SerializationContext (topic and headers)")
        data = obj if self.inner is None else self.inner(obj, ctx)
        is_key = _is_key(ctx)
        out = self.codec.encrypt(ctx.topic, None if is_key else data, ctx.headers, key=data if is_key else None)
        if any(name == HEADER_NAME for name, _ in out.headers):
            headers = ctx.headers
            if isinstance(headers, list):
                headers[:] = out.headers
            elif isinstance(headers, dict):
                headers.clear()
                headers.update(out.headers)
            else:
                raise _serialization_error(
                    f"the record for topic {ctx.topic!r} was encrypted, but produce() was called without a "
                    "headers list to add the fieldcrypt header to: pass headers=[] (SerializingProducer "
                    "sends only the headers object it was given)"
                )
        return out.key if is_key else out.value

    def set_cluster_id_resolver(self, resolver: Callable[[], Any]) -> None:
        _forward(self.inner, "set_cluster_id_resolver", resolver)

    def close(self) -> None:
        _forward(self.inner, "close")


class DecryptingDeserializer:
    """A deserializer that decrypts the bytes with ``codec`` for ``ctx.topic`` (using the
    record's ``ctx.headers``, which it does not change), then runs ``inner(bytes, ctx)``.

    ``inner`` may be None: the decrypted bytes are returned then.
    """

    def __init__(self, inner: Optional[Callable[[Optional[bytes], Any], Any]], codec: Codec) -> None:
        self.inner = inner
        self.codec = codec

    def __call__(self, data: Optional[bytes], ctx: Optional[SerializationContext] = None) -> Any:
        if ctx is None:
            raise _serialization_error("DecryptingDeserializer needs a SerializationContext (topic and headers)")
        is_key = _is_key(ctx)
        out = self.codec.decrypt(ctx.topic, None if is_key else data, ctx.headers, key=data if is_key else None)
        plain = out.key if is_key else out.value
        return plain if self.inner is None else self.inner(plain, ctx)

    def set_cluster_id_resolver(self, resolver: Callable[[], Any]) -> None:
        _forward(self.inner, "set_cluster_id_resolver", resolver)

    def close(self) -> None:
        _forward(self.inner, "close")
