package dev.fieldcrypt;

/** A codec's counters since it was made ({@code fc_stats}, in the ABI's order). */
public record Stats(
        long recordsEncrypted,
        long recordsDecrypted,
        long fieldsEncrypted,
        long fieldsDecrypted,
        long fieldsWithheld,
        long deksCreated,
        long kmsWrapCalls,
        long kmsUnwrapCalls,
        long kmsDeriveCalls,
        long kmsErrors,
        long kmsDenialsCached,
        long dekCacheHits,
        long dekCacheMisses) {

    static final int COUNT = 13;

    static Stats of(long[] s) {
        return new Stats(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[8], s[9], s[10], s[11], s[12]);
    }
}
