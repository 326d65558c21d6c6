//go:build !fieldcrypt_kafka

package fieldcrypt

// The default: the static library, linked by its full path (with -L/-l the linker would prefer
// the .so next to it). No librdkafka inside: Kafka options of the configuration (a "kafka" key
// store or policy source) fail with a KindConfig error. Build with -tags fieldcrypt_kafka for
// them (link_kafka.go).

/*
#cgo LDFLAGS: ${SRCDIR}/lib/libfieldcrypt_ffi.a -lm -ldl -lpthread
*/
import "C"

// KafkaSupport is true when the binary links libfieldcrypt_ffi_kafka (build tag
// fieldcrypt_kafka): only then do the Kafka key store and the Kafka policy source work.
const KafkaSupport = false
