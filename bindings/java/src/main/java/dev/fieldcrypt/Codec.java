package dev.fieldcrypt;

import java.lang.ref.Cleaner;
import java.lang.ref.Reference;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Objects;
import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * Encrypts and decrypts the fields a policy selects in Kafka records: a handle on the Rust core's
 * codec ({@code fc_codec}). Thread-safe: share one per process. {@link #close()} it when done
 * (a codec that becomes unreachable unclosed is freed by a {@link Cleaner}); after close every
 * call throws {@link IllegalStateException}.
 *
 * <p>All crypto, format and policy work is the core's: this class only moves bytes across the
 * C ABI. Failures are {@link FieldcryptException}s, one subclass per {@link Kind}.
 */
public final class Codec implements AutoCloseable {
    private static final Cleaner CLEANER = Cleaner.create();

    /** The native handle, freed once: by close() or, for a leaked codec, by the cleaner. */
    private static final class Handle implements Runnable {
        private long ptr;

        Handle(long ptr) {
            this.ptr = ptr;
        }

        @Override
        public void run() {
            long p = ptr;
            ptr = 0;
            if (p != 0) {
                Ffi.fc_codec_free(p);
            }
        }
    }

    private final Handle handle;
    private final Cleaner.Cleanable cleanable;
    // Calls share the read lock; close() takes the write lock, so it waits for calls in flight
    // and no call ever sees a freed handle.
    private final ReentrantReadWriteLock lock = new ReentrantReadWriteLock();

    /**
     * A codec for a policy.
     *
     * @param policyJson the policy document (docs/POLICY.md), JSON text: a policy, or a signed
     *     envelope (verified against the configuration's {@code trusted_keys})
     * @param configJson the configuration (ffi/README.md, "Configuration JSON": {@code kms},
     *     {@code profile}, {@code registry}, {@code schemas}, {@code limits}...), JSON text;
     *     {@code null} or empty for none
     * @throws PolicyException if the policy is invalid
     * @throws ConfigException if the configuration is
     */
    public Codec(String policyJson, String configJson) {
        this(utf8(Objects.requireNonNull(policyJson, "policyJson")), configJson);
    }

    private Codec(byte[] policy, String configJson) {
        byte[] config = configJson == null ? new byte[0] : utf8(configJson);
        long[] out = new long[1];
        long[] err = new long[Ffi.ERROR_LONGS];
        int status = policy == null
                ? Ffi.fc_codec_new(null, 0, config, config.length, out, err)
                : Ffi.fc_codec_new(policy, policy.length, config, config.length, out, err);
        if (status != 0) {
            throw Ffi.error(status, err);
        }
        handle = new Handle(out[0]);
        cleanable = CLEANER.register(this, handle);
    }

    /**
     * A codec whose policy comes from the configuration's {@code policy_source} (a file, a URL,
     * or a Kafka topic: docs/POLICY.md, "In the configuration document"): fetched and verified
     * against {@code trusted_keys} now, then followed, by polling every {@code interval} seconds
     * or, with {@code "manual": true}, only on {@link #reload()}.
     *
     * <p>A Kafka policy source or key store needs the native library with librdkafka inside:
     * run with {@code -Dfieldcrypt.library=fieldcrypt_ffi_kafka} (see {@link #library()}); the
     * default library refuses them with a {@link ConfigException}.
     *
     * @param configJson the configuration, JSON text, with a {@code policy_source}
     * @throws ConfigException if the configuration is invalid or has no {@code policy_source}
     * @throws PolicyException if the fetched policy is refused (signature, policy id, revision...)
     * @throws FieldcryptException of the source's kind if the source cannot be read
     */
    public static Codec fromConfig(String configJson) {
        return new Codec((byte[]) null, Objects.requireNonNull(configJson, "configJson"));
    }

    /** The library's version, e.g. "0.1.0". */
    public static String version() {
        return Ffi.cString(Ffi.fc_version());
    }

    /**
     * The native library this JVM uses, as JNA was asked for it: the system property
     * {@code fieldcrypt.library}, read once when the library is first loaded, else
     * {@code "fieldcrypt_ffi"}. {@code "fieldcrypt_ffi_kafka"} is the one with librdkafka inside
     * (the Kafka key store and the Kafka policy source work only there).
     */
    public static String library() {
        return Ffi.LIBRARY;
    }

    /**
     * Fetches the policy source now (a codec made by {@link #fromConfig}). On a failure the
     * policy in force stays and the failure is counted in {@link #policyStatus()}.
     *
     * @return {@code true} when a new revision is now in force, {@code false} when the source had
     *     nothing new
     * @throws PolicyException if the fetched document is refused (a bad signature, an older
     *     revision, another policy id...)
     * @throws ConfigException if the codec has a fixed policy (no {@code policy_source})
     * @throws FieldcryptException if the source cannot be read (counted in
     *     {@link PolicyStatus#fetchErrors()}; the policy in force stays)
     */
    public boolean reload() {
        long p = acquire();
        try {
            byte[] loaded = new byte[1];
            long[] err = new long[Ffi.ERROR_LONGS];
            int status = Ffi.fc_codec_reload(p, loaded, err);
            if (status != 0) {
                throw Ffi.error(status, err);
            }
            return loaded[0] != 0;
        } finally {
            release();
        }
    }

    /** The policy in force (id, revision, who signed it, where it came from) and the reload counters. */
    public PolicyStatus policyStatus() {
        long p = acquire();
        long[] out = new long[Ffi.BUF_LONGS];
        try {
            long[] err = new long[Ffi.ERROR_LONGS];
            int status = Ffi.fc_codec_policy_status(p, out, err);
            if (status != 0) {
                throw Ffi.error(status, err);
            }
            return PolicyStatus.parse(new String(Ffi.bytes(out), StandardCharsets.UTF_8));
        } finally {
            if (out[0] != 0) {
                Ffi.fc_buf_free(out);
            }
            release();
        }
    }

    /**
     * Encrypts the fields the policy selects for {@code topic} in the record's key and value, and
     * adds the {@code fieldcrypt} header (none when nothing was selected). Inputs are not changed.
     *
     * @param key the key, {@code null} when absent
     * @param value the value, {@code null} when absent (a tombstone)
     * @param headers the record's headers, {@code null} for none
     */
    public Record encrypt(String topic, byte[] key, byte[] value, List<Header> headers) {
        return call(true, topic, key, value, headers);
    }

    /** {@link #encrypt(String, byte[], byte[], List)} of a record. */
    public Record encrypt(String topic, Record record) {
        return call(true, topic, record.key(), record.value(), record.headers());
    }

    /**
     * Decrypts what the record's {@code fieldcrypt} header lists, as the codec's profile allows
     * (the header is dropped once no ciphertext is left). A record without the header is returned
     * unchanged.
     */
    public Record decrypt(String topic, byte[] key, byte[] value, List<Header> headers) {
        return call(false, topic, key, value, headers);
    }

    /** {@link #decrypt(String, byte[], byte[], List)} of a record. */
    public Record decrypt(String topic, Record record) {
        return call(false, topic, record.key(), record.value(), record.headers());
    }

    /**
     * Encrypts records in one native call. The batch fails as a whole at its first failing record:
     * the exception's {@link FieldcryptException#index()} says which.
     */
    public List<Record> encryptBatch(String topic, List<Record> records) {
        return batch(true, topic, records);
    }

    /** Decrypts records in one native call; fails as {@link #encryptBatch} does. */
    public List<Record> decryptBatch(String topic, List<Record> records) {
        return batch(false, topic, records);
    }

    /** The codec's counters. */
    public Stats stats() {
        long p = acquire();
        try {
            long[] stats = new long[Stats.COUNT];
            long[] err = new long[Ffi.ERROR_LONGS];
            int status = Ffi.fc_codec_stats(p, stats, err);
            if (status != 0) {
                throw Ffi.error(status, err);
            }
            return Stats.of(stats);
        } finally {
            release();
        }
    }

    /**
     * Crypto-shreds a data subject (docs/SHREDDING.md): deletes its data keys from the codec's key
     * store, so none of its records decrypts again.
     *
     * @return how many keys were deleted
     */
    public long shred(String subject) {
        byte[] s = utf8(Objects.requireNonNull(subject, "subject"));
        long p = acquire();
        try {
            long[] keys = new long[1];
            long[] err = new long[Ffi.ERROR_LONGS];
            int status = Ffi.fc_codec_shred(p, s, s.length, keys, err);
            if (status != 0) {
                throw Ffi.error(status, err);
            }
            return keys[0];
        } finally {
            release();
        }
    }

    /** Stores a new data key for a data subject; older records still decrypt. */
    public void rotateSubject(String subject) {
        byte[] s = utf8(Objects.requireNonNull(subject, "subject"));
        long p = acquire();
        try {
            long[] err = new long[Ffi.ERROR_LONGS];
            int status = Ffi.fc_codec_rotate_subject(p, s, s.length, err);
            if (status != 0) {
                throw Ffi.error(status, err);
            }
        } finally {
            release();
        }
    }

    /** Forgets the cached data keys (the next records fetch or create them through the KMS again). */
    public void clearKeyCache() {
        long p = acquire();
        try {
            long[] err = new long[Ffi.ERROR_LONGS];
            int status = Ffi.fc_codec_clear_key_cache(p, err);
            if (status != 0) {
                throw Ffi.error(status, err);
            }
        } finally {
            release();
        }
    }

    /** Frees the native codec; waits for calls in progress. Idempotent. */
    @Override
    public void close() {
        lock.writeLock().lock();
        try {
            cleanable.clean();
        } finally {
            lock.writeLock().unlock();
        }
    }

    // ---- the calls ----

    private Record call(boolean encrypt, String topic, byte[] key, byte[] value, List<Header> headers) {
        byte[] t = utf8(Objects.requireNonNull(topic, "topic"));
        byte[] h = Packed.headers(headers);
        long[] out = new long[Ffi.BUF_LONGS];
        long[] err = new long[Ffi.ERROR_LONGS];
        long p = acquire();
        try {
            long keyLen = key == null ? -1 : key.length;
            long valueLen = value == null ? -1 : value.length;
            int status = encrypt
                    ? Ffi.fc_codec_encrypt(p, t, t.length, key, keyLen, value, valueLen, h, h.length, out, err)
                    : Ffi.fc_codec_decrypt(p, t, t.length, key, keyLen, value, valueLen, h, h.length, out, err);
            if (status != 0) {
                throw Ffi.error(status, err);
            }
            return Packed.record(Ffi.bytes(out));
        } finally {
            if (out[0] != 0) {
                Ffi.fc_buf_free(out);
            }
            release();
        }
    }

    private List<Record> batch(boolean encrypt, String topic, List<Record> records) {
        byte[] t = utf8(Objects.requireNonNull(topic, "topic"));
        byte[] b = Packed.batch(Objects.requireNonNull(records, "records"));
        long[] out = new long[Ffi.BUF_LONGS];
        long[] err = new long[Ffi.ERROR_LONGS];
        long p = acquire();
        try {
            int status = encrypt
                    ? Ffi.fc_codec_encrypt_batch(p, t, t.length, b, b.length, out, err)
                    : Ffi.fc_codec_decrypt_batch(p, t, t.length, b, b.length, out, err);
            if (status != 0) {
                throw Ffi.error(status, err);
            }
            return Packed.records(Ffi.bytes(out));
        } finally {
            if (out[0] != 0) {
                Ffi.fc_buf_free(out);
            }
            release();
        }
    }

    private long acquire() {
        lock.readLock().lock();
        long p = handle.ptr;
        if (p == 0) {
            lock.readLock().unlock();
            throw new IllegalStateException("fieldcrypt: the codec is closed");
        }
        return p;
    }

    private void release() {
        lock.readLock().unlock();
        // Keeps this codec reachable (so the cleaner cannot free the handle) until the call is over.
        Reference.reachabilityFence(this);
    }

    private static byte[] utf8(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }
}
