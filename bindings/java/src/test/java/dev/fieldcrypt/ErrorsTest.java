package dev.fieldcrypt;

import static dev.fieldcrypt.Fixtures.customer;
import static dev.fieldcrypt.Fixtures.header;
import static dev.fieldcrypt.Fixtures.headers;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Base64;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;

/** Every error kind a Java caller can provoke without servers, plus a stub Vault for the KMS answers. */
class ErrorsTest {
    private final Codec codec = Fixtures.codec();

    @AfterEach
    void close() {
        codec.close();
    }

    static <T extends FieldcryptException> T raises(Class<T> cls, Kind kind, Executable call) {
        T e = assertThrows(cls, call);
        assertSame(cls, e.getClass(), () -> e.getClass().getSimpleName() + ": " + e.getMessage());
        assertEquals(kind, e.kind());
        assertEquals(kind.code(), e.status());
        assertEquals(-1, e.index());
        assertFalse(e.getMessage().isBlank(), "a message");
        return e;
    }

    @Test
    void exceptionClasses() {
        Object[][] table = {
            {PolicyException.class, Kind.POLICY}, {ConfigException.class, Kind.CONFIG},
            {RecordException.class, Kind.RECORD}, {FormatException.class, Kind.FORMAT},
            {UnsupportedVersionException.class, Kind.UNSUPPORTED_VERSION}, {CryptoException.class, Kind.CRYPTO},
            {KeyNotFoundException.class, Kind.KEY_NOT_FOUND}, {AccessDeniedException.class, Kind.ACCESS_DENIED},
            {KmsException.class, Kind.KMS}, {RegistryException.class, Kind.REGISTRY},
            {LimitExceededException.class, Kind.LIMIT_EXCEEDED}, {ShreddedException.class, Kind.SHREDDED},
            {InvalidArgumentException.class, Kind.INVALID_ARGUMENT}, {PanicException.class, Kind.PANIC},
        };
        for (Object[] row : table) {
            Kind kind = (Kind) row[1];
            FieldcryptException e = FieldcryptException.of(kind.code(), "m", true, 3);
            assertSame(row[0], e.getClass());
            assertTrue(RuntimeException.class.isInstance(e));
            assertEquals(kind, e.kind());
            assertTrue(e.isRetryable());
            assertEquals(3, e.index());
        }
        FieldcryptException unknown = FieldcryptException.of(999, "m", false, -1);
        assertSame(FieldcryptException.class, unknown.getClass());
        assertEquals(Kind.UNKNOWN, unknown.kind());
        assertEquals(999, unknown.status());
    }

    // ---- policy and configuration ----

    @Test
    void policyErrors() {
        raises(PolicyException.class, Kind.POLICY, () -> new Codec("{not json", null));
        String policy = Fixtures.policy();
        raises(PolicyException.class, Kind.POLICY, () -> new Codec(policy.replaceFirst("\\{", "{\"bogus\": 1,"), null));
        PolicyException e = raises(PolicyException.class, Kind.POLICY,
                () -> new Codec(policy.replace("local://demo-kek", "ftp://nope"), null));
        assertTrue(e.getMessage().contains("customer-secrets"), "the message names the rule: " + e.getMessage());
    }

    @Test
    void configErrors() {
        String policy = Fixtures.policy();
        raises(ConfigException.class, Kind.CONFIG, () -> new Codec(policy, Fixtures.config("\"profile\": \"nobody\"")));
        ConfigException e = raises(ConfigException.class, Kind.CONFIG,
                () -> new Codec(policy, Fixtures.config("\"limitz\": {}")));
        assertTrue(e.getMessage().contains("limitz"), e.getMessage());
        raises(ConfigException.class, Kind.CONFIG, () -> new Codec(policy, "{\"kms\": {\"hsm\": {}}}"));
        raises(ConfigException.class, Kind.CONFIG, () -> new Codec(policy, "not json"));
        raises(ConfigException.class, Kind.CONFIG,
                () -> new Codec(policy, "{\"kms\": {\"local\": {\"key_file\": \"/nonexistent/keys.json\"}}}"));
        ConfigException secret = raises(ConfigException.class, Kind.CONFIG,
                () -> new Codec(policy, "{\"kms\": {\"vault\": {\"token\": \"s.SECRET-1\", \"tokn\": \"s.SECRET-2\"}}}"));
        assertFalse(secret.getMessage().contains("SECRET"), "never a secret in a message");
        // No client for the KEK's scheme: found when a record needs it.
        try (Codec noKms = new Codec(policy, "{}")) {
            raises(ConfigException.class, Kind.CONFIG, () -> noKms.encrypt("customers", null, customer("a", "b"), null));
        }
    }

    // ---- records ----

    @Test
    void recordErrors() {
        RecordException e = raises(RecordException.class, Kind.RECORD,
                () -> codec.encrypt("customers", null, Fixtures.utf8("{\"password\":\"hunter2\","), null));
        assertFalse(e.getMessage().contains("hunter2"), "never plaintext in a message");
        Record sealed = codec.encrypt("customers", null, customer("a", "b"), null);
        raises(RecordException.class, Kind.RECORD, () -> codec.encrypt("customers", sealed));
    }

    @Test
    void formatAndVersionErrors() {
        Record sealed = codec.encrypt("customers", null, customer("a", "b"), null);
        byte[] h = header(sealed.headers(), "fieldcrypt");
        raises(FormatException.class, Kind.FORMAT,
                () -> codec.decrypt("customers", null, sealed.value(), headers("fieldcrypt", java.util.Arrays.copyOf(h, 20))));
        raises(FormatException.class, Kind.FORMAT,
                () -> codec.decrypt("customers", null, sealed.value(), headers("fieldcrypt", null)));
        List<Header> twice = new ArrayList<>(sealed.headers());
        twice.addAll(sealed.headers());
        raises(FormatException.class, Kind.FORMAT, () -> codec.decrypt("customers", null, sealed.value(), twice));
        byte[] v9 = h.clone();
        v9[0] = 9;
        raises(UnsupportedVersionException.class, Kind.UNSUPPORTED_VERSION,
                () -> codec.decrypt("customers", null, sealed.value(), headers("fieldcrypt", v9)));
    }

    @Test
    void cryptoErrors() {
        Record sealed = codec.encrypt("customers", null, customer("a", "hunter2"), null);
        Map<String, Object> doc = Json.object(new String(sealed.value(), StandardCharsets.UTF_8));
        byte[] ct = Base64.getDecoder().decode((String) doc.get("password"));
        ct[ct.length - 1] ^= 1;
        Map<String, Object> tampered = new LinkedHashMap<>(doc);
        tampered.put("password", Base64.getEncoder().encodeToString(ct));
        raises(CryptoException.class, Kind.CRYPTO,
                () -> codec.decrypt("customers", null, Fixtures.utf8(Json.write(tampered)), sealed.headers()));
        // A ciphertext moved from another record does not open here.
        Map<String, Object> other = Json.object(new String(
                codec.encrypt("customers", null, customer("a", "hunter2"), null).value(), StandardCharsets.UTF_8));
        Map<String, Object> moved = new LinkedHashMap<>(doc);
        moved.put("password", other.get("password"));
        raises(CryptoException.class, Kind.CRYPTO,
                () -> codec.decrypt("customers", null, Fixtures.utf8(Json.write(moved)), sealed.headers()));
        byte[] h = header(sealed.headers(), "fieldcrypt").clone();
        h[h.length - 1] ^= 1;
        raises(CryptoException.class, Kind.CRYPTO,
                () -> codec.decrypt("customers", null, sealed.value(), headers("fieldcrypt", h)));
    }

    @Test
    void keyNotFound() {
        String config = "{\"kms\": {\"local\": {\"secrets\": {\"another-kek\": \"x\"}}}}";
        try (Codec withoutKek = new Codec(Fixtures.policy(), config)) {
            KeyNotFoundException e = raises(KeyNotFoundException.class, Kind.KEY_NOT_FOUND,
                    () -> withoutKek.encrypt("customers", null, customer("a", "b"), null));
            assertTrue(e.getMessage().contains("local://demo-kek"), e.getMessage());
            // A consumer that cannot unwrap the key gets its profile's fallback, not an error.
            Record sealed = codec.encrypt("customers", null, customer("a", "b"), null);
            assertEquals(sealed, withoutKek.decrypt("customers", sealed));
            assertEquals(2, withoutKek.stats().fieldsWithheld());
        }
    }

    @Test
    void batchErrorsSayWhichRecord() {
        List<Record> records = new ArrayList<>();
        for (int i = 0; i < 5; i++) {
            records.add(new Record(null, i == 3 ? Fixtures.utf8("{broken") : customer("c", "pw"), null));
        }
        RecordException e = assertThrows(RecordException.class, () -> codec.encryptBatch("customers", records));
        assertEquals(3, e.index());
    }

    @Test
    void invalidArgumentFromTheAbi() {
        // Malformed packed headers can only come from a broken binding: called raw here.
        long[] out = new long[3];
        long[] err = new long[5];
        byte[] topic = Fixtures.utf8("customers");
        byte[] value = customer("a", "b");
        byte[] badHeaders = {5, 0, 0, 0, 1};
        long handle = newHandle();
        try {
            int status = Ffi.fc_codec_encrypt(handle, topic, topic.length, null, -1, value, value.length,
                    badHeaders, badHeaders.length, out, err);
            FieldcryptException e = Ffi.error(status, err);
            assertSame(InvalidArgumentException.class, e.getClass(), e.getMessage());
            assertEquals(0, out[0], "no output on failure");
        } finally {
            Ffi.fc_codec_free(handle);
        }
        Ffi.fc_codec_free(0); // free(NULL) is a no-op
    }

    private static long newHandle() {
        byte[] p = Fixtures.utf8(Fixtures.policy());
        byte[] c = Fixtures.utf8(Fixtures.config());
        long[] out = new long[1];
        long[] err = new long[5];
        assertEquals(0, Ffi.fc_codec_new(p, p.length, c, c.length, out, err));
        return out[0];
    }

    @Test
    void unreachableKmsIsRetryable() {
        String policy = Fixtures.policy().replace("local://demo-kek",
                "aws-kms://arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab");
        String config = "{\"kms\": {\"aws\": {\"endpoint\": \"http://127.0.0.1:1\", \"access_key_id\": \"AKIAIOSFODNN7EXAMPLE\","
                + " \"secret_access_key\": \"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\", \"max_retries\": 0, \"timeout\": 2}}}";
        try (Codec c = new Codec(policy, config)) {
            KmsException e = raises(KmsException.class, Kind.KMS, () -> c.encrypt("customers", null, customer("a", "b"), null));
            assertTrue(e.isRetryable());
            assertFalse(e.getMessage().contains("wJalrXUtnFEMI"));
        }
    }

    @Test
    void unreachableRegistry() {
        // A Confluent-framed record (magic 0, schema id 1): its schema is looked up in the registry.
        byte[] framed = {0, 0, 0, 0, 1, 2, 'x'};
        try (Codec c = new Codec(Fixtures.policy(),
                Fixtures.config("\"registry\": {\"url\": \"http://127.0.0.1:1\", \"max_retries\": 0, \"timeout\": 2}"))) {
            RegistryException e = raises(RegistryException.class, Kind.REGISTRY,
                    () -> c.encrypt("payments", null, framed, null));
            assertTrue(e.isRetryable(), e.getMessage());
        }
    }

    /** Vault Transit answering with a status and error (ported from the Python binding's tests). */
    @Test
    void kmsAnswersAsErrors() throws IOException {
        int[] status = {0};
        HttpServer vault = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
        vault.createContext("/", ex -> {
            ex.getRequestBody().readAllBytes();
            byte[] body = ("{\"errors\": [\"stub error " + status[0] + "\"]}").getBytes(StandardCharsets.UTF_8);
            ex.getResponseHeaders().add("Content-Type", "application/json");
            ex.sendResponseHeaders(status[0], body.length);
            ex.getResponseBody().write(body);
            ex.close();
        });
        vault.start();
        String policy = Fixtures.policy().replace("local://demo-kek",
                "vault://127.0.0.1:" + vault.getAddress().getPort() + "/transit/keys/pii");
        String config = "{\"kms\": {\"vault\": {\"token\": \"s.stub-token\", \"plain_http\": true, \"max_retries\": 0, \"timeout\": 5}}}";
        try {
            // A new codec for each answer: a codec caches denials.
            Executable encrypt = () -> {
                try (Codec c = new Codec(policy, config)) {
                    c.encrypt("customers", null, customer("a", "b"), null);
                }
            };
            status[0] = 403;
            AccessDeniedException denied = raises(AccessDeniedException.class, Kind.ACCESS_DENIED, encrypt);
            assertFalse(denied.isRetryable());
            assertFalse(denied.getMessage().contains("s.stub-token"));
            status[0] = 404;
            raises(KeyNotFoundException.class, Kind.KEY_NOT_FOUND, encrypt);
            status[0] = 503;
            assertTrue(raises(KmsException.class, Kind.KMS, encrypt).isRetryable());
        } finally {
            vault.stop(0);
        }
    }
}
