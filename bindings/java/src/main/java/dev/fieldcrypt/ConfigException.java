package dev.fieldcrypt;

/** The configuration is invalid, or names a KMS client, profile or schema that is not there. */
public class ConfigException extends FieldcryptException {
    private static final long serialVersionUID = 1L;

    ConfigException(String message, boolean retryable, int index) {
        super(Kind.CONFIG, Kind.CONFIG.code(), message, retryable, index);
    }
}
