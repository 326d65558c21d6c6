package dev.fieldcrypt;

/** The KMS failed or could not be reached (often retryable). */
public class KmsException extends FieldcryptException {
    private static final long serialVersionUID = 1L;

    KmsException(String message, boolean retryable, int index) {
        super(Kind.KMS, Kind.KMS.code(), message, retryable, index);
    }
}
