package dev.fieldcrypt.kafka;

import static dev.fieldcrypt.Fixtures.governance;
import static dev.fieldcrypt.Fixtures.governanceConfig;
import static dev.fieldcrypt.Fixtures.governanceCustomer;
import static dev.fieldcrypt.Fixtures.inClear;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import dev.fieldcrypt.Codec;
import dev.fieldcrypt.Json;
import dev.fieldcrypt.Kind;
import dev.fieldcrypt.PolicyException;
import dev.fieldcrypt.PolicyStatus;
import dev.fieldcrypt.Record;
import dev.fieldcrypt.ShreddedException;
import java.nio.charset.StandardCharsets;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.UUID;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * The governance scenario of schemas/governance/README.md through the broker at FIELDCRYPT_KAFKA:
 * a signed policy followed on a Kafka topic (published here with kafka-clients), hot reload, a
 * tampered revision refused, per-subject keys in the Kafka key store, and shredding seen by a
 * fresh and a running consumer codec.
 *
 * <p>Needs the library with librdkafka inside ({@code -Dfieldcrypt.library=fieldcrypt_ffi_kafka}
 * and {@code -Djna.library.path} on its directory): the default test run excludes this class, and
 * run-tests.sh runs it on its own ({@code -Dtest=GovernanceBrokerTest}). Skipped without a broker
 * unless FIELDCRYPT_SERVER_TESTS=1, as {@link BrokerTest}.
 */
@Timeout(120)
class GovernanceBrokerTest {
    static final String POLICY_ID = "governance-demo";

    @BeforeAll
    static void brokerAndKafkaLibrary() {
        BrokerTest.broker();
        if (!Codec.library().equals("fieldcrypt_ffi_kafka")) {
            fail("the Kafka policy source and key store need -Dfieldcrypt.library=fieldcrypt_ffi_kafka"
                    + " (this JVM loaded " + Codec.library() + ")");
        }
    }

    /** Publishes a policy document as the security team's tooling would: key = policy id, value = the file's bytes. */
    static void publish(KafkaProducer<String, byte[]> producer, String topic, String file) throws Exception {
        byte[] document = governance(file).getBytes(StandardCharsets.UTF_8);
        producer.send(new ProducerRecord<>(topic, POLICY_ID, document)).get(30, TimeUnit.SECONDS);
    }

    static String configuration(String policyTopic, String keyTopic, String profile) {
        String b = Json.quote(BrokerTest.bootstrap);
        return governanceConfig(
                "{\"kafka\": {\"bootstrap\": " + b + ", \"topic\": " + Json.quote(policyTopic) + ", \"timeout\": 20},"
                        + " \"policy_id\": " + Json.quote(POLICY_ID) + ", \"manual\": true}",
                "{\"kafka\": {\"bootstrap\": " + b + ", \"topic\": " + Json.quote(keyTopic) + ", \"timeout\": 20}}",
                profile == null ? "" : "\"profile\": " + Json.quote(profile));
    }

    static List<String> encryptShows(Codec codec, String topic, String id) {
        return inClear(codec.encrypt(topic, null, governanceCustomer(id), null).value(), id);
    }

    @Test
    void theGovernanceScenario() throws Exception {
        String run = "java-" + UUID.randomUUID();
        String policyTopic = "_fieldcrypt_policy-gov-" + run;
        String keyTopic = "_fieldcrypt_keys-gov-" + run;
        String topic = "customers-gov-" + run;

        Properties props = new Properties();
        props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, BrokerTest.bootstrap);
        props.put(ProducerConfig.ACKS_CONFIG, "all");
        try (KafkaProducer<String, byte[]> policies =
                        new KafkaProducer<>(props, new StringSerializer(), new ByteArraySerializer())) {
            // 1. Revision 1, signed: email encrypted, card not.
            publish(policies, policyTopic, "policy-r1.signed.json");
            try (Codec producer = Codec.fromConfig(configuration(policyTopic, keyTopic, null))) {
                PolicyStatus status = producer.policyStatus();
                assertEquals(POLICY_ID, status.policyId());
                assertEquals(1, status.revision());
                assertEquals("governance-test", status.signedBy());
                assertTrue(status.source().contains(policyTopic), status.source());
                assertEquals(List.of("card"), encryptShows(producer, topic, "c-1"));

                // 2. A tampered revision 2 is refused; revision 1 stays in force.
                publish(policies, policyTopic, "policy-r2.tampered.json");
                PolicyException refused = assertThrows(PolicyException.class, producer::reload);
                assertEquals(Kind.POLICY, refused.kind());
                status = producer.policyStatus();
                assertEquals(List.of(1L, 1L), List.of(status.revision(), status.rejections()));
                assertEquals(Kind.POLICY, status.lastError().kind());
                assertEquals(List.of("card"), encryptShows(producer, topic, "c-1"));

                // 3. The signed revision 2 loads without a restart: card is encrypted too.
                publish(policies, policyTopic, "policy-r2.signed.json");
                assertTrue(producer.reload());
                assertEquals(2, producer.policyStatus().revision());
                assertEquals(List.of(), encryptShows(producer, topic, "c-1"));

                // 4. Shredding c-2 through the producer's codec.
                Map<String, Record> records = new LinkedHashMap<>();
                for (String id : List.of("c-1", "c-2", "c-3")) {
                    records.put(id, producer.encrypt(topic, null, governanceCustomer(id), null));
                }
                String strict = configuration(policyTopic, keyTopic, "strict");
                try (Codec running = Codec.fromConfig(strict)) {
                    records.forEach((id, r) -> assertArrayEquals(governanceCustomer(id), running.decrypt(topic, r).value()));
                    assertTrue(producer.shred("c-2") >= 1);
                    try (Codec fresh = Codec.fromConfig(strict)) {
                        for (Codec consumer : List.of(fresh, running)) {
                            readsAllButTheShredded(consumer, topic, records);
                        }
                    }
                }
            }
        }
    }

    /** c-2's record fails with the shredded kind (within 10 s: the key store follows its topic); the others decrypt. */
    static void readsAllButTheShredded(Codec consumer, String topic, Map<String, Record> records) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        for (Map.Entry<String, Record> e : records.entrySet()) {
            String id = e.getKey();
            if (!id.equals("c-2")) {
                assertArrayEquals(governanceCustomer(id), consumer.decrypt(topic, e.getValue()).value());
                continue;
            }
            while (true) {
                try {
                    consumer.decrypt(topic, e.getValue());
                } catch (ShreddedException shredded) {
                    assertEquals(Kind.SHREDDED, shredded.kind());
                    break;
                }
                if (System.nanoTime() > deadline) {
                    fail("c-2's record still decrypts 10 s after the shred");
                }
                Thread.sleep(50);
            }
        }
    }
}
