package dev.fieldcrypt;

import static dev.fieldcrypt.Fixtures.contains;
import static dev.fieldcrypt.Fixtures.customer;
import static dev.fieldcrypt.Fixtures.header;
import static dev.fieldcrypt.Fixtures.headers;
import static dev.fieldcrypt.Fixtures.utf8;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

class CodecTest {
    private final Codec codec = Fixtures.codec();

    @AfterEach
    void close() {
        codec.close();
    }

    @Test
    void shredAndRotateSubjectWithAFileKeyStore(@org.junit.jupiter.api.io.TempDir java.nio.file.Path dir) {
        String store = dir.resolve("keys.jsonl").toString().replace("\\", "/");
        String policy = "{\"fieldcrypt_policy\": 1, \"id\": \"java-shred\", \"encrypt\": [{\"name\": \"r\", \"topics\": [\"t\"], "
                + "\"fields\": [\"email\"], \"key\": \"local://k\", \"subject\": \"customer_id\"}], "
                + "\"profiles\": {\"strict\": {\"decrypt\": [{\"topics\": [\"*\"]}], \"otherwise\": \"error\"}}}";
        String config = "{\"kms\": {\"local\": {\"secrets\": {\"k\": \"java\"}}}, \"key_store\": {\"file\": \"" + store
                + "\", \"refresh\": 0}";
        try (Codec producer = new Codec(policy, config + "}");
                Codec consumer = new Codec(policy, config + ", \"profile\": \"strict\"}")) {
            Record one = producer.encrypt("t", null, utf8("{\"customer_id\":\"c-1\",\"email\":\"a@x\"}"), List.of());
            Record two = producer.encrypt("t", null, utf8("{\"customer_id\":\"c-2\",\"email\":\"b@x\"}"), List.of());
            producer.rotateSubject("c-1");
            assertEquals(2, producer.shred("c-1"));
            ShreddedException e = assertThrows(ShreddedException.class,
                    () -> consumer.decrypt("t", one.key(), one.value(), one.headers()));
            assertEquals(Kind.SHREDDED, e.kind());
            assertNotNull(consumer.decrypt("t", two.key(), two.value(), two.headers()).value());
        }
    }

    @Test
    void version() {
        assertTrue(Codec.version().matches("\\d+\\.\\d+\\.\\d+.*"), Codec.version());
    }

    /** The classes and library under test: run-tests.sh's second run tests the built jar. */
    @Test
    void classesUnderTest() throws Exception {
        java.nio.file.Path expected = java.nio.file.Path.of(System.getProperty("fieldcrypt.test.classes", "."));
        java.nio.file.Path actual = java.nio.file.Path.of(Codec.class.getProtectionDomain().getCodeSource().getLocation().toURI());
        if (System.getProperty("fieldcrypt.test.classes") != null) {
            assertEquals(expected.toRealPath(), actual.toRealPath());
        }
        System.err.printf("fieldcrypt %s on Java %s: classes %s, library %s%n", Codec.version(),
                System.getProperty("java.version"), actual,
                com.sun.jna.NativeLibrary.getInstance(Ffi.LIBRARY).getFile());
    }

    @Test
    void kindsAreTheLibrarysStatusNames() {
        for (Kind k : Kind.values()) {
            if (k != Kind.UNKNOWN) {
                assertEquals(k.kindName(), Ffi.cString(Ffi.fc_status_name(k.code())), k.name());
                assertEquals(k, Kind.of(k.code()));
            }
        }
        assertEquals("unknown", Ffi.cString(Ffi.fc_status_name(12345)));
        assertEquals(Kind.UNKNOWN, Kind.of(12345));
    }

    @Test
    void roundTrip() {
        byte[] value = customer("Ada", "hunter2");
        List<Header> hs = headers("trace", "t-1");
        Record sealed = codec.encrypt("customers", utf8("k1"), value, hs);
        assertFalse(contains(sealed.value(), "hunter2"));
        assertFalse(contains(sealed.value(), "4111-1111-1111-1111"));
        assertTrue(contains(sealed.value(), "London"), "fields outside the policy stay as they are");
        assertEquals(List.of("trace", "fieldcrypt"), sealed.headers().stream().map(Header::name).toList());
        assertArrayEquals(utf8("k1"), sealed.key());

        Record opened = codec.decrypt("customers", sealed);
        assertEquals(new Record(utf8("k1"), value, hs), opened);
    }

    @Test
    void paymentRecord() {
        byte[] payment = Fixtures.payment();
        Record sealed = codec.encrypt("payments", null, payment, null);
        for (String pii : Fixtures.PII) {
            assertTrue(contains(payment, pii));
            assertFalse(contains(sealed.value(), pii), pii);
        }
        assertTrue(contains(sealed.value(), "Mountain View"));
        assertNotNull(header(sealed.headers(), "fieldcrypt"));
        // payments-* matches too; the ciphertext is bound to its topic.
        assertArrayEquals(payment, codec.decrypt("payments", sealed).value());
        assertEquals(List.of(), codec.decrypt("payments", sealed).headers());
    }

    @Test
    void absentAndEmptyKeysAndValuesStayDistinct() {
        byte[] value = customer("Ada", "pw");
        for (byte[] key : new byte[][] {null, new byte[0], utf8("k")}) {
            Record sealed = codec.encrypt("customers", key, value, null);
            assertArrayEquals(key, sealed.key());
            Record opened = codec.decrypt("customers", sealed);
            assertArrayEquals(key, opened.key());
            assertArrayEquals(value, opened.value());
        }
        // A tombstone: nothing to encrypt, no header.
        Record tombstone = codec.encrypt("customers", utf8("k"), null, null);
        assertNull(tombstone.value());
        assertEquals(List.of(), tombstone.headers());
        assertNull(codec.decrypt("customers", tombstone).value());
        // A topic without rules: passed through, empty and absent kept apart.
        for (byte[] v : new byte[][] {null, new byte[0], utf8("not json")}) {
            for (byte[] k : new byte[][] {null, new byte[0]}) {
                Record out = codec.encrypt("other", k, v, null);
                assertEquals(new Record(k, v, List.of()), out);
                assertEquals(out, codec.decrypt("other", out));
            }
        }
    }

    @Test
    void headersArePreserved() {
        List<Header> hs = headers("a", "1", "dup", "x", "null-value", null, "empty", new byte[0], "dup", "y",
                "ünïcödé", "v", "binary", new byte[] {0, (byte) 0xFF, 10});
        Record sealed = codec.encrypt("customers", null, customer("Ada", "pw"), hs);
        assertEquals(hs, sealed.headers().subList(0, hs.size()));
        assertEquals(hs.size() + 1, sealed.headers().size());
        Record opened = codec.decrypt("customers", sealed);
        assertEquals(hs, opened.headers());
        assertNull(opened.headers().get(2).value());
        assertArrayEquals(new byte[0], opened.headers().get(3).value());
    }

    @Test
    void inputsAreNotChanged() {
        byte[] value = customer("Ada", "pw");
        byte[] copy = value.clone();
        byte[] hv = utf8("h");
        codec.encrypt("customers", null, value, headers("h", hv));
        assertArrayEquals(copy, value);
        assertArrayEquals(utf8("h"), hv);
    }

    @Test
    void profiles() {
        Record sealed = codec.encrypt("customers", null, customer("Ada", "hunter2"), null);
        try (Codec support = Fixtures.codec("support"); Codec visaOnly = Fixtures.codec("visa-only")) {
            Map<String, Object> masked = Json.object(new String(support.decrypt("customers", sealed).value()));
            assertEquals("****", masked.get("password"));
            assertEquals("4111-1111-1111-1111", masked.get("visa"));

            Record partial = visaOnly.decrypt("customers", sealed);
            Map<String, Object> doc = Json.object(new String(partial.value()));
            assertEquals("4111-1111-1111-1111", doc.get("visa"));
            assertNotEquals("hunter2", doc.get("password"));
            assertNotNull(header(partial.headers(), "fieldcrypt"), "ciphertext left: the header stays");
        }
    }

    @Test
    void batches() {
        List<Record> records = new ArrayList<>();
        for (int i = 0; i < 50; i++) {
            records.add(new Record(i % 3 == 0 ? null : utf8("k" + i), customer("c" + i, "pw-" + i),
                    headers("i", Integer.toString(i))));
        }
        List<Record> sealed = codec.encryptBatch("customers", records);
        assertEquals(records.size(), sealed.size());
        for (int i = 0; i < records.size(); i++) {
            assertFalse(contains(sealed.get(i).value(), "pw-" + i));
            assertEquals(sealed.get(i).headers().size(), 2);
        }
        assertEquals(records, codec.decryptBatch("customers", sealed));
        // Batch and single calls produce the same format.
        assertEquals(records.get(7), codec.decrypt("customers", sealed.get(7)));
        assertEquals(List.of(), codec.encryptBatch("customers", List.of()));
    }

    @Test
    void stats() {
        Stats zero = codec.stats();
        assertEquals(0, zero.recordsEncrypted());
        List<Record> sealed = new ArrayList<>();
        for (int i = 0; i < 5; i++) {
            sealed.add(codec.encrypt("customers", null, customer("c", "pw"), null));
        }
        for (Record r : sealed) {
            codec.decrypt("customers", r);
        }
        Stats s = codec.stats();
        assertEquals(5, s.recordsEncrypted());
        assertEquals(5, s.recordsDecrypted());
        assertEquals(10, s.fieldsEncrypted());
        assertEquals(10, s.fieldsDecrypted());
        assertEquals(0, s.fieldsWithheld());
        assertTrue(s.deksCreated() >= 1);
        assertTrue(s.kmsWrapCalls() >= 1);
        codec.clearKeyCache();
        assertEquals(s.recordsEncrypted(), codec.stats().recordsEncrypted());
        codec.decrypt("customers", sealed.get(0));
        assertEquals(6, codec.stats().recordsDecrypted());
    }

    @Test
    void useAfterClose() {
        Codec c = Fixtures.codec();
        Record sealed = c.encrypt("customers", null, customer("Ada", "pw"), null);
        c.close();
        c.close(); // idempotent
        assertThrows(IllegalStateException.class, () -> c.encrypt("customers", null, customer("Ada", "pw"), null));
        assertThrows(IllegalStateException.class, () -> c.decrypt("customers", sealed));
        assertThrows(IllegalStateException.class, () -> c.encryptBatch("customers", List.of(sealed)));
        assertThrows(IllegalStateException.class, () -> c.decryptBatch("customers", List.of(sealed)));
        assertThrows(IllegalStateException.class, c::stats);
        assertThrows(IllegalStateException.class, c::clearKeyCache);
        assertNotNull(Codec.version(), "static calls do not need a codec");
    }

    @Test
    void nullArguments() {
        assertThrows(NullPointerException.class, () -> new Codec(null, null));
        assertThrows(NullPointerException.class, () -> codec.encrypt(null, null, null, null));
        assertThrows(NullPointerException.class, () -> codec.encryptBatch("customers", null));
        List<Record> withNull = new ArrayList<>();
        withNull.add(null);
        assertThrows(NullPointerException.class, () -> codec.encryptBatch("customers", withNull));
    }

    @Test
    void leakedCodecsAreFreedByTheCleaner() throws Exception {
        for (int i = 0; i < 200; i++) {
            new Codec(Fixtures.policy(), Fixtures.config()).encrypt("customers", null, customer("a", "b"), null);
        }
        System.gc();
        Thread.sleep(100);
        assertNotNull(codec.encrypt("customers", null, customer("a", "b"), null));
    }
}
