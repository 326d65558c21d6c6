package dev.fieldcrypt;

/**
 * A failure reported by the fieldcrypt library. One subclass per {@link Kind} (this class itself
 * for {@link Kind#OTHER} and {@link Kind#UNKNOWN}); messages never hold
 * plaintext or key material (the core writes them).
 */
public class FieldcryptException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    private final Kind kind;
    private final int status;
    private final boolean retryable;
    private final int index;

    protected FieldcryptException(Kind kind, int status, String message, boolean retryable, int index) {
        super(message);
        this.kind = kind;
        this.status = status;
        this.retryable = retryable;
        this.index = index;
    }

    /** What went wrong, by category. */
    public Kind kind() {
        return kind;
    }

    /** The raw ABI status code (differs from {@code kind().code()} only for {@link Kind#UNKNOWN}). */
    public int status() {
        return status;
    }

    /** Whether the same call may succeed later (a KMS or registry outage, say). */
    public boolean isRetryable() {
        return retryable;
    }

    /** The failing record of a batch call, else -1. */
    public int index() {
        return index;
    }

    /** The exception of the kind of {@code status}. */
    static FieldcryptException of(int status, String message, boolean retryable, int index) {
        Kind kind = Kind.of(status);
        switch (kind) {
            case POLICY: return new PolicyException(message, retryable, index);
            case CONFIG: return new ConfigException(message, retryable, index);
            case RECORD: return new RecordException(message, retryable, index);
            case FORMAT: return new FormatException(message, retryable, index);
            case UNSUPPORTED_VERSION: return new UnsupportedVersionException(message, retryable, index);
            case CRYPTO: return new CryptoException(message, retryable, index);
            case KEY_NOT_FOUND: return new KeyNotFoundException(message, retryable, index);
            case ACCESS_DENIED: return new AccessDeniedException(message, retryable, index);
            case KMS: return new KmsException(message, retryable, index);
            case REGISTRY: return new RegistryException(message, retryable, index);
            case LIMIT_EXCEEDED: return new LimitExceededException(message, retryable, index);
            case SHREDDED: return new ShreddedException(message, retryable, index);
            case INVALID_ARGUMENT: return new InvalidArgumentException(message, retryable, index);
            case PANIC: return new PanicException(message, retryable, index);
            // OTHER and statuses newer than this binding: no class of their own.
            default: return new FieldcryptException(kind, status, message, retryable, index);
        }
    }
}
