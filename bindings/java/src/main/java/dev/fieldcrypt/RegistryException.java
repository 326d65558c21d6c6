package dev.fieldcrypt;

/** The schema registry failed, or does not know the schema. */
public class RegistryException extends FieldcryptException {
    private static final long serialVersionUID = 1L;

    RegistryException(String message, boolean retryable, int index) {
        super(Kind.REGISTRY, Kind.REGISTRY.code(), message, retryable, index);
    }
}
