package dev.fieldcrypt;

import com.sun.jna.Native;
import com.sun.jna.Pointer;
import java.nio.charset.StandardCharsets;

/**
 * The C ABI (ffi/include/fieldcrypt.h) through JNA direct mapping: {@code static native} methods
 * bound once by {@link Native#register}, the cheapest JNA call path.
 *
 * <p>Direct mapping takes primitives and primitive arrays, so the C types are passed as:
 * pointers to handles and static strings as {@code long} (64-bit only, checked below);
 * {@code size_t} and {@code int64_t} as {@code long}; input bytes as {@code byte[]};
 * out-parameters as {@code long[]} that JNA copies back after the call: {@code fc_codec **} is
 * {@code long[1]}, {@code fc_buf} (data, len, cap) {@code long[3]}, {@code fc_error} (status and
 * retryable as two int32 in element 0, index, then the message's fc_buf) {@code long[5]},
 * {@code fc_stats} {@code long[13]}; {@code bool *} is {@code byte[1]}.
 *
 * <p>The library is {@code libfieldcrypt_ffi.so}, found by JNA in {@code jna.library.path}, the
 * system's library path ({@code LD_LIBRARY_PATH}), or on the class path under
 * {@code linux-x86-64/} (the jar built by run-tests.sh bundles it there). The system property
 * {@value #LIBRARY_PROPERTY} names another library with the same C functions, read once when the
 * first codec is made: {@code fieldcrypt_ffi_kafka} ({@code libfieldcrypt_ffi_kafka.so}, crate
 * {@code ffi/kafka}: librdkafka inside, with its symbols hidden) is the one whose codecs can use
 * the Kafka key store and the Kafka policy source. One JVM loads one of them.
 */
final class Ffi {
    /** The system property that names the native library (JNA's name, or a path). */
    static final String LIBRARY_PROPERTY = "fieldcrypt.library";
    /** The default library: no librdkafka inside (Kafka options fail with a config error). */
    static final String DEFAULT_LIBRARY = "fieldcrypt_ffi";
    static final String LIBRARY = library();

    private static String library() {
        String name = System.getProperty(LIBRARY_PROPERTY);
        return name == null || name.isBlank() ? DEFAULT_LIBRARY : name.strip();
    }

    static {
        if (Native.POINTER_SIZE != 8 || Native.SIZE_T_SIZE != 8) {
            throw new UnsatisfiedLinkError("fieldcrypt needs a 64-bit JVM (pointers and size_t passed as long)");
        }
        try {
            Native.register(Ffi.class, LIBRARY);
        } catch (UnsatisfiedLinkError e) {
            String crate = LIBRARY.equals("fieldcrypt_ffi_kafka") ? "fieldcrypt-ffi-kafka" : "fieldcrypt-ffi";
            UnsatisfiedLinkError hint = new UnsatisfiedLinkError("fieldcrypt: cannot load the native library "
                    + LIBRARY + " (-D" + LIBRARY_PROPERTY + "; build it: cargo build --release -p " + crate
                    + "); point -Djna.library.path or"
                    + " LD_LIBRARY_PATH at its directory, or bundle it in the jar under linux-x86-64/. " + e.getMessage());
            hint.initCause(e);
            throw hint;
        }
    }

    private Ffi() {}

    static native long fc_version();

    static native long fc_status_name(int status);

    static native int fc_codec_new(byte[] policy, long policyLen, byte[] config, long configLen,
            long[] codecOut, long[] err);

    static native void fc_codec_free(long codec);

    static native int fc_codec_encrypt(long codec, byte[] topic, long topicLen, byte[] key, long keyLen,
            byte[] value, long valueLen, byte[] headers, long headersLen, long[] recordOut, long[] err);

    static native int fc_codec_decrypt(long codec, byte[] topic, long topicLen, byte[] key, long keyLen,
            byte[] value, long valueLen, byte[] headers, long headersLen, long[] recordOut, long[] err);

    static native int fc_codec_encrypt_batch(long codec, byte[] topic, long topicLen, byte[] batch, long batchLen,
            long[] batchOut, long[] err);

    static native int fc_codec_decrypt_batch(long codec, byte[] topic, long topicLen, byte[] batch, long batchLen,
            long[] batchOut, long[] err);

    static native int fc_codec_stats(long codec, long[] statsOut, long[] err);

    static native int fc_codec_clear_key_cache(long codec, long[] err);

    static native int fc_codec_shred(long codec, byte[] subject, long subjectLen, long[] keysOut, long[] err);

    static native int fc_codec_rotate_subject(long codec, byte[] subject, long subjectLen, long[] err);

    static native int fc_codec_reload(long codec, byte[] loadedOut, long[] err);

    static native int fc_codec_policy_status(long codec, long[] statusOut, long[] err);

    static native void fc_buf_free(long[] buf);

    static native void fc_error_free(long[] err);

    // ---- helpers over the raw calls ----

    static final int BUF_LONGS = 3;
    static final int ERROR_LONGS = 5;

    /** A static NUL-terminated string of the library. */
    static String cString(long p) {
        return p == 0 ? null : new Pointer(p).getString(0, StandardCharsets.UTF_8.name());
    }

    /** Copies an fc_buf's bytes into Java (the caller frees the buffer). */
    static byte[] bytes(long[] buf) {
        if (buf[0] == 0 || buf[1] == 0) {
            return new byte[0];
        }
        if (buf[1] > Integer.MAX_VALUE - 8) {
            throw new IllegalStateException("fieldcrypt returned " + buf[1] + " bytes, more than a Java array holds");
        }
        return new Pointer(buf[0]).getByteArray(0, (int) buf[1]);
    }

    /** The exception for a failed call; frees the error's message. */
    static FieldcryptException error(int status, long[] err) {
        try {
            boolean retryable = (int) (err[0] >>> 32) != 0;
            long index = err[1];
            String message = new String(bytes(new long[] {err[2], err[3], err[4]}), StandardCharsets.UTF_8);
            if (message.isEmpty()) {
                message = cString(fc_status_name(status));
            }
            return FieldcryptException.of(status, message, retryable,
                    index < 0 || index > Integer.MAX_VALUE ? -1 : (int) index);
        } finally {
            fc_error_free(err);
        }
    }
}
