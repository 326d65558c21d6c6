package dev.fieldcrypt;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The policy in force in a codec and its reload counters ({@link Codec#policyStatus()}, the
 * C ABI's {@code fc_codec_policy_status}).
 *
 * @param policyId the policy's id
 * @param revision its revision (an unsigned 64-bit number: {@link Long#toUnsignedString(long)})
 * @param signedBy the trusted key (id in the configuration's {@code trusted_keys}) whose
 *     signature verified it; {@code null} if it was not verified
 * @param source where the policy is read from ({@code policy_source}); {@code null} for a policy
 *     given to the constructor
 * @param loads policies loaded, the first included
 * @param rejections documents refused (signature, parse, rollback, policy id...)
 * @param fetchErrors fetches of the source that failed
 * @param lastError the error of the last rejection or failed fetch; {@code null} if none happened
 */
public record PolicyStatus(
        String policyId,
        long revision,
        String signedBy,
        String source,
        long loads,
        long rejections,
        long fetchErrors,
        LastError lastError) {

    /**
     * The last rejection or failed fetch.
     *
     * @param kindName the core's error kind name ("policy", "kms", "config"...: {@link Kind#kindName()})
     * @param message what went wrong
     */
    public record LastError(String kindName, String message) {
        /** The kind, {@link Kind#OTHER} for a name this binding does not know. */
        public Kind kind() {
            for (Kind k : Kind.values()) {
                if (k != Kind.UNKNOWN && k.kindName().equals(kindName)) {
                    return k;
                }
            }
            return Kind.OTHER;
        }
    }

    /** The status from the library's JSON object (members it does not know are ignored). */
    static PolicyStatus parse(String json) {
        Map<String, Object> m = Flat.object(json);
        Object e = m.get("last_error");
        LastError last = null;
        if (e instanceof Map<?, ?> err) {
            last = new LastError((String) err.get("kind"), (String) err.get("message"));
        } else if (e != null) {
            throw new IllegalStateException("fieldcrypt: unexpected policy status: " + json);
        }
        return new PolicyStatus((String) m.get("policy_id"), number(m, "revision"), (String) m.get("signed_by"),
                (String) m.get("source"), number(m, "loads"), number(m, "rejections"), number(m, "fetch_errors"), last);
    }

    private static long number(Map<String, Object> m, String name) {
        Object v = m.get(name);
        if (v instanceof Long n) {
            return n;
        }
        throw new IllegalStateException("fieldcrypt: policy status without " + name + ": " + m);
    }

    /**
     * A reader of the library's small JSON objects (the binding has no JSON dependency): objects,
     * strings, unsigned integers (as {@code long}), booleans and null; no arrays or fractions.
     */
    private static final class Flat {
        private final String s;
        private int i;

        private Flat(String s) {
            this.s = s;
        }

        @SuppressWarnings("unchecked")
        static Map<String, Object> object(String text) {
            Flat p = new Flat(text);
            Object v = p.value();
            p.ws();
            if (!(v instanceof Map) || p.i != text.length()) {
                throw p.error();
            }
            return (Map<String, Object>) v;
        }

        private Object value() {
            ws();
            if (i >= s.length()) {
                throw error();
            }
            char c = s.charAt(i);
            if (c == '{') {
                i++;
                Map<String, Object> m = new LinkedHashMap<>();
                ws();
                if (eat('}')) {
                    return m;
                }
                do {
                    ws();
                    String k = string();
                    ws();
                    expect(':');
                    m.put(k, value());
                    ws();
                } while (eat(','));
                expect('}');
                return m;
            }
            if (c == '"') {
                return string();
            }
            for (String word : new String[] {"null", "true", "false"}) {
                if (s.startsWith(word, i)) {
                    i += word.length();
                    return word.equals("null") ? null : Boolean.valueOf(word);
                }
            }
            int start = i;
            while (i < s.length() && s.charAt(i) >= '0' && s.charAt(i) <= '9') {
                i++;
            }
            if (start == i) {
                throw error();
            }
            return Long.parseUnsignedLong(s.substring(start, i));
        }

        private String string() {
            expect('"');
            StringBuilder b = new StringBuilder();
            while (i < s.length()) {
                char c = s.charAt(i++);
                if (c == '"') {
                    return b.toString();
                }
                if (c != '\\') {
                    b.append(c);
                    continue;
                }
                if (i >= s.length()) {
                    break;
                }
                char e = s.charAt(i++);
                switch (e) {
                    case 'n' -> b.append('\n');
                    case 't' -> b.append('\t');
                    case 'r' -> b.append('\r');
                    case 'b' -> b.append('\b');
                    case 'f' -> b.append('\f');
                    case 'u' -> {
                        if (i + 4 > s.length()) {
                            throw error();
                        }
                        b.append((char) Integer.parseInt(s.substring(i, i + 4), 16));
                        i += 4;
                    }
                    default -> b.append(e); // \" \\ \/
                }
            }
            throw error();
        }

        private void ws() {
            while (i < s.length() && " \t\r\n".indexOf(s.charAt(i)) >= 0) {
                i++;
            }
        }

        private boolean eat(char c) {
            if (i < s.length() && s.charAt(i) == c) {
                i++;
                return true;
            }
            return false;
        }

        private void expect(char c) {
            if (!eat(c)) {
                throw error();
            }
        }

        private IllegalStateException error() {
            return new IllegalStateException("fieldcrypt: cannot read the library's JSON at " + i + ": " + s);
        }
    }
}
