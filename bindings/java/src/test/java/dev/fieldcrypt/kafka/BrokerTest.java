package dev.fieldcrypt.kafka;

import static dev.fieldcrypt.Fixtures.contains;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.fail;

import dev.fieldcrypt.Codec;
import dev.fieldcrypt.Fixtures;
import dev.fieldcrypt.Json;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.UUID;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * A real KafkaProducer and KafkaConsumer through the broker at FIELDCRYPT_KAFKA. Skipped when
 * neither FIELDCRYPT_KAFKA nor FIELDCRYPT_SERVER_TESTS=1 is set; FAILS when
 * FIELDCRYPT_SERVER_TESTS=1 and FIELDCRYPT_KAFKA is missing.
 */
@Timeout(120)
class BrokerTest {
    static String bootstrap;

    @BeforeAll
    static void broker() {
        bootstrap = System.getenv("FIELDCRYPT_KAFKA");
        boolean required = "1".equals(System.getenv("FIELDCRYPT_SERVER_TESTS"));
        if (bootstrap == null || bootstrap.isBlank()) {
            if (required) {
                fail("FIELDCRYPT_SERVER_TESTS=1 but FIELDCRYPT_KAFKA is not set: start a broker"
                        + " (scripts/servers.sh start kafka) and export FIELDCRYPT_KAFKA=host:port");
            }
            Assumptions.abort("no broker: set FIELDCRYPT_KAFKA (or FIELDCRYPT_SERVER_TESTS=1 to require one)");
        }
    }

    static String newTopic() throws Exception {
        String topic = "payments-java-" + UUID.randomUUID();
        try (Admin admin = Admin.create(Map.of(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap))) {
            admin.createTopics(List.of(new NewTopic(topic, 1, (short) 1))).all().get(30, TimeUnit.SECONDS);
        }
        return topic;
    }

    /** Payment records (the standard workload's, with its PII varied per record), compact JSON. */
    static List<String> payments(int n) {
        List<String> out = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            Map<String, Object> doc = Json.object(new String(Fixtures.payment(), StandardCharsets.UTF_8));
            doc.put("email", "user" + i + "@example.com");
            doc.put("ssn", String.format("900-00-%04d", i));
            if (i % 4 == 3) {
                doc.put("phone", null);
            }
            out.add(Json.write(doc));
        }
        return out;
    }

    static <V> List<ConsumerRecord<String, V>> consume(String topic, Deserializer<V> values, int n) {
        Properties props = new Properties();
        props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ConsumerConfig.GROUP_ID_CONFIG, "fieldcrypt-java-" + UUID.randomUUID());
        props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        List<ConsumerRecord<String, V>> out = new ArrayList<>();
        try (KafkaConsumer<String, V> consumer = new KafkaConsumer<>(props, new StringDeserializer(), values)) {
            consumer.assign(List.of(new TopicPartition(topic, 0)));
            consumer.seekToBeginning(List.of(new TopicPartition(topic, 0)));
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
            while (out.size() < n && System.nanoTime() < deadline) {
                consumer.poll(Duration.ofMillis(500)).forEach(out::add);
            }
        }
        assertEquals(n, out.size(), "records consumed");
        return out;
    }

    @Test
    void producerToConsumerThroughTheBroker() throws Exception {
        String topic = newTopic();
        List<String> sent = payments(20);
        try (Codec codec = Fixtures.codec()) {
            Properties props = new Properties();
            props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
            props.put(ProducerConfig.ACKS_CONFIG, "all");
            try (KafkaProducer<String, String> producer = new KafkaProducer<>(props, new StringSerializer(),
                    new EncryptingSerializer<>(new StringSerializer(), codec))) {
                for (int i = 0; i < sent.size(); i++) {
                    ProducerRecord<String, String> r = new ProducerRecord<>(topic, "k" + i, sent.get(i));
                    r.headers().add("trace", ("t" + i).getBytes(StandardCharsets.UTF_8));
                    producer.send(r).get(30, TimeUnit.SECONDS);
                }
                // A tombstone passes through.
                producer.send(new ProducerRecord<>(topic, "gone", null)).get(30, TimeUnit.SECONDS);
            }

            // What the broker stores: no PII, a fieldcrypt header.
            List<ConsumerRecord<String, byte[]>> stored = consume(topic, new ByteArrayDeserializer(), sent.size() + 1);
            for (int i = 0; i < sent.size(); i++) {
                byte[] value = stored.get(i).value();
                assertFalse(contains(value, "user" + i + "@example.com"));
                assertFalse(contains(value, String.format("900-00-%04d", i)));
                for (String pii : Fixtures.PII) {
                    assertFalse(contains(value, pii), pii);
                }
                assertNotNull(stored.get(i).headers().lastHeader("fieldcrypt"));
            }
            assertNull(stored.get(sent.size()).value());

            // Through the decrypting deserializer: the records as sent, headers as the producer wrote them.
            List<ConsumerRecord<String, String>> got =
                    consume(topic, new DecryptingDeserializer<>(new StringDeserializer(), codec), sent.size() + 1);
            for (int i = 0; i < sent.size(); i++) {
                ConsumerRecord<String, String> r = got.get(i);
                assertEquals("k" + i, r.key());
                assertEquals(sent.get(i), r.value());
                assertNull(r.headers().lastHeader("fieldcrypt"));
                assertArrayEquals(("t" + i).getBytes(StandardCharsets.UTF_8), r.headers().lastHeader("trace").value());
            }
            assertEquals("gone", got.get(sent.size()).key());
            assertNull(got.get(sent.size()).value());
        }
    }

    /** Producer and consumer made from properties only, as a Kafka application configures them. */
    @Test
    void configuredByClassName() throws Exception {
        String topic = newTopic();
        List<String> sent = payments(5);
        Map<String, Object> fc = new LinkedHashMap<>();
        fc.put(FieldcryptSerdeConfig.POLICY, Fixtures.POLICY.toString());
        fc.put(FieldcryptSerdeConfig.CONFIG, Fixtures.config());

        Map<String, Object> producerProps = new HashMap<>(fc);
        producerProps.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        producerProps.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        producerProps.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, EncryptingSerializer.class.getName());
        producerProps.put(FieldcryptSerdeConfig.VALUE_SERIALIZER, StringSerializer.class.getName());
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(producerProps)) {
            for (String v : sent) {
                producer.send(new ProducerRecord<>(topic, "k", v)).get(30, TimeUnit.SECONDS);
            }
        }
        Map<String, Object> consumerProps = new HashMap<>(fc);
        consumerProps.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        consumerProps.put(ConsumerConfig.GROUP_ID_CONFIG, "fieldcrypt-java-" + UUID.randomUUID());
        consumerProps.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        consumerProps.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        consumerProps.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, DecryptingDeserializer.class.getName());
        consumerProps.put(FieldcryptSerdeConfig.VALUE_DESERIALIZER, StringDeserializer.class.getName());
        List<String> got = new ArrayList<>();
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(consumerProps)) {
            consumer.subscribe(List.of(topic));
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
            while (got.size() < sent.size() && System.nanoTime() < deadline) {
                consumer.poll(Duration.ofMillis(500)).forEach(r -> got.add(r.value()));
            }
        }
        assertEquals(sent, got);
    }
}
