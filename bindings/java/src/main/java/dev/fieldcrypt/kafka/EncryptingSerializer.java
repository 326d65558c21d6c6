package dev.fieldcrypt.kafka;

import dev.fieldcrypt.Codec;
import dev.fieldcrypt.FieldcryptException;
import dev.fieldcrypt.Header;
import dev.fieldcrypt.Record;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import org.apache.kafka.common.errors.SerializationException;
import org.apache.kafka.common.header.Headers;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.Serializer;

/**
 * A Kafka {@link Serializer} that runs a delegate serializer, then encrypts the fields the policy
 * selects for the topic and adds the {@code fieldcrypt} header to the record's headers.
 *
 * <p>Wrap the serializer of the part (key or value) your policy encrypts. {@code KafkaProducer}
 * calls {@link #serialize(String, Headers, Object)}, which can add the header. The plain
 * {@link #serialize(String, Object)} cannot, so it throws for any record it would have to
 * encrypt rather than return bytes nobody can decrypt (it never returns cleartext of a selected
 * field either). A record that already carries a {@code fieldcrypt} header is refused (a
 * {@code RecordException} cause): a topic whose policy encrypts fields of both key and value
 * needs {@link Codec#encrypt(String, byte[], byte[], List)} with both parts in one call.
 *
 * <p>Failures are {@link SerializationException}s whose cause is the {@link FieldcryptException}.
 */
public class EncryptingSerializer<T> implements Serializer<T> {
    private Serializer<T> delegate;
    private Codec codec;
    private boolean ownsCodec;
    private boolean isKey;

    /** For Kafka's configuration by class name: see {@link FieldcryptSerdeConfig}. */
    public EncryptingSerializer() {}

    /**
     * Wraps {@code delegate} with {@code codec} (which the caller keeps and closes) for record
     * values; {@link #configure} with {@code isKey} true (or {@link #EncryptingSerializer(Serializer, Codec, boolean)})
     * for keys.
     */
    public EncryptingSerializer(Serializer<T> delegate, Codec codec) {
        this(delegate, codec, false);
    }

    public EncryptingSerializer(Serializer<T> delegate, Codec codec, boolean isKey) {
        this.delegate = Objects.requireNonNull(delegate, "delegate");
        this.codec = Objects.requireNonNull(codec, "codec");
        this.isKey = isKey;
    }

    @Override
    @SuppressWarnings("unchecked")
    public void configure(Map<String, ?> configs, boolean isKey) {
        this.isKey = isKey;
        if (delegate == null) {
            delegate = (Serializer<T>) FieldcryptSerdeConfig.newDelegate(configs,
                    isKey ? FieldcryptSerdeConfig.KEY_SERIALIZER : FieldcryptSerdeConfig.VALUE_SERIALIZER,
                    ByteArraySerializer.class);
        }
        delegate.configure(configs, isKey);
        if (codec == null) {
            codec = FieldcryptSerdeConfig.sharedCodec(configs);
            if (codec == null) {
                codec = FieldcryptSerdeConfig.newCodec(configs);
                ownsCodec = true;
            }
        }
    }

    @Override
    public byte[] serialize(String topic, Headers headers, T data) {
        check();
        List<Header> before = KafkaHeaders.of(headers);
        Record out = encrypt(topic, delegate.serialize(topic, headers, data), before);
        if (!KafkaHeaders.update(headers, before, out.headers())) {
            throw noHeaders(topic);
        }
        return isKey ? out.key() : out.value();
    }

    /** Throws for a record the policy encrypts: there are no headers to add the fieldcrypt header to. */
    @Override
    public byte[] serialize(String topic, T data) {
        check();
        List<Header> none = List.of();
        Record out = encrypt(topic, delegate.serialize(topic, data), none);
        if (!out.headers().isEmpty()) {
            throw noHeaders(topic);
        }
        return isKey ? out.key() : out.value();
    }

    private Record encrypt(String topic, byte[] bytes, List<Header> headers) {
        try {
            return isKey ? codec.encrypt(topic, bytes, null, headers) : codec.encrypt(topic, null, bytes, headers);
        } catch (FieldcryptException e) {
            throw new SerializationException("fieldcrypt: cannot encrypt the record " + (isKey ? "key" : "value")
                    + " for topic " + topic + ": " + e.getMessage(), e);
        }
    }

    private static SerializationException noHeaders(String topic) {
        return new SerializationException("fieldcrypt: the policy encrypts this record of topic " + topic
                + ", but the serializer was called without record headers to carry the fieldcrypt header;"
                + " refusing to return it (use serialize(topic, headers, data), as KafkaProducer does)");
    }

    private void check() {
        if (codec == null || delegate == null) {
            throw new IllegalStateException("EncryptingSerializer is not configured (no codec)");
        }
    }

    /** Closes the delegate, and the codec if this serializer made it from properties. */
    @Override
    public void close() {
        try {
            if (delegate != null) {
                delegate.close();
            }
        } finally {
            if (ownsCodec && codec != null) {
                codec.close();
            }
        }
    }
}
