package fieldcrypt_test

// The standard workload (shared/bench/README.md): the Avro payment record, four fields tagged
// PII. From the same Go value to encrypted bytes (and back), in one run:
//
//	a  confluent-kafka-go's plain Avro serializer (avrov2, mock registry), then Codec.Encrypt
//	b  confluent-kafka-go's Avro serializer with an ENCRYPT rule on tag PII (CSFLE, local KMS)
//	c  Codec.Encrypt alone, on the serialized record
//	d  an empty cgo call: the binding's fixed cost per call
//
// and the decrypt side of a, b and c. encrypt/ratio and decrypt/ratio run a and b interleaved,
// record by record, and report their ratio, which a shared machine's changing load disturbs
// less than that of separate runs. bindings/go/run-tests.sh bench prints the figures.
//
// Every iteration of a and b serializes a fresh value (fctest.NewPayment): the ENCRYPT rule
// rewrites the value it is given. Both serializers use the subject's latest version (the
// ENCRYPT rule lives in the registered schema's rule set); the mock registry parses the
// schema's JSON again on every such lookup (about 12 us), which the real client caches, so the
// benchmark caches it the same way (latestCache).

import (
	"bytes"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/schemaregistry"
	_ "github.com/confluentinc/confluent-kafka-go/v2/schemaregistry/rules/encryption"
	_ "github.com/confluentinc/confluent-kafka-go/v2/schemaregistry/rules/encryption/localkms"
	"github.com/confluentinc/confluent-kafka-go/v2/schemaregistry/serde"
	"github.com/confluentinc/confluent-kafka-go/v2/schemaregistry/serde/avrov2"

	fieldcrypt "github.com/fieldcrypt/fieldcrypt/bindings/go"
	"github.com/fieldcrypt/fieldcrypt/bindings/go/internal/fctest"
)

const benchTopic = "payments"

type avroSerde struct {
	ser   *avrov2.Serializer
	deser *avrov2.Deserializer
	id    int
}

// newAvroSerde registers the payment schema (with rules, if any) under the topic's value subject
// of a fresh mock registry and returns a serializer that uses it.
func newAvroSerde(b *testing.B, rules *schemaregistry.RuleSet, ruleConfig map[string]string) avroSerde {
	b.Helper()
	mock, err := schemaregistry.NewClient(schemaregistry.NewConfig("mock://"))
	if err != nil {
		b.Fatal(err)
	}
	client := &latestCache{Client: mock}
	avsc := string(fctest.Read(b, filepath.Join(fctest.PaymentDir, "payment.avsc")))
	id, err := client.Register(benchTopic+"-value", schemaregistry.SchemaInfo{Schema: avsc, SchemaType: "AVRO", RuleSet: rules}, false)
	if err != nil {
		b.Fatal(err)
	}
	sc := avrov2.NewSerializerConfig()
	sc.AutoRegisterSchemas = false
	sc.UseLatestVersion = true
	sc.RuleConfig = ruleConfig
	ser, err := avrov2.NewSerializer(client, serde.ValueSerde, sc)
	if err != nil {
		b.Fatal(err)
	}
	dc := avrov2.NewDeserializerConfig()
	dc.RuleConfig = ruleConfig
	deser, err := avrov2.NewDeserializer(client, serde.ValueSerde, dc)
	if err != nil {
		b.Fatal(err)
	}
	return avroSerde{ser: ser, deser: deser, id: id}
}

// latestCache caches the latest version of a subject, as the real registry client does (its
// latestToSchemaCache) and the mock does not.
type latestCache struct {
	schemaregistry.Client
	latest sync.Map // subject -> schemaregistry.SchemaMetadata
}

func (c *latestCache) GetLatestSchemaMetadata(subject string) (schemaregistry.SchemaMetadata, error) {
	if m, ok := c.latest.Load(subject); ok {
		return m.(schemaregistry.SchemaMetadata), nil
	}
	m, err := c.Client.GetLatestSchemaMetadata(subject)
	if err == nil {
		c.latest.Store(subject, m)
	}
	return m, err
}

func BenchmarkWorkload(b *testing.B) {
	plain := newAvroSerde(b, nil, nil)
	csfle := newAvroSerde(b, &schemaregistry.RuleSet{DomainRules: []schemaregistry.Rule{{
		Name: "encrypt-pii", Kind: "TRANSFORM", Mode: "WRITEREAD", Type: "ENCRYPT", Tags: []string{"PII"},
		Params: map[string]string{
			"encrypt.kek.name":   "bench-kek",
			"encrypt.kms.type":   "local-kms",
			"encrypt.kms.key.id": "bench-key",
		},
		OnFailure: "ERROR,NONE",
	}}}, map[string]string{"secret": "bench-secret"})

	avsc := string(fctest.Read(b, filepath.Join(fctest.PaymentDir, "payment.avsc")))
	codec := fctest.Codec(b, fieldcrypt.Config{Schemas: map[string]fieldcrypt.Schema{
		strconv.Itoa(plain.id): {Type: "AVRO", Schema: avsc}}})

	serialized, err := plain.ser.Serialize(benchTopic, fctest.NewPayment())
	if err != nil {
		b.Fatal(err)
	}
	sealed, err := codec.Encrypt(benchTopic, nil, serialized, nil)
	if err != nil {
		b.Fatal(err)
	}
	if s, _ := codec.Stats(); s.FieldsEncrypted != 4 {
		b.Fatalf("the workload encrypts 4 fields, not %d", s.FieldsEncrypted)
	}
	csfleBytes, err := csfle.ser.Serialize(benchTopic, fctest.NewPayment())
	if err != nil {
		b.Fatal(err)
	}
	checkCSFLE(b, csfle, csfleBytes)

	b.Run("encrypt/a_avro+fieldcrypt", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			v, err := plain.ser.Serialize(benchTopic, fctest.NewPayment())
			if err != nil {
				b.Fatal(err)
			}
			if _, err := codec.Encrypt(benchTopic, nil, v, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encrypt/b_avro_csfle", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := csfle.ser.Serialize(benchTopic, fctest.NewPayment()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encrypt/c_fieldcrypt", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := codec.Encrypt(benchTopic, nil, serialized, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encrypt/avro_only", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := plain.ser.Serialize(benchTopic, fctest.NewPayment()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decrypt/a_fieldcrypt+avro", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			r, err := codec.Decrypt(benchTopic, nil, sealed.Value, sealed.Headers)
			if err != nil {
				b.Fatal(err)
			}
			var p fctest.Payment
			if err := plain.deser.DeserializeInto(benchTopic, r.Value, &p); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decrypt/b_avro_csfle", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			var p fctest.Payment
			if err := csfle.deser.DeserializeInto(benchTopic, csfleBytes, &p); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decrypt/c_fieldcrypt", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := codec.Decrypt(benchTopic, nil, sealed.Value, sealed.Headers); err != nil {
				b.Fatal(err)
			}
		}
	})
	// a and b interleaved record by record, timed one by one: the ratio of their medians holds
	// up on a machine whose load changes under the benchmark.
	b.Run("encrypt/ratio", func(b *testing.B) {
		interleaved(b, func() error {
			v, err := plain.ser.Serialize(benchTopic, fctest.NewPayment())
			if err == nil {
				_, err = codec.Encrypt(benchTopic, nil, v, nil)
			}
			return err
		}, func() error {
			_, err := csfle.ser.Serialize(benchTopic, fctest.NewPayment())
			return err
		})
	})
	b.Run("decrypt/ratio", func(b *testing.B) {
		interleaved(b, func() error {
			r, err := codec.Decrypt(benchTopic, nil, sealed.Value, sealed.Headers)
			if err == nil {
				var p fctest.Payment
				err = plain.deser.DeserializeInto(benchTopic, r.Value, &p)
			}
			return err
		}, func() error {
			var p fctest.Payment
			return csfle.deser.DeserializeInto(benchTopic, csfleBytes, &p)
		})
	})
	b.Run("d_cgo_call", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			fieldcrypt.CgoNoop()
		}
	})
}

// interleaved runs a and b alternately, one record each, and reports the mean time of each
// (a-ns, b-ns) and b-ns/a-ns (a-speedup: how many times the throughput of b a has). Means, not
// medians: the garbage collector's share, which b's allocations drive, is part of the cost.
func interleaved(b *testing.B, a, bb func() error) {
	var ta, tb time.Duration
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if err := a(); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := bb(); err != nil {
			b.Fatal(err)
		}
		ta, tb = ta+t1.Sub(t0), tb+time.Since(t1)
	}
	b.ReportMetric(float64(ta)/float64(b.N), "a-ns")
	b.ReportMetric(float64(tb)/float64(b.N), "b-ns")
	b.ReportMetric(float64(tb)/float64(ta), "a-speedup")
}

// checkCSFLE makes sure the ENCRYPT rule ran (the PII is not in the bytes) and reverses.
func checkCSFLE(b *testing.B, s avroSerde, data []byte) {
	b.Helper()
	for _, pii := range fctest.PII {
		if bytes.Contains(data, []byte(pii)) {
			b.Fatalf("CSFLE left %s in the clear", pii)
		}
	}
	var p fctest.Payment
	if err := s.deser.DeserializeInto(benchTopic, data, &p); err != nil {
		b.Fatal(err)
	}
	if p.Email != fctest.PII[0] || p.Address.Street != fctest.PII[2] || p.Phone == nil || *p.Phone != fctest.PII[3] {
		b.Fatalf("CSFLE round trip: %+v", p)
	}
}
