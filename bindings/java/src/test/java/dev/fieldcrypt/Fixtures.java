package dev.fieldcrypt;

import static java.nio.charset.StandardCharsets.UTF_8;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/** The repository's fixtures (schemas/) and codecs on the demo policy, shared by the tests. */
public final class Fixtures {
    public static final Path ROOT = root();
    public static final Path POLICY = ROOT.resolve("schemas/policies/demo.json");
    public static final Path KEYS = ROOT.resolve("schemas/keys/local-dev.json");
    public static final Path PAYMENT = ROOT.resolve("schemas/payment/payment.json");
    /** The signed policies and trusted keys of the governance scenario (schemas/governance/README.md). */
    public static final Path GOVERNANCE = ROOT.resolve("schemas/governance");

    /** The payment record's PII (the demo policy's rule payment-pii). */
    public static final List<String> PII =
            List.of("jane.doe@example.com", "123-45-6789", "1600 Amphitheatre Parkway", "+1-650-555-0100");

    private Fixtures() {}

    private static Path root() {
        String p = System.getProperty("fieldcrypt.root");
        if (p != null) {
            return Path.of(p).toAbsolutePath().normalize();
        }
        Path dir = Path.of("").toAbsolutePath();
        while (dir != null && !Files.isDirectory(dir.resolve("schemas/policies"))) {
            dir = dir.getParent();
        }
        if (dir == null) {
            throw new IllegalStateException("repository root not found: set -Dfieldcrypt.root");
        }
        return dir;
    }

    public static String read(Path p) {
        try {
            return Files.readString(p);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    public static String policy() {
        return read(POLICY);
    }

    /** The configuration with the local development keys, plus {@code extra} members (JSON, may be empty). */
    public static String config(String extra) {
        return "{\"kms\": {\"local\": {\"key_file\": " + Json.quote(KEYS.toString()) + "}}"
                + (extra.isEmpty() ? "" : ", " + extra) + "}";
    }

    public static String config() {
        return config("");
    }

    public static Codec codec() {
        return new Codec(policy(), config());
    }

    public static Codec codec(String profile) {
        return new Codec(policy(), config("\"profile\": " + Json.quote(profile)));
    }

    /** A customers record, compact (fieldcrypt drops insignificant whitespace in what it rewrites). */
    public static byte[] customer(String name, String password) {
        Map<String, Object> doc = new LinkedHashMap<>();
        doc.put("name", name);
        doc.put("password", password);
        doc.put("visa", "4111-1111-1111-1111");
        doc.put("city", "London");
        return Json.write(doc).getBytes(UTF_8);
    }

    /** The standard workload's payment record, compact. */
    public static byte[] payment() {
        return Json.write(Json.parse(read(PAYMENT))).getBytes(UTF_8);
    }

    /** A file of schemas/governance, as text. */
    public static String governance(String file) {
        return read(GOVERNANCE.resolve(file));
    }

    /**
     * The governance scenario's configuration: the local KMS secret of its policies, its trusted
     * keys, and {@code policySource} and {@code keyStore} (JSON objects), plus {@code extra}
     * members (JSON, may be empty).
     */
    public static String governanceConfig(String policySource, String keyStore, String extra) {
        return "{\"kms\": {\"local\": {\"secrets\": {\"governance\": \"governance-test-secret\"}}},"
                + " \"trusted_keys\": " + governance("trusted-keys.json").strip() + ","
                + " \"policy_source\": " + policySource + ", \"key_store\": " + keyStore
                + (extra.isEmpty() ? "" : ", " + extra) + "}";
    }

    /** A record of the governance scenario's topics: a customer with an email and a card number. */
    public static byte[] governanceCustomer(String id) {
        Map<String, Object> doc = new LinkedHashMap<>();
        doc.put("customer_id", id);
        doc.put("email", id + "@example.com");
        doc.put("card", "4111-" + id);
        return Json.write(doc).getBytes(UTF_8);
    }

    /** Which of a governance customer's PII values ("email", "card") an encrypted value still shows. */
    public static List<String> inClear(byte[] value, String id) {
        List<String> shown = new ArrayList<>();
        if (contains(value, id + "@example.com")) {
            shown.add("email");
        }
        if (contains(value, "4111-" + id)) {
            shown.add("card");
        }
        return shown;
    }

    public static byte[] utf8(String s) {
        return s.getBytes(UTF_8);
    }

    public static List<Header> headers(Object... nameValue) {
        List<Header> out = new ArrayList<>();
        for (int i = 0; i < nameValue.length; i += 2) {
            Object v = nameValue[i + 1];
            out.add(new Header((String) nameValue[i], v == null ? null : v instanceof byte[] b ? b : utf8((String) v)));
        }
        return out;
    }

    public static byte[] header(List<Header> headers, String name) {
        for (Header h : headers) {
            if (h.name().equals(name)) {
                return h.value();
            }
        }
        return null;
    }

    public static boolean contains(byte[] haystack, String needle) {
        return new String(haystack, java.nio.charset.StandardCharsets.ISO_8859_1)
                .contains(new String(utf8(needle), java.nio.charset.StandardCharsets.ISO_8859_1));
    }
}
