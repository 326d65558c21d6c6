package dev.fieldcrypt.xtest;

import dev.fieldcrypt.Header;
import dev.fieldcrypt.Record;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Base64;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The harness's RECORD (xtests/README.md): {@code {"key": B64 | null, "value": B64 | null,
 * "headers": [[NAME, B64 | null], ...]}}, standard Base64 with padding, {@code null} = absent.
 * Read from and written to the tree {@link dev.fieldcrypt.Json} parses and writes.
 */
public final class RecordJson {
    private RecordJson() {}

    /** The record of a parsed RECORD; {@link IllegalArgumentException} if it is not one. */
    public static Record read(Object json) {
        if (!(json instanceof Map<?, ?> m)) {
            throw new IllegalArgumentException("a record is a JSON object, not " + json);
        }
        for (Object k : m.keySet()) {
            if (!List.of("key", "value", "headers").contains(k)) {
                throw new IllegalArgumentException("unknown record member \"" + k + "\"");
            }
        }
        List<Header> headers = new ArrayList<>();
        Object hs = m.get("headers");
        if (hs != null) {
            if (!(hs instanceof List<?> list)) {
                throw new IllegalArgumentException("record headers are a JSON array");
            }
            for (Object h : list) {
                if (!(h instanceof List<?> pair) || pair.size() != 2 || !(pair.get(0) instanceof String name)) {
                    throw new IllegalArgumentException("a header is [NAME, B64 | null], not " + h);
                }
                headers.add(new Header(name, bytes(pair.get(1), "header " + name)));
            }
        }
        return new Record(bytes(m.get("key"), "key"), bytes(m.get("value"), "value"), headers);
    }

    /** A record as RECORD (member order key, value, headers). */
    public static Map<String, Object> write(Record r) {
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("key", b64(r.key()));
        out.put("value", b64(r.value()));
        List<Object> hs = new ArrayList<>();
        for (Header h : r.headers()) {
            hs.add(Arrays.asList(h.name(), b64(h.value())));
        }
        out.put("headers", hs);
        return out;
    }

    public static String b64(byte[] b) {
        return b == null ? null : Base64.getEncoder().encodeToString(b);
    }

    private static byte[] bytes(Object v, String what) {
        if (v == null) {
            return null;
        }
        if (!(v instanceof String s)) {
            throw new IllegalArgumentException("record " + what + " is Base64 text or null, not " + v);
        }
        return Base64.getDecoder().decode(s);
    }
}
