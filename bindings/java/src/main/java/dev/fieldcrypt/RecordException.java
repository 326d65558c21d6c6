package dev.fieldcrypt;

/** The record cannot be processed: not parseable in its format, or already encrypted. */
public class RecordException extends FieldcryptException {
    private static final long serialVersionUID = 1L;

    RecordException(String message, boolean retryable, int index) {
        super(Kind.RECORD, Kind.RECORD.code(), message, retryable, index);
    }
}
