package dev.fieldcrypt;

import java.util.Arrays;
import java.util.Objects;

/**
 * A Kafka record header: a name and a value ({@code null} for a header without a value). Equal
 * when name and value bytes are equal. The binding never changes the array it is given.
 */
public record Header(String name, byte[] value) {
    public Header {
        Objects.requireNonNull(name, "name");
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof Header h && name.equals(h.name) && Arrays.equals(value, h.value);
    }

    @Override
    public int hashCode() {
        return 31 * name.hashCode() + Arrays.hashCode(value);
    }

    @Override
    public String toString() {
        return "Header[" + name + (value == null ? ", null]" : ", " + value.length + " bytes]");
    }
}
