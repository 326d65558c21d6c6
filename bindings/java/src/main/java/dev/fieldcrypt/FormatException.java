package dev.fieldcrypt;

/** A {@code fieldcrypt} header or ciphertext is malformed. */
public class FormatException extends FieldcryptException {
    private static final long serialVersionUID = 1L;

    FormatException(String message, boolean retryable, int index) {
        super(Kind.FORMAT, Kind.FORMAT.code(), message, retryable, index);
    }
}
