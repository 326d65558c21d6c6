package dev.fieldcrypt;

import java.util.Arrays;
import java.util.List;
import java.util.Objects;

/**
 * A Kafka record as the codec sees it: key and value bytes ({@code null} = absent: a null key, a
 * tombstone; an empty array is an empty key or value) and the headers, in order.
 *
 * <p>Import it by name ({@code import dev.fieldcrypt.Record;}): with {@code dev.fieldcrypt.*}
 * alone the simple name is ambiguous with {@code java.lang.Record}.
 */
public final class Record {
    private final byte[] key;
    private final byte[] value;
    private final List<Header> headers;

    public Record(byte[] key, byte[] value, List<Header> headers) {
        this.key = key;
        this.value = value;
        this.headers = headers == null ? List.of() : List.copyOf(headers);
    }

    /** The key, {@code null} when absent. */
    public byte[] key() {
        return key;
    }

    /** The value, {@code null} when absent (a tombstone). */
    public byte[] value() {
        return value;
    }

    /** The headers, in order (unmodifiable). */
    public List<Header> headers() {
        return headers;
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof Record r && Arrays.equals(key, r.key) && Arrays.equals(value, r.value)
                && headers.equals(r.headers);
    }

    @Override
    public int hashCode() {
        return Objects.hash(Arrays.hashCode(key), Arrays.hashCode(value), headers);
    }

    @Override
    public String toString() {
        return "Record[key=" + (key == null ? "null" : key.length + " bytes")
                + ", value=" + (value == null ? "null" : value.length + " bytes") + ", headers=" + headers + "]";
    }
}
