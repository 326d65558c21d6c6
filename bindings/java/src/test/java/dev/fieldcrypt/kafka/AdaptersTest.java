package dev.fieldcrypt.kafka;

import static dev.fieldcrypt.Fixtures.contains;
import static dev.fieldcrypt.Fixtures.customer;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.fieldcrypt.Codec;
import dev.fieldcrypt.Fixtures;
import dev.fieldcrypt.Json;
import dev.fieldcrypt.RecordException;
import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.Map;
import org.apache.kafka.common.errors.SerializationException;
import org.apache.kafka.common.header.Headers;
import org.apache.kafka.common.header.internals.RecordHeaders;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/** The Kafka serializer and deserializer, called as KafkaProducer and KafkaConsumer call them. */
class AdaptersTest {
    private final Codec codec = Fixtures.codec();

    @AfterEach
    void close() {
        codec.close();
    }

    static String customerText(String password) {
        return new String(customer("Ada", password), StandardCharsets.UTF_8);
    }

    @Test
    void roundTripWithRecordHeaders() {
        var serializer = new EncryptingSerializer<>(new StringSerializer(), codec);
        var deserializer = new DecryptingDeserializer<>(new StringDeserializer(), codec);
        Headers headers = new RecordHeaders();
        headers.add("trace", "t-1".getBytes(StandardCharsets.UTF_8));
        byte[] wire = serializer.serialize("customers", headers, customerText("hunter2"));
        assertFalse(contains(wire, "hunter2"));
        assertNotNull(headers.lastHeader("fieldcrypt"), "the serializer adds the header");
        assertNotNull(headers.lastHeader("trace"));

        assertEquals(customerText("hunter2"), deserializer.deserialize("customers", headers, wire));
        assertNull(headers.lastHeader("fieldcrypt"), "dropped once decrypted");
        assertArrayEquals("t-1".getBytes(StandardCharsets.UTF_8), headers.lastHeader("trace").value());
    }

    @Test
    void partialProfileKeepsTheHeader() {
        Headers headers = new RecordHeaders();
        byte[] wire = new EncryptingSerializer<>(new StringSerializer(), codec)
                .serialize("customers", headers, customerText("hunter2"));
        try (Codec visaOnly = Fixtures.codec("visa-only")) {
            String out = new DecryptingDeserializer<>(new StringDeserializer(), visaOnly)
                    .deserialize("customers", headers, wire);
            assertFalse(out.contains("hunter2"));
            assertTrue(out.contains("4111-1111-1111-1111"));
            assertNotNull(headers.lastHeader("fieldcrypt"), "ciphertext left: the header stays");
        }
    }

    @Test
    void serializeWithoutHeadersFailsClosed() {
        var serializer = new EncryptingSerializer<>(new StringSerializer(), codec);
        SerializationException e = assertThrows(SerializationException.class,
                () -> serializer.serialize("customers", customerText("hunter2")));
        assertFalse(e.getMessage().contains("hunter2"));
        // A topic (or record) the policy does not encrypt goes through.
        assertEquals("plain", new String(serializer.serialize("other", "plain"), StandardCharsets.UTF_8));
        assertEquals("{\"name\":\"x\"}",
                new String(serializer.serialize("customers", "{\"name\":\"x\"}"), StandardCharsets.UTF_8));
    }

    @Test
    void encryptedTwiceIsRefused() {
        var serializer = new EncryptingSerializer<>(new StringSerializer(), codec);
        Headers headers = new RecordHeaders();
        serializer.serialize("customers", headers, customerText("a"));
        SerializationException e = assertThrows(SerializationException.class,
                () -> serializer.serialize("customers", headers, customerText("b")));
        assertInstanceOf(RecordException.class, e.getCause());
    }

    @Test
    void tamperedRecordFailsAsSerializationException() {
        Headers headers = new RecordHeaders();
        byte[] wire = new EncryptingSerializer<>(new ByteArraySerializer(), codec)
                .serialize("customers", headers, customer("Ada", "pw"));
        Headers wrong = new RecordHeaders();
        wrong.add("fieldcrypt", new byte[] {1, 0});
        var deserializer = new DecryptingDeserializer<>(new StringDeserializer(), codec);
        SerializationException e = assertThrows(SerializationException.class,
                () -> deserializer.deserialize("customers", wrong, wire));
        assertInstanceOf(dev.fieldcrypt.FormatException.class, e.getCause());
        // Without headers there is nothing to decrypt with: passed through as it is.
        assertEquals(new String(wire, StandardCharsets.UTF_8), deserializer.deserialize("customers", wire));
    }

    @Test
    void keysAndTombstones() {
        // The key serializer on a topic whose policy encrypts values: unchanged, no header.
        var keys = new EncryptingSerializer<>(new StringSerializer(), codec, true);
        Headers headers = new RecordHeaders();
        assertArrayEquals("k".getBytes(StandardCharsets.UTF_8), keys.serialize("customers", headers, "k"));
        assertFalse(headers.iterator().hasNext());
        var values = new EncryptingSerializer<>(new StringSerializer(), codec);
        assertNull(values.serialize("customers", headers, null), "a tombstone stays one");
        assertNull(new DecryptingDeserializer<>(new StringDeserializer(), codec).deserialize("customers", headers, (byte[]) null));

        // A decrypting key deserializer on a record whose header lists value fields: the core
        // needs both parts in one call, so it fails (documented: wrap the part the policy encrypts).
        Headers sealed = new RecordHeaders();
        values.serialize("customers", sealed, customerText("pw"));
        var keyDeserializer = new DecryptingDeserializer<>(new StringDeserializer(), codec, true);
        SerializationException e = assertThrows(SerializationException.class,
                () -> keyDeserializer.deserialize("customers", sealed, "k".getBytes(StandardCharsets.UTF_8)));
        assertInstanceOf(RecordException.class, e.getCause());
        assertNotNull(sealed.lastHeader("fieldcrypt"), "left for the value deserializer");
    }

    @Test
    void configuredFromProperties() {
        Map<String, Object> props = new HashMap<>();
        props.put(FieldcryptSerdeConfig.POLICY, Fixtures.POLICY.toString());
        props.put(FieldcryptSerdeConfig.CONFIG, Fixtures.config());
        props.put(FieldcryptSerdeConfig.VALUE_SERIALIZER, StringSerializer.class.getName());
        props.put(FieldcryptSerdeConfig.VALUE_DESERIALIZER, StringDeserializer.class);
        EncryptingSerializer<String> serializer = new EncryptingSerializer<>();
        serializer.configure(props, false);
        DecryptingDeserializer<String> deserializer = new DecryptingDeserializer<>();
        props.put(FieldcryptSerdeConfig.POLICY, Fixtures.policy()); // JSON text works too
        deserializer.configure(props, false);
        try {
            Headers headers = new RecordHeaders();
            byte[] wire = serializer.serialize("customers", headers, customerText("hunter2"));
            assertFalse(contains(wire, "hunter2"));
            assertEquals(customerText("hunter2"), deserializer.deserialize("customers", headers, wire));
        } finally {
            serializer.close();
            deserializer.close();
        }

        // A shared Codec object, kept open by the adapters.
        Map<String, Object> shared = Map.of(FieldcryptSerdeConfig.CODEC, codec);
        EncryptingSerializer<byte[]> bytes = new EncryptingSerializer<>();
        bytes.configure(shared, false);
        bytes.serialize("customers", new RecordHeaders(), customer("a", "b"));
        bytes.close();
        assertNotNull(codec.stats(), "not closed by the adapter");

        assertThrows(org.apache.kafka.common.config.ConfigException.class,
                () -> new EncryptingSerializer<String>().configure(Map.of(), false));
        Map<String, Object> badPolicy = Map.of(FieldcryptSerdeConfig.POLICY, "{\"fieldcrypt_policy\": 99}");
        assertThrows(dev.fieldcrypt.PolicyException.class, () -> new DecryptingDeserializer<String>().configure(badPolicy, false));
        assertThrows(IllegalStateException.class, () -> new EncryptingSerializer<String>().serialize("t", "x"));
    }

    @Test
    void jsonRecordOfThePaymentWorkload() {
        var serializer = new EncryptingSerializer<>(new ByteArraySerializer(), codec);
        Headers headers = new RecordHeaders();
        byte[] wire = serializer.serialize("payments-eu", headers, Fixtures.payment());
        for (String pii : Fixtures.PII) {
            assertFalse(contains(wire, pii), pii);
        }
        Map<String, Object> doc = Json.object(new String(wire, StandardCharsets.UTF_8));
        assertEquals("Mountain View", ((Map<?, ?>) doc.get("address")).get("city"));
    }
}
