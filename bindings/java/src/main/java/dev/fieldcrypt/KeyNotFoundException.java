package dev.fieldcrypt;

/** The KMS does not know the key-encryption key. */
public class KeyNotFoundException extends FieldcryptException {
    private static final long serialVersionUID = 1L;

    KeyNotFoundException(String message, boolean retryable, int index) {
        super(Kind.KEY_NOT_FOUND, Kind.KEY_NOT_FOUND.code(), message, retryable, index);
    }
}
