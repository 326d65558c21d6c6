package dev.fieldcrypt;

/** Authentication failed: the record, its header or a ciphertext was changed or moved. */
public class CryptoException extends FieldcryptException {
    private static final long serialVersionUID = 1L;

    CryptoException(String message, boolean retryable, int index) {
        super(Kind.CRYPTO, Kind.CRYPTO.code(), message, retryable, index);
    }
}
