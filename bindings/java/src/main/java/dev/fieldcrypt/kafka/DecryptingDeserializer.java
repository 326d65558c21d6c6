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
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.Deserializer;

/**
 * A Kafka {@link Deserializer} that decrypts the record's key or value with the record's headers
 * (as the codec's profile allows), then runs a delegate deserializer on the result. Once the codec
 * has dropped the {@code fieldcrypt} header (no ciphertext left), it is removed from the record's
 * headers too, so the {@code ConsumerRecord} shows the headers the producer wrote.
 *
 * <p>Without headers ({@link #deserialize(String, byte[])}) a record is passed through as it is:
 * a record without a fieldcrypt header is not fieldcrypt's. Failures are
 * {@link SerializationException}s (the consumer reports them as {@code RecordDeserializationException})
 * whose cause is the {@link FieldcryptException}.
 */
public class DecryptingDeserializer<T> implements Deserializer<T> {
    private Deserializer<T> delegate;
    private Codec codec;
    private boolean ownsCodec;
    private boolean isKey;

    /** For Kafka's configuration by class name: see {@link FieldcryptSerdeConfig}. */
    public DecryptingDeserializer() {}

    /** Wraps {@code delegate} with {@code codec} (which the caller keeps and closes), for record values. */
    public DecryptingDeserializer(Deserializer<T> delegate, Codec codec) {
        this(delegate, codec, false);
    }

    public DecryptingDeserializer(Deserializer<T> delegate, Codec codec, boolean isKey) {
        this.delegate = Objects.requireNonNull(delegate, "delegate");
        this.codec = Objects.requireNonNull(codec, "codec");
        this.isKey = isKey;
    }

    @Override
    @SuppressWarnings("unchecked")
    public void configure(Map<String, ?> configs, boolean isKey) {
        this.isKey = isKey;
        if (delegate == null) {
            delegate = (Deserializer<T>) FieldcryptSerdeConfig.newDelegate(configs,
                    isKey ? FieldcryptSerdeConfig.KEY_DESERIALIZER : FieldcryptSerdeConfig.VALUE_DESERIALIZER,
                    ByteArrayDeserializer.class);
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
    public T deserialize(String topic, Headers headers, byte[] data) {
        check();
        List<Header> before = KafkaHeaders.of(headers);
        Record out = decrypt(topic, data, before);
        KafkaHeaders.update(headers, before, out.headers());
        return delegate.deserialize(topic, headers, isKey ? out.key() : out.value());
    }

    @Override
    public T deserialize(String topic, byte[] data) {
        check();
        Record out = decrypt(topic, data, List.of());
        return delegate.deserialize(topic, isKey ? out.key() : out.value());
    }

    private Record decrypt(String topic, byte[] bytes, List<Header> headers) {
        try {
            return isKey ? codec.decrypt(topic, bytes, null, headers) : codec.decrypt(topic, null, bytes, headers);
        } catch (FieldcryptException e) {
            throw new SerializationException("fieldcrypt: cannot decrypt the record " + (isKey ? "key" : "value")
                    + " of topic " + topic + ": " + e.getMessage(), e);
        }
    }

    private void check() {
        if (codec == null || delegate == null) {
            throw new IllegalStateException("DecryptingDeserializer is not configured (no codec)");
        }
    }

    /** Closes the delegate, and the codec if this deserializer made it from properties. */
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
