package dev.fieldcrypt;

/** The library was called with an invalid argument (a binding bug, or invalid UTF-8). */
public class InvalidArgumentException extends FieldcryptException {
    private static final long serialVersionUID = 1L;

    InvalidArgumentException(String message, boolean retryable, int index) {
        super(Kind.INVALID_ARGUMENT, Kind.INVALID_ARGUMENT.code(), message, retryable, index);
    }
}
