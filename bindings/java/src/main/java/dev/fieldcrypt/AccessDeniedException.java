package dev.fieldcrypt;

/** The KMS refused the caller the key. */
public class AccessDeniedException extends FieldcryptException {
    private static final long serialVersionUID = 1L;

    AccessDeniedException(String message, boolean retryable, int index) {
        super(Kind.ACCESS_DENIED, Kind.ACCESS_DENIED.code(), message, retryable, index);
    }
}
