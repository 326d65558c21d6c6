package dev.fieldcrypt;

import static dev.fieldcrypt.Fixtures.governance;
import static dev.fieldcrypt.Fixtures.governanceConfig;
import static dev.fieldcrypt.Fixtures.governanceCustomer;
import static dev.fieldcrypt.Fixtures.inClear;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.fieldcrypt.kafka.DecryptingDeserializer;
import dev.fieldcrypt.kafka.EncryptingSerializer;
import dev.fieldcrypt.kafka.FieldcryptSerdeConfig;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.apache.kafka.common.header.internals.RecordHeaders;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Signed policies followed from a file (schemas/governance, no broker): {@link Codec#fromConfig},
 * {@link Codec#reload()} and {@link Codec#policyStatus()}.
 */
class GovernanceTest {
    static final String TOPIC = "customers-java";

    @TempDir
    Path dir;

    /** The configuration of a manual file policy source at {@code policy} and a file key store. */
    String fileConfig(Path policy, String extra) {
        return governanceConfig("{\"file\": " + Json.quote(policy.toString())
                + ", \"policy_id\": \"governance-demo\", \"manual\": true}",
                "{\"file\": " + Json.quote(dir.resolve("keys.json").toString()) + "}", extra);
    }

    static List<String> encryptShows(Codec codec, String id) {
        return inClear(codec.encrypt(TOPIC, null, governanceCustomer(id), null).value(), id);
    }

    @Test
    void aFileSourceFollowsSignedRevisionsAndRefusesATamperedOne() throws Exception {
        Path policy = dir.resolve("policy.json");
        Files.writeString(policy, governance("policy-r1.signed.json"));
        try (Codec codec = Codec.fromConfig(fileConfig(policy, ""))) {
            PolicyStatus s = codec.policyStatus();
            assertEquals("governance-demo", s.policyId());
            assertEquals(1, s.revision());
            assertEquals("governance-test", s.signedBy());
            assertNotNull(s.source());
            assertTrue(s.source().contains(policy.toString()), s.source());
            assertEquals(List.of(1L, 0L, 0L), List.of(s.loads(), s.rejections(), s.fetchErrors()));
            assertNull(s.lastError());
            assertEquals(List.of("card"), encryptShows(codec, "c-1"));
            assertFalse(codec.reload(), "the same document again is nothing new");

            // A tampered revision 2 is refused; revision 1 stays in force.
            Files.writeString(policy, governance("policy-r2.tampered.json"));
            PolicyException refused = assertThrows(PolicyException.class, codec::reload);
            assertEquals(Kind.POLICY, refused.kind());
            s = codec.policyStatus();
            assertEquals(1, s.revision());
            assertEquals(1, s.rejections());
            assertEquals(1, s.loads());
            assertNotNull(s.lastError());
            assertEquals("policy", s.lastError().kindName());
            assertEquals(Kind.POLICY, s.lastError().kind());
            assertFalse(s.lastError().message().isEmpty());
            assertEquals(List.of("card"), encryptShows(codec, "c-1"));

            // The signed revision 2 loads without a new codec: card is encrypted too.
            Files.writeString(policy, governance("policy-r2.signed.json"));
            assertTrue(codec.reload());
            s = codec.policyStatus();
            assertEquals(2, s.revision());
            assertEquals("governance-test", s.signedBy());
            assertEquals(List.of(2L, 1L), List.of(s.loads(), s.rejections()));
            assertEquals(List.of(), encryptShows(codec, "c-1"));

            Record sealed = codec.encrypt(TOPIC, null, governanceCustomer("c-2"), null);
            assertArrayEquals(governanceCustomer("c-2"), codec.decrypt(TOPIC, sealed).value());

            // A source that cannot be read: an error, counted; revision 2 stays.
            Files.delete(policy);
            assertThrows(FieldcryptException.class, codec::reload);
            s = codec.policyStatus();
            assertEquals(List.of(2L, 1L, 1L), List.of(s.revision(), s.rejections(), s.fetchErrors()));
            assertNotNull(s.lastError());
            assertEquals(List.of(), encryptShows(codec, "c-1"));
        }
    }

    @Test
    void aSignedPolicyGivenOnceHasAFixedStatusAndNoReload() {
        String config = fileConfig(dir.resolve("unused.json"), "").replaceFirst("\"policy_source\": \\{[^}]*\\}, ", "");
        assertFalse(config.contains("policy_source"), config);
        try (Codec codec = new Codec(governance("policy-r1.signed.json"), config)) {
            PolicyStatus s = codec.policyStatus();
            assertEquals(new PolicyStatus("governance-demo", 1, "governance-test", null, 1, 0, 0, null), s);
            ConfigException e = assertThrows(ConfigException.class, codec::reload);
            assertEquals(Kind.CONFIG, e.kind());
            assertEquals(List.of("card"), encryptShows(codec, "c-1"));
        }
        // A tampered envelope is refused at once.
        assertThrows(PolicyException.class, () -> new Codec(governance("policy-r2.tampered.json"), config));
        // The demo policy, unsigned, without trusted keys.
        try (Codec codec = Fixtures.codec()) {
            PolicyStatus s = codec.policyStatus();
            assertNull(s.signedBy());
            assertNull(s.source());
            assertEquals(1, s.loads());
            assertThrows(ConfigException.class, codec::reload);
        }
    }

    @Test
    void fromConfigNeedsAPolicySourceAndAVerifiablePolicy() throws Exception {
        assertThrows(ConfigException.class, () -> Codec.fromConfig(Fixtures.config()));
        assertThrows(ConfigException.class, () -> new Codec(Fixtures.policy(), fileConfig(dir.resolve("p.json"), "")),
                "a policy and a policy_source");
        Path policy = dir.resolve("policy.json");
        Files.writeString(policy, governance("policy-r2.tampered.json"));
        assertThrows(PolicyException.class, () -> Codec.fromConfig(fileConfig(policy, "")));
        Files.writeString(policy, governance("policy-r1.json")); // unsigned
        assertThrows(PolicyException.class, () -> Codec.fromConfig(fileConfig(policy, "")));
    }

    /** Without librdkafka in the library, the Kafka key store and policy source are config errors. */
    @Test
    void kafkaOptionsNeedTheKafkaLibrary() throws Exception {
        Assumptions.assumeTrue(Codec.library().equals("fieldcrypt_ffi"),
                "the library " + Codec.library() + " may have a Kafka client");
        Path policy = dir.resolve("policy.json");
        Files.writeString(policy, governance("policy-r1.signed.json"));
        String kafkaKeys = fileConfig(policy, "").replaceFirst("\"key_store\": \\{\"file\": [^}]*\\}",
                "\"key_store\": {\"kafka\": {\"bootstrap\": \"127.0.0.1:1\", \"topic\": \"keys\"}}");
        assertTrue(kafkaKeys.contains("\"kafka\""), kafkaKeys);
        ConfigException e = assertThrows(ConfigException.class, () -> Codec.fromConfig(kafkaKeys));
        assertTrue(e.getMessage().contains("fieldcrypt_ffi_kafka"), e.getMessage());
        assertTrue(e.getMessage().contains("key_store.kafka"), e.getMessage());

        String kafkaPolicy = governanceConfig("{\"kafka\": {\"bootstrap\": \"127.0.0.1:1\", \"topic\": \"policies\"},"
                + " \"policy_id\": \"governance-demo\", \"manual\": true}",
                "{\"file\": " + Json.quote(dir.resolve("keys.json").toString()) + "}", "");
        e = assertThrows(ConfigException.class, () -> Codec.fromConfig(kafkaPolicy));
        assertTrue(e.getMessage().contains("policy_source.kafka"), e.getMessage());
    }

    /** The Kafka adapters made from properties: a configuration with a policy_source needs no policy. */
    @Test
    void adaptersFromAConfigurationWithAPolicySource() throws Exception {
        Path policy = dir.resolve("policy.json");
        Files.writeString(policy, governance("policy-r2.signed.json"));
        Map<String, Object> props = Map.of(FieldcryptSerdeConfig.CONFIG, fileConfig(policy, ""));
        try (EncryptingSerializer<byte[]> serializer = new EncryptingSerializer<>();
                DecryptingDeserializer<byte[]> deserializer = new DecryptingDeserializer<>()) {
            serializer.configure(props, false);
            deserializer.configure(props, false);
            RecordHeaders headers = new RecordHeaders();
            byte[] wire = serializer.serialize(TOPIC, headers, governanceCustomer("c-9"));
            assertEquals(List.of(), inClear(wire, "c-9"));
            assertArrayEquals(governanceCustomer("c-9"), deserializer.deserialize(TOPIC, headers, wire));
        }
    }

    /** The status JSON reader: escapes, nulls, members it does not know; malformed text is an error. */
    @Test
    void policyStatusJson() {
        PolicyStatus s = PolicyStatus.parse("{\"policy_id\":\"a\\\"b\\u00e9\\n\",\"revision\":18446744073709551615,"
                + "\"signed_by\":null,\"source\":\"file C:\\\\p.json\",\"loads\":3,\"rejections\":0,"
                + "\"fetch_errors\":2,\"future\":{\"x\":true},"
                + "\"last_error\":{\"kind\":\"some_new_kind\",\"message\":\"unreachable \\/ \\ud83d\\ude00\"}}");
        assertEquals("a\"b\u00e9\n", s.policyId());
        assertEquals(-1L, s.revision(), "u64 max, as Java's unsigned long");
        assertNull(s.signedBy());
        assertEquals("file C:\\p.json", s.source());
        assertEquals(List.of(3L, 0L, 2L), List.of(s.loads(), s.rejections(), s.fetchErrors()));
        assertEquals(new PolicyStatus.LastError("some_new_kind", "unreachable / \ud83d\ude00"), s.lastError());
        assertEquals(Kind.OTHER, s.lastError().kind());
        assertEquals(Kind.KMS, new PolicyStatus.LastError("kms", "").kind());
        assertThrows(IllegalStateException.class, () -> PolicyStatus.parse("{\"policy_id\": \"a\""));
        assertThrows(IllegalStateException.class, () -> PolicyStatus.parse("{\"policy_id\": \"a\"}"));
    }
}
