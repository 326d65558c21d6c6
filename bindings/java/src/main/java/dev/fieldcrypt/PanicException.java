package dev.fieldcrypt;

/** The library hit an internal error (a Rust panic, caught at the ABI): a bug to report. */
public class PanicException extends FieldcryptException {
    private static final long serialVersionUID = 1L;

    PanicException(String message, boolean retryable, int index) {
        super(Kind.PANIC, Kind.PANIC.code(), message, retryable, index);
    }
}
