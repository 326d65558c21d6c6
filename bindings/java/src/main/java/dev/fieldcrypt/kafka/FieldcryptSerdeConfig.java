package dev.fieldcrypt.kafka;

import dev.fieldcrypt.Codec;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import org.apache.kafka.common.config.ConfigException;

/**
 * The properties of {@link EncryptingSerializer} and {@link DecryptingDeserializer} when Kafka
 * makes them from class names ({@code value.serializer=dev.fieldcrypt.kafka.EncryptingSerializer}).
 */
public final class FieldcryptSerdeConfig {
    /**
     * The policy: JSON text (starting with '{') or the path of a policy file. Required unless
     * {@link #CODEC}, or a {@link #CONFIG} with a {@code policy_source} (then leave it out: the
     * codec is {@link Codec#fromConfig}).
     */
    public static final String POLICY = "fieldcrypt.policy";
    /** The codec's configuration (kms, profile, registry...): JSON text or a file path. Optional. */
    public static final String CONFIG = "fieldcrypt.config";
    /**
     * A {@link Codec} object to use instead of {@link #POLICY} and {@link #CONFIG} (the caller
     * keeps and closes it): for a producer or consumer made from a {@code Map<String, Object>}.
     */
    public static final String CODEC = "fieldcrypt.codec";
    /** The serializer the key serializer wraps: class name, Class or instance (default ByteArraySerializer). */
    public static final String KEY_SERIALIZER = "fieldcrypt.key.serializer";
    /** The serializer the value serializer wraps (default ByteArraySerializer). */
    public static final String VALUE_SERIALIZER = "fieldcrypt.value.serializer";
    /** The deserializer the key deserializer wraps (default ByteArrayDeserializer). */
    public static final String KEY_DESERIALIZER = "fieldcrypt.key.deserializer";
    /** The deserializer the value deserializer wraps (default ByteArrayDeserializer). */
    public static final String VALUE_DESERIALIZER = "fieldcrypt.value.deserializer";

    private FieldcryptSerdeConfig() {}

    /** The codec {@link #CODEC} names, else null. */
    static Codec sharedCodec(Map<String, ?> configs) {
        Object c = configs.get(CODEC);
        if (c == null || c instanceof Codec) {
            return (Codec) c;
        }
        throw new ConfigException(CODEC, c.getClass().getName(), "not a dev.fieldcrypt.Codec");
    }

    /** A new codec from {@link #POLICY} and {@link #CONFIG} (only the latter with a {@code policy_source}). */
    static Codec newCodec(Map<String, ?> configs) {
        Object policy = configs.get(POLICY);
        Object config = configs.get(CONFIG);
        if (policy == null && config == null) {
            throw new ConfigException("missing " + POLICY + " (policy JSON or file) or " + CODEC
                    + " (or a " + CONFIG + " with a policy_source)");
        }
        if (policy == null) {
            return Codec.fromConfig(text(CONFIG, config));
        }
        return new Codec(text(POLICY, policy), config == null ? null : text(CONFIG, config));
    }

    /** JSON text as given, or the content of the file it names. */
    private static String text(String name, Object value) {
        String s = value.toString();
        if (s.strip().startsWith("{")) {
            return s;
        }
        try {
            return Files.readString(Path.of(s.strip()));
        } catch (IOException e) {
            throw new UncheckedIOException(name + ": cannot read " + s.strip(), e);
        }
    }

    /** The wrapped serializer or deserializer a property names (a class name, a Class or an instance). */
    static Object newDelegate(Map<String, ?> configs, String name, Class<?> defaultClass) {
        Object v = configs.get(name);
        try {
            if (v == null) {
                return defaultClass.getDeclaredConstructor().newInstance();
            }
            if (v instanceof Class<?> c) {
                return c.getDeclaredConstructor().newInstance();
            }
            if (v instanceof String s) {
                ClassLoader loader = Thread.currentThread().getContextClassLoader();
                Class<?> c = Class.forName(s.strip(), true,
                        loader != null ? loader : FieldcryptSerdeConfig.class.getClassLoader());
                return c.getDeclaredConstructor().newInstance();
            }
            return v;
        } catch (ReflectiveOperationException e) {
            throw new ConfigException(name, v, "cannot instantiate: " + e);
        }
    }
}
