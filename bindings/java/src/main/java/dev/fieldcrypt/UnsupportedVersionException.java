package dev.fieldcrypt;

/** A {@code fieldcrypt} header of a format version this library does not read. */
public class UnsupportedVersionException extends FieldcryptException {
    private static final long serialVersionUID = 1L;

    UnsupportedVersionException(String message, boolean retryable, int index) {
        super(Kind.UNSUPPORTED_VERSION, Kind.UNSUPPORTED_VERSION.code(), message, retryable, index);
    }
}
