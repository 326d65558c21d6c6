package dev.fieldcrypt;

import static dev.fieldcrypt.Fixtures.contains;
import static dev.fieldcrypt.Fixtures.customer;
import static dev.fieldcrypt.Fixtures.header;
import static dev.fieldcrypt.Fixtures.headers;
import static dev.fieldcrypt.Fixtures.utf8;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.fail;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Base64;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/**
 * Records encrypted by the Rust CLI ({@code fieldcrypt encrypt}, env FIELDCRYPT_BIN, which
 * run-tests.sh builds) decrypt in Java, and the reverse. Never skipped: without the CLI it fails.
 */
class CliInteropTest {
    static final List<Record> RECORDS = records();

    static List<Record> records() {
        List<Record> out = new ArrayList<>();
        for (int i = 0; i < 5; i++) {
            out.add(new Record(i == 0 ? null : utf8("k" + i), customer("c" + i, "pw-" + i),
                    headers("trace", "t" + i, "empty", i == 1 ? new byte[0] : null)));
        }
        out.add(new Record(utf8("k"), Fixtures.payment(), List.of()));
        return out;
    }

    static String cliBinary() {
        String bin = System.getenv("FIELDCRYPT_BIN");
        if (bin == null || bin.isBlank() || !Files.isExecutable(Path.of(bin))) {
            fail("the fieldcrypt CLI is needed (FIELDCRYPT_BIN=" + bin
                    + "): run bindings/java/run-tests.sh, or cargo build -p fieldcrypt-cli and set FIELDCRYPT_BIN");
        }
        return bin;
    }

    /** Pipes records through the CLI as JSON lines. */
    static List<Record> cli(String command, String topic, List<Record> records, String... extra)
            throws IOException, InterruptedException {
        StringBuilder in = new StringBuilder();
        for (Record r : records) {
            Map<String, Object> line = new LinkedHashMap<>();
            line.put("key", b64(r.key()));
            line.put("value", b64(r.value()));
            List<Object> hs = new ArrayList<>();
            for (Header h : r.headers()) {
                hs.add(Arrays.asList(h.name(), b64(h.value())));
            }
            line.put("headers", hs);
            in.append(Json.write(line)).append('\n');
        }
        List<String> cmd = new ArrayList<>(List.of(cliBinary(), command, "--policy", Fixtures.POLICY.toString(),
                "--local-keys", Fixtures.KEYS.toString(), "--topic", topic));
        cmd.addAll(List.of(extra));
        Path stderr = Files.createTempFile("fieldcrypt-cli", ".err");
        try {
            Process p = new ProcessBuilder(cmd).redirectError(stderr.toFile()).start();
            p.getOutputStream().write(in.toString().getBytes(StandardCharsets.UTF_8));
            p.getOutputStream().close();
            String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            if (!p.waitFor(120, TimeUnit.SECONDS)) {
                p.destroyForcibly();
                fail("fieldcrypt " + command + " timed out");
            }
            assertEquals(0, p.exitValue(), () -> "fieldcrypt " + command + ": " + Fixtures.read(stderr));
            List<Record> result = new ArrayList<>();
            for (String line : out.split("\n")) {
                if (line.isBlank()) {
                    continue;
                }
                Map<String, Object> o = Json.object(line);
                List<Header> hs = new ArrayList<>();
                for (Object h : (List<?>) o.get("headers")) {
                    List<?> pair = (List<?>) h;
                    hs.add(new Header((String) pair.get(0), unb64(pair.get(1))));
                }
                result.add(new Record(unb64(o.get("key")), unb64(o.get("value")), hs));
            }
            assertEquals(records.size(), result.size());
            return result;
        } finally {
            Files.deleteIfExists(stderr);
        }
    }

    static String b64(byte[] b) {
        return b == null ? null : Base64.getEncoder().encodeToString(b);
    }

    static byte[] unb64(Object s) {
        return s == null ? null : Base64.getDecoder().decode((String) s);
    }

    @Test
    void rustEncryptsJavaDecrypts() throws Exception {
        List<Record> customers = RECORDS.subList(0, 5);
        List<Record> sealed = cli("encrypt", "customers", customers);
        try (Codec codec = Fixtures.codec()) {
            for (int i = 0; i < customers.size(); i++) {
                assertFalse(contains(sealed.get(i).value(), "pw-"));
                assertNotNull(header(sealed.get(i).headers(), "fieldcrypt"));
                assertEquals(customers.get(i), codec.decrypt("customers", sealed.get(i)));
            }
            assertEquals(customers, codec.decryptBatch("customers", sealed));
        }
        List<Record> payment = RECORDS.subList(5, 6);
        List<Record> sealedPayment = cli("encrypt", "payments", payment);
        try (Codec codec = Fixtures.codec()) {
            assertEquals(payment.get(0), codec.decrypt("payments", sealedPayment.get(0)));
        }
    }

    @Test
    void javaEncryptsRustDecrypts() throws Exception {
        List<Record> customers = RECORDS.subList(0, 5);
        List<Record> sealed;
        try (Codec codec = Fixtures.codec()) {
            sealed = new ArrayList<>();
            for (Record r : customers) {
                sealed.add(codec.encrypt("customers", r));
            }
            assertEquals(customers, cli("decrypt", "customers", sealed));
            assertEquals(RECORDS.subList(5, 6),
                    cli("decrypt", "payments", List.of(codec.encrypt("payments", RECORDS.get(5)))));
        }
        // ...and as a profile: visa-only leaves the password encrypted.
        List<Record> partial = cli("decrypt", "customers", sealed, "--profile", "visa-only");
        for (int i = 0; i < partial.size(); i++) {
            Map<String, Object> doc = Json.object(new String(partial.get(i).value(), StandardCharsets.UTF_8));
            assertEquals("4111-1111-1111-1111", doc.get("visa"));
            assertNotEquals("pw-" + i, doc.get("password"));
            assertNotNull(header(partial.get(i).headers(), "fieldcrypt"));
        }
    }
}
