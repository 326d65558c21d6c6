package fieldcrypt

// CgoNoop exposes cgoNoop to the benchmarks (package fieldcrypt_test).
var CgoNoop = cgoNoop
