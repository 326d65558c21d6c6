package dev.fieldcrypt;

/** A limit of the configuration or the format was exceeded. */
public class LimitExceededException extends FieldcryptException {
    private static final long serialVersionUID = 1L;

    LimitExceededException(String message, boolean retryable, int index) {
        super(Kind.LIMIT_EXCEEDED, Kind.LIMIT_EXCEEDED.code(), message, retryable, index);
    }
}
