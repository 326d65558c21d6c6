package dev.fieldcrypt;

import java.nio.BufferUnderflowException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

/**
 * The packed byte strings that carry headers, records and batches across the ABI (ffi/README.md,
 * "Packed records"): u32 little-endian lengths, 0xFFFFFFFF for an absent value.
 */
final class Packed {
    private static final int NULL32 = -1;

    private Packed() {}

    /** The packed headers; an empty array for none. */
    static byte[] headers(List<Header> headers) {
        if (headers == null || headers.isEmpty()) {
            return new byte[0];
        }
        byte[][] names = names(headers);
        ByteBuffer out = allocate(headersSize(headers, names));
        putHeaders(out, headers, names);
        return out.array();
    }

    /** The packed batch of records. */
    static byte[] batch(List<Record> records) {
        byte[][][] names = new byte[records.size()][][];
        long size = 4;
        for (int i = 0; i < records.size(); i++) {
            Record r = records.get(i);
            if (r == null) {
                throw new NullPointerException("records[" + i + "] is null");
            }
            names[i] = names(r.headers());
            size += 4 + length(r.key()) + 4 + length(r.value()) + headersSize(r.headers(), names[i]);
        }
        ByteBuffer out = allocate(size);
        out.putInt(records.size());
        for (int i = 0; i < records.size(); i++) {
            Record r = records.get(i);
            putBytes(out, r.key());
            putBytes(out, r.value());
            putHeaders(out, r.headers(), names[i]);
        }
        return out.array();
    }

    /** One packed record, as fc_codec_encrypt returns it. */
    static Record record(byte[] packed) {
        ByteBuffer in = ByteBuffer.wrap(packed).order(ByteOrder.LITTLE_ENDIAN);
        Record r = readRecord(in);
        end(in);
        return r;
    }

    /** A packed batch, as fc_codec_encrypt_batch returns it. */
    static List<Record> records(byte[] packed) {
        ByteBuffer in = ByteBuffer.wrap(packed).order(ByteOrder.LITTLE_ENDIAN);
        try {
            long count = Integer.toUnsignedLong(in.getInt());
            if (count > in.remaining() / 12) { // a record is at least 12 bytes: guards the list size
                throw malformed();
            }
            List<Record> out = new ArrayList<>((int) count);
            for (long i = 0; i < count; i++) {
                out.add(readRecord(in));
            }
            end(in);
            return out;
        } catch (BufferUnderflowException e) {
            throw malformed();
        }
    }

    // ---- writing ----

    private static byte[][] names(List<Header> headers) {
        byte[][] names = new byte[headers.size()][];
        for (int i = 0; i < names.length; i++) {
            Header h = headers.get(i);
            if (h == null) {
                throw new NullPointerException("headers[" + i + "] is null");
            }
            names[i] = h.name().getBytes(StandardCharsets.UTF_8);
        }
        return names;
    }

    private static long headersSize(List<Header> headers, byte[][] names) {
        long size = 4;
        for (int i = 0; i < names.length; i++) {
            size += 4 + names[i].length + 4 + length(headers.get(i).value());
        }
        return size;
    }

    private static void putHeaders(ByteBuffer out, List<Header> headers, byte[][] names) {
        out.putInt(names.length);
        for (int i = 0; i < names.length; i++) {
            out.putInt(names[i].length).put(names[i]);
            putBytes(out, headers.get(i).value());
        }
    }

    private static void putBytes(ByteBuffer out, byte[] b) {
        if (b == null) {
            out.putInt(NULL32);
        } else {
            out.putInt(b.length).put(b);
        }
    }

    private static int length(byte[] b) {
        return b == null ? 0 : b.length;
    }

    private static ByteBuffer allocate(long size) {
        if (size > Integer.MAX_VALUE - 8) {
            throw new IllegalArgumentException("records too large to pass in one call (" + size + " bytes)");
        }
        return ByteBuffer.allocate((int) size).order(ByteOrder.LITTLE_ENDIAN);
    }

    // ---- reading ----

    private static Record readRecord(ByteBuffer in) {
        try {
            byte[] key = readBytes(in);
            byte[] value = readBytes(in);
            long count = Integer.toUnsignedLong(in.getInt());
            if (count > in.remaining() / 8) {
                throw malformed();
            }
            List<Header> headers = new ArrayList<>((int) count);
            for (long i = 0; i < count; i++) {
                byte[] name = readBytes(in);
                if (name == null) {
                    throw malformed();
                }
                headers.add(new Header(new String(name, StandardCharsets.UTF_8), readBytes(in)));
            }
            return new Record(key, value, headers);
        } catch (BufferUnderflowException e) {
            throw malformed();
        }
    }

    private static byte[] readBytes(ByteBuffer in) {
        int len = in.getInt();
        if (len == NULL32) {
            return null;
        }
        if (len < 0 || len > in.remaining()) {
            throw malformed();
        }
        byte[] b = new byte[len];
        in.get(b);
        return b;
    }

    private static void end(ByteBuffer in) {
        if (in.hasRemaining()) {
            throw malformed();
        }
    }

    private static IllegalStateException malformed() {
        // The library wrote it: a mismatch between this binding and the library, never user input.
        return new IllegalStateException("fieldcrypt: malformed packed data from the library (binding and library versions differ?)");
    }
}
