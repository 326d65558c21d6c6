// Package fctest holds what the tests and benchmarks share: the repository's fixtures
// (schemas/), codecs on the demo policy, and the standard benchmark record (shared/bench: the
// payment record, four fields tagged PII) as a Go value for confluent-kafka-go's Avro serde.
package fctest

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"

	fieldcrypt "github.com/fieldcrypt/fieldcrypt/bindings/go"
)

// Root is the repository's root directory.
var Root = func() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "..")
}()

var (
	PolicyPath = filepath.Join(Root, "schemas", "policies", "demo.json")
	KeysPath   = filepath.Join(Root, "schemas", "keys", "local-dev.json")
	PaymentDir = filepath.Join(Root, "schemas", "payment")
)

// Broker is the bootstrap address of the real broker (FIELDCRYPT_KAFKA). Without one the test
// is skipped in a plain `go test`, and fails where servers are expected: FIELDCRYPT_SERVER_TESTS=1
// (make test) or FIELDCRYPT_REGISTRY set.
func Broker(tb testing.TB) string {
	tb.Helper()
	bootstrap := os.Getenv("FIELDCRYPT_KAFKA")
	if bootstrap == "" {
		const start = `FIELDCRYPT_RUN=/tmp/fc-go scripts/servers.sh start kafka && eval "$(FIELDCRYPT_RUN=/tmp/fc-go scripts/servers.sh env)"`
		if os.Getenv("FIELDCRYPT_SERVER_TESTS") == "1" || os.Getenv("FIELDCRYPT_REGISTRY") != "" {
			tb.Fatalf("FIELDCRYPT_SERVER_TESTS=1 or FIELDCRYPT_REGISTRY is set, but FIELDCRYPT_KAFKA is not: %s", start)
		}
		tb.Skip("no broker: set FIELDCRYPT_KAFKA (" + start + ")")
	}
	return bootstrap
}

// Read returns a file's content or fails the test.
func Read(tb testing.TB, path string) []byte {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// LocalKMS is the development key file as the codec's kms option.
func LocalKMS() map[string]any {
	return map[string]any{"local": map[string]any{"key_file": KeysPath}}
}

// Codec is a codec on the demo policy with the local development keys; cfg's other options are
// kept. It is closed when the test ends.
func Codec(tb testing.TB, cfg fieldcrypt.Config) *fieldcrypt.Codec {
	tb.Helper()
	if cfg.KMS == nil {
		cfg.KMS = LocalKMS()
	}
	c, err := fieldcrypt.NewCodec(Read(tb, PolicyPath), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// Customer is a record of the demo policy's topic "customers" (password and visa encrypted),
// compact: fieldcrypt drops insignificant whitespace inside the objects it rewrites.
const Customer = `{"name":"Ada","password":"hunter2","visa":"4111-1111-1111-1111","city":"London"}`

// PII are the payment record's tagged values.
var PII = []string{"jane.doe@example.com", "123-45-6789", "1600 Amphitheatre Parkway", "+1-650-555-0100"}

// Address and Payment are the standard benchmark record (schemas/payment/payment.avsc) for
// confluent-kafka-go's avrov2 serde.
type Address struct {
	Street  string `avro:"street"`
	City    string `avro:"city"`
	Zip     string `avro:"zip"`
	Country string `avro:"country"`
}

type Payment struct {
	ID          string   `avro:"id"`
	CustomerID  int64    `avro:"customer_id"`
	Email       string   `avro:"email"`
	FullName    string   `avro:"full_name"`
	SSN         string   `avro:"ssn"`
	AmountCents int64    `avro:"amount_cents"`
	Currency    string   `avro:"currency"`
	CreatedAt   int64    `avro:"created_at"`
	Address     Address  `avro:"address"`
	Tags        []string `avro:"tags"`
	Phone       *string  `avro:"phone"`
}

// NewPayment is the workload's record (shared/bench/payment.json), a fresh value each call:
// confluent-kafka-go's ENCRYPT rule rewrites the value it serializes.
func NewPayment() *Payment {
	phone := "+1-650-555-0100"
	return &Payment{
		ID: "3f1c9a0e-7b2d-4c8e-9f10-2a6b5d4e8c71", CustomerID: 123456789012,
		Email: "jane.doe@example.com", FullName: "Jane Alexandra Doe", SSN: "123-45-6789",
		AmountCents: 1999, Currency: "EUR", CreatedAt: 1714000000000,
		Address: Address{Street: "1600 Amphitheatre Parkway", City: "Mountain View", Zip: "94043", Country: "US"},
		Tags:    []string{"priority", "online", "repeat-customer"},
		Phone:   &phone,
	}
}
