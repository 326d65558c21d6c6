package kafkaserde_test

import (
	"bytes"
	"errors"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/confluentinc/confluent-kafka-go/v2/schemaregistry"
	"github.com/confluentinc/confluent-kafka-go/v2/schemaregistry/serde"
	"github.com/confluentinc/confluent-kafka-go/v2/schemaregistry/serde/avrov2"

	fieldcrypt "github.com/fieldcrypt/fieldcrypt/bindings/go"
	"github.com/fieldcrypt/fieldcrypt/bindings/go/internal/fctest"
	"github.com/fieldcrypt/fieldcrypt/bindings/go/kafkaserde"
)

// fixture: the payment schema registered as the topic's value subject in a mock registry,
// confluent-kafka-go's Avro serde on it, and codecs that know the schema by its id.
type fixture struct {
	client   schemaregistry.Client
	ser      *avrov2.Serializer
	deser    *avrov2.Deserializer
	producer *fieldcrypt.Codec
	consumer *fieldcrypt.Codec
}

func newFixture(t *testing.T, registryURL, topic string) fixture {
	t.Helper()
	client, err := schemaregistry.NewClient(schemaregistry.NewConfig(registryURL))
	if err != nil {
		t.Fatal(err)
	}
	avsc := string(fctest.Read(t, filepath.Join(fctest.PaymentDir, "payment.avsc")))
	id, err := client.Register(topic+"-value", schemaregistry.SchemaInfo{Schema: avsc, SchemaType: "AVRO"}, false)
	if err != nil {
		t.Fatal(err)
	}
	sc := avrov2.NewSerializerConfig()
	sc.AutoRegisterSchemas = false
	sc.UseLatestVersion = true
	ser, err := avrov2.NewSerializer(client, serde.ValueSerde, sc)
	if err != nil {
		t.Fatal(err)
	}
	deser, err := avrov2.NewDeserializer(client, serde.ValueSerde, avrov2.NewDeserializerConfig())
	if err != nil {
		t.Fatal(err)
	}
	deser.MessageFactory = func(string, string) (interface{}, error) { return &fctest.Payment{}, nil }
	schemas := map[string]fieldcrypt.Schema{strconv.Itoa(id): {Type: "AVRO", Schema: avsc}}
	return fixture{
		client: client, ser: ser, deser: deser,
		producer: fctest.Codec(t, fieldcrypt.Config{Schemas: schemas}),
		consumer: fctest.Codec(t, fieldcrypt.Config{Schemas: schemas}),
	}
}

func checkSealed(t *testing.T, payload []byte, headers []kafka.Header) {
	t.Helper()
	for _, pii := range fctest.PII {
		if bytes.Contains(payload, []byte(pii)) {
			t.Fatalf("%s left in the clear", pii)
		}
	}
	if len(headers) == 0 || headers[len(headers)-1].Key != "fieldcrypt" {
		t.Fatalf("headers %v", headers)
	}
}

func checkPayment(t *testing.T, got interface{}) {
	t.Helper()
	p, ok := got.(*fctest.Payment)
	want := fctest.NewPayment()
	if !ok || p.Email != want.Email || p.SSN != want.SSN || p.Address != want.Address ||
		p.Phone == nil || *p.Phone != *want.Phone || p.FullName != want.FullName || len(p.Tags) != 3 {
		t.Fatalf("%#v", got)
	}
}

func TestSerializerRoundTrip(t *testing.T) {
	f := newFixture(t, "mock://", "payments")
	ser := kafkaserde.NewSerializer(f.producer, f.ser, serde.ValueSerde)
	hs, payload, err := ser.SerializeWithHeaders("payments", fctest.NewPayment())
	if err != nil {
		t.Fatal(err)
	}
	checkSealed(t, payload, hs)
	if payload[0] != 0 {
		t.Fatal("the Confluent framing is gone")
	}

	deser := kafkaserde.NewDeserializer(f.consumer, f.deser, serde.ValueSerde)
	var p fctest.Payment
	if err := deser.DeserializeWithHeadersInto("payments", hs, payload, &p); err != nil {
		t.Fatal(err)
	}
	checkPayment(t, &p)
	// Without the headers there is nothing to decrypt with: the ciphertext stays.
	if err := deser.DeserializeInto("payments", payload, &p); err != nil || p.Email == fctest.PII[0] {
		t.Fatalf("%v %q", err, p.Email)
	}
	s, _ := f.consumer.Stats()
	if s.RecordsDecrypted != 1 || s.FieldsDecrypted != 4 {
		t.Fatalf("%+v", s)
	}

	// Serialize cannot return the header: it refuses rather than lose it.
	if _, err := ser.Serialize("payments", fctest.NewPayment()); !errors.Is(err, kafkaserde.ErrHeadersNeeded) {
		t.Fatal(err)
	}
	// A topic the policy leaves alone needs no header.
	g := newFixture(t, "mock://", "audit")
	plain, err := kafkaserde.NewSerializer(g.producer, g.ser, serde.ValueSerde).Serialize("audit", fctest.NewPayment())
	if err != nil || !bytes.Contains(plain, []byte(fctest.PII[0])) {
		t.Fatal(err)
	}
	// A nil message is a tombstone.
	if hs, payload, err := ser.SerializeWithHeaders("payments", nil); err != nil || payload != nil || hs != nil {
		t.Fatal(hs, payload, err)
	}
}

func TestMessages(t *testing.T) {
	f := newFixture(t, "mock://", "payments")
	ser := kafkaserde.NewSerializer(f.producer, f.ser, serde.ValueSerde)
	m, err := ser.NewMessage("payments", fctest.NewPayment())
	if err != nil {
		t.Fatal(err)
	}
	if *m.TopicPartition.Topic != "payments" || m.TopicPartition.Partition != kafka.PartitionAny || m.Key != nil {
		t.Fatalf("%v", m)
	}
	checkSealed(t, m.Value, m.Headers)
	m.Key = []byte("customer-1")
	m.Headers = append([]kafka.Header{{Key: "trace", Value: []byte("t1")}}, m.Headers...)

	deser := kafkaserde.NewDeserializer(f.consumer, f.deser, serde.ValueSerde)
	got, err := deser.FromMessage(m)
	if err != nil {
		t.Fatal(err)
	}
	checkPayment(t, got)
	var p fctest.Payment
	if err := deser.FromMessageInto(m, &p); err != nil {
		t.Fatal(err)
	}
	checkPayment(t, &p)
	if m.Headers[len(m.Headers)-1].Key != "fieldcrypt" {
		t.Fatal("FromMessage changed the message")
	}

	// Whole messages in place: plain serialization, then one call for key and value.
	plain, err := f.ser.Serialize("payments", fctest.NewPayment())
	if err != nil {
		t.Fatal(err)
	}
	topic := "payments"
	msg := &kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic}, Key: []byte("k"), Value: plain,
		Headers: []kafka.Header{{Key: "trace", Value: nil}}}
	if err := kafkaserde.EncryptMessage(f.producer, msg); err != nil {
		t.Fatal(err)
	}
	checkSealed(t, msg.Value, msg.Headers)
	if err := kafkaserde.DecryptMessage(f.consumer, msg); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(msg.Value, plain) || string(msg.Key) != "k" || len(msg.Headers) != 1 || msg.Headers[0].Value != nil {
		t.Fatalf("%v", msg)
	}
	if err := kafkaserde.EncryptMessage(f.producer, &kafka.Message{}); err == nil {
		t.Fatal("a message without a topic")
	}
}

func TestErrorsPassThrough(t *testing.T) {
	f := newFixture(t, "mock://", "payments")
	ser := kafkaserde.NewSerializer(f.producer, f.ser, serde.ValueSerde)
	m, err := ser.NewMessage("payments", fctest.NewPayment())
	if err != nil {
		t.Fatal(err)
	}
	m.Headers[len(m.Headers)-1].Value = []byte{1, 0}
	_, err = kafkaserde.NewDeserializer(f.consumer, f.deser, serde.ValueSerde).FromMessage(m)
	var fe *fieldcrypt.Error
	if !errors.As(err, &fe) || fe.Kind != fieldcrypt.KindFormat {
		t.Fatalf("%v", err)
	}
	f.producer.Close()
	if _, err := ser.NewMessage("payments", fctest.NewPayment()); !errors.Is(err, fieldcrypt.ErrClosed) {
		t.Fatal(err)
	}
}
