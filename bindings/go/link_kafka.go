//go:build fieldcrypt_kafka

package fieldcrypt

// With the build tag fieldcrypt_kafka: the shared library libfieldcrypt_ffi_kafka.so from
// bindings/go/lib/ (found at run time through the rpath set here, or LD_LIBRARY_PATH when the
// binary is moved). It has the same fc_* functions as the static library plus librdkafka, whose
// symbols it hides, so it loads next to confluent-kafka-go's own librdkafka in one process.

/*
#cgo LDFLAGS: -L${SRCDIR}/lib -lfieldcrypt_ffi_kafka -Wl,-rpath,${SRCDIR}/lib
*/
import "C"

// KafkaSupport is true when the binary links libfieldcrypt_ffi_kafka (build tag
// fieldcrypt_kafka): only then do the Kafka key store and the Kafka policy source work.
const KafkaSupport = true
