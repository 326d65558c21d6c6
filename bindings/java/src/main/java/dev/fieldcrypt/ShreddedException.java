package dev.fieldcrypt;

/** The record's data key was shredded (its data subject was erased): unreadable for good. */
public class ShreddedException extends FieldcryptException {
    private static final long serialVersionUID = 1L;

    ShreddedException(String message, boolean retryable, int index) {
        super(Kind.SHREDDED, Kind.SHREDDED.code(), message, retryable, index);
    }
}
