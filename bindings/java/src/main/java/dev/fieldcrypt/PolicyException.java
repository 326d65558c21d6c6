package dev.fieldcrypt;

/** The policy is invalid (unknown member, bad path, overlapping rules...). */
public class PolicyException extends FieldcryptException {
    private static final long serialVersionUID = 1L;

    PolicyException(String message, boolean retryable, int index) {
        super(Kind.POLICY, Kind.POLICY.code(), message, retryable, index);
    }
}
