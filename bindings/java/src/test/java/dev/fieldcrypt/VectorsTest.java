package dev.fieldcrypt;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.fail;
import static org.junit.jupiter.api.DynamicContainer.dynamicContainer;
import static org.junit.jupiter.api.DynamicTest.dynamicTest;

import dev.fieldcrypt.xtest.RecordJson;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.junit.jupiter.api.DynamicNode;
import org.junit.jupiter.api.TestFactory;

/**
 * The cross-language test vectors (xtests/README.md, "Test vectors"): every
 * {@code xtests/vectors/v*.json} of the repository. Per file, one test per case id:
 *
 * <ul>
 *   <li>positive cases: {@code decrypt(topic, encrypted)} with a codec of {@code decrypt_config}
 *       returns {@code decrypted} exactly (key, value, headers in order);
 *   <li>negative cases: {@code decrypt(topic, record)} throws a {@link FieldcryptException} whose
 *       kind name ({@code fc_status_name}) is {@code error};
 *   <li>encrypt: {@code encrypt(topic, plaintext)} with a codec of {@code encrypt_config}; with env
 *       FIELDCRYPT_XTEST_OUT set, the results go to {@code $FIELDCRYPT_XTEST_OUT/encrypted-java.json}
 *       for the Rust checker ({@code check-encrypted}), which decrypts them.
 * </ul>
 *
 * Fails, never skips, when there is no vector file. Each check uses a codec of its own, made from
 * the file's policy and configuration documents written back as JSON text.
 */
class VectorsTest {
    static final Path VECTORS = Fixtures.ROOT.resolve("xtests/vectors");
    static final Pattern NAME = Pattern.compile("v(\\d+)\\.json");
    static final String OUT_ENV = "FIELDCRYPT_XTEST_OUT";
    static final String RESULTS_FILE = "encrypted-java.json";

    /** The encrypt results of every file, in order, for the results file. */
    private final List<Object> results = Collections.synchronizedList(new ArrayList<>());

    /** v1.json, v2.json, ... by version number. */
    static List<Path> vectorFiles() throws IOException {
        if (!Files.isDirectory(VECTORS)) {
            return List.of();
        }
        try (Stream<Path> files = Files.list(VECTORS)) {
            return files.filter(p -> NAME.matcher(p.getFileName().toString()).matches() && Files.isRegularFile(p))
                    .sorted(Comparator.comparingLong(VectorsTest::version))
                    .toList();
        }
    }

    static long version(Path p) {
        Matcher m = NAME.matcher(p.getFileName().toString());
        if (!m.matches()) {
            throw new IllegalArgumentException(p.toString());
        }
        return Long.parseLong(m.group(1));
    }

    @TestFactory
    Stream<DynamicNode> vectors() throws IOException {
        List<Path> files = vectorFiles();
        if (files.isEmpty()) {
            fail("no test vectors: no " + VECTORS + "/v*.json (xtests/README.md; the repository root is "
                    + Fixtures.ROOT + ", -Dfieldcrypt.root)");
        }
        List<DynamicNode> nodes = new ArrayList<>();
        for (Path f : files) {
            nodes.add(file(f));
        }
        String out = System.getenv(OUT_ENV);
        if (out != null && !out.isEmpty()) {
            // Runs last: dynamic nodes run in order.
            nodes.add(dynamicTest("write " + RESULTS_FILE, () -> writeResults(Path.of(out))));
        }
        return nodes.stream();
    }

    /** The tests of one vector file. */
    DynamicNode file(Path path) {
        String fileName = path.getFileName().toString();
        Map<String, Object> doc = Json.object(Fixtures.read(path));
        assertEquals("fieldcrypt-test-vectors", doc.get("format"), fileName + ": format");
        assertNotNull(doc.get("version"), fileName + ": version");
        Map<String, Object> policies = members(doc, "policies", fileName);
        Map<String, Object> configs = members(doc, "configs", fileName);

        List<DynamicNode> decrypt = new ArrayList<>();
        List<DynamicNode> encrypt = new ArrayList<>();
        for (Object o : list(doc, "cases", fileName)) {
            Map<String, Object> c = map(o, fileName + ": case");
            String id = text(c, "id", fileName);
            String where = fileName + " " + id;
            String topic = text(c, "topic", where);
            String policy = document(policies, text(c, "policy", where), "policy", where);
            String decryptConfig = document(configs, text(c, "decrypt_config", where), "config", where);
            String encryptConfig = document(configs, text(c, "encrypt_config", where), "config", where);
            Record encrypted = RecordJson.read(c.get("encrypted"));
            Record decrypted = RecordJson.read(c.get("decrypted"));
            Record plaintext = RecordJson.read(c.get("plaintext"));
            decrypt.add(dynamicTest("decrypt " + id, () -> {
                try (Codec codec = new Codec(policy, decryptConfig)) {
                    assertRecord(where, decrypted, codec.decrypt(topic, encrypted));
                }
            }));
            encrypt.add(dynamicTest("encrypt " + id, () -> {
                try (Codec codec = new Codec(policy, encryptConfig)) {
                    Record sealed = codec.encrypt(topic, plaintext);
                    Map<String, Object> result = new LinkedHashMap<>();
                    result.put("vectors", fileName);
                    result.put("id", id);
                    result.put("record", RecordJson.write(sealed));
                    results.add(result);
                }
            }));
        }
        List<DynamicNode> negative = new ArrayList<>();
        Object negatives = doc.get("negative");
        for (Object o : negatives == null ? List.of() : list(doc, "negative", fileName)) {
            Map<String, Object> c = map(o, fileName + ": negative case");
            String id = text(c, "id", fileName);
            String where = fileName + " " + id;
            String topic = text(c, "topic", where);
            String policy = document(policies, text(c, "policy", where), "policy", where);
            String config = document(configs, text(c, "decrypt_config", where), "config", where);
            Record record = RecordJson.read(c.get("record"));
            String error = text(c, "error", where);
            negative.add(dynamicTest("negative " + id, () -> {
                try (Codec codec = new Codec(policy, config)) {
                    Record got;
                    try {
                        got = codec.decrypt(topic, record);
                    } catch (FieldcryptException e) {
                        assertEquals(error, e.kind().kindName(), where + ": error kind (" + e.getMessage() + ")");
                        return;
                    }
                    fail(where + ": decrypted (" + got + "), expected a " + error + " error");
                }
            }));
        }
        return dynamicContainer(fileName, Stream.of(decrypt, negative, encrypt).flatMap(List::stream));
    }

    /** Key, value and headers (in order) equal, reported as Base64. */
    static void assertRecord(String where, Record expected, Record actual) {
        assertEquals(RecordJson.b64(expected.key()), RecordJson.b64(actual.key()), where + ": key");
        assertEquals(RecordJson.b64(expected.value()), RecordJson.b64(actual.value()), where + ": value");
        assertEquals(Json.write(RecordJson.write(expected).get("headers")),
                Json.write(RecordJson.write(actual).get("headers")), where + ": headers");
        assertEquals(expected, actual, where);
    }

    void writeResults(Path dir) throws IOException {
        Map<String, Object> doc = new LinkedHashMap<>();
        doc.put("format", "fieldcrypt-test-vector-results");
        doc.put("version", new Json.Num("1"));
        doc.put("language", "java");
        doc.put("results", new ArrayList<>(results));
        Files.createDirectories(dir);
        Path tmp = dir.resolve(RESULTS_FILE + ".tmp");
        Files.writeString(tmp, Json.write(doc) + "\n", StandardCharsets.UTF_8);
        Files.move(tmp, dir.resolve(RESULTS_FILE), java.nio.file.StandardCopyOption.REPLACE_EXISTING);
    }

    // --- reading the file: clear messages for a malformed one ----------------------------------

    /** The named member document, written back as JSON text. */
    static String document(Map<String, Object> docs, String name, String what, String where) {
        if (!docs.containsKey(name)) {
            fail(where + ": no " + what + " \"" + name + "\" in the file");
        }
        return Json.write(docs.get(name));
    }

    static Map<String, Object> members(Map<String, Object> doc, String name, String where) {
        return map(doc.get(name), where + ": " + name);
    }

    @SuppressWarnings("unchecked")
    static Map<String, Object> map(Object o, String what) {
        if (!(o instanceof Map)) {
            fail(what + " is not a JSON object");
        }
        return (Map<String, Object>) o;
    }

    static List<?> list(Map<String, Object> doc, String name, String where) {
        if (!(doc.get(name) instanceof List<?> l)) {
            throw new AssertionError(where + ": \"" + name + "\" is not a JSON array");
        }
        return l;
    }

    static String text(Map<String, Object> o, String name, String where) {
        if (!(o.get(name) instanceof String s)) {
            throw new AssertionError(where + ": \"" + name + "\" is not a string");
        }
        return s;
    }
}
