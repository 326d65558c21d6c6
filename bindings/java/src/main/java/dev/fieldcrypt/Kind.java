package dev.fieldcrypt;

/** The status codes of the C ABI (ffi/README.md, "Status codes"), with the core's kind names. */
public enum Kind {
    OK(0, "ok"),
    POLICY(1, "policy"),
    CONFIG(2, "config"),
    RECORD(3, "record"),
    FORMAT(4, "format"),
    UNSUPPORTED_VERSION(5, "unsupported_version"),
    CRYPTO(6, "crypto"),
    KEY_NOT_FOUND(7, "key_not_found"),
    ACCESS_DENIED(8, "access_denied"),
    KMS(9, "kms"),
    REGISTRY(10, "registry"),
    LIMIT_EXCEEDED(11, "limit_exceeded"),
    /** The record's data key was shredded (its data subject was erased). */
    SHREDDED(12, "shredded"),
    INVALID_ARGUMENT(100, "invalid_argument"),
    PANIC(101, "panic"),
    /** An error kind of the core newer than the ABI's list ({@code FC_ERR_OTHER}). */
    OTHER(102, "other"),
    /** A status this version of the binding does not know (a newer library). */
    UNKNOWN(-1, "unknown");

    private final int code;
    private final String kindName;

    Kind(int code, String kindName) {
        this.code = code;
        this.kindName = kindName;
    }

    /** The ABI status code ({@code FC_ERR_*}); -1 for {@link #UNKNOWN}. */
    public int code() {
        return code;
    }

    /** The core's name of the kind, as {@code fc_status_name} gives it: "crypto", "key_not_found"... */
    public String kindName() {
        return kindName;
    }

    /** The kind of an ABI status code; {@link #UNKNOWN} for a code not listed. */
    public static Kind of(int code) {
        for (Kind k : values()) {
            if (k.code == code) {
                return k;
            }
        }
        return UNKNOWN;
    }
}
