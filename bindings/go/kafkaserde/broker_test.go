package kafkaserde_test

// Through a real broker: confluent-kafka-go's Producer sends records serialized by its Avro
// serializer and encrypted by kafkaserde; its Consumer reads them back, checked raw (PII is
// ciphertext, the fieldcrypt header is there) and through the decrypting deserializer.
//
// Needs FIELDCRYPT_KAFKA (bootstrap servers). With FIELDCRYPT_REGISTRY (a Confluent-compatible
// registry API) the schema is registered there and the codec fetches it from there; without it
// a mock registry and the schema given to the codec up front stand in. The test skips only when
// none of FIELDCRYPT_KAFKA, FIELDCRYPT_REGISTRY and FIELDCRYPT_SERVER_TESTS=1 is set: the
// servers are meant to be up, and a missing FIELDCRYPT_KAFKA fails it.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/confluentinc/confluent-kafka-go/v2/schemaregistry"
	"github.com/confluentinc/confluent-kafka-go/v2/schemaregistry/serde"
	"github.com/confluentinc/confluent-kafka-go/v2/schemaregistry/serde/avrov2"

	fieldcrypt "github.com/fieldcrypt/fieldcrypt/bindings/go"
	"github.com/fieldcrypt/fieldcrypt/bindings/go/internal/fctest"
	"github.com/fieldcrypt/fieldcrypt/bindings/go/kafkaserde"
)

func TestBrokerRoundTrip(t *testing.T) {
	bootstrap := fctest.Broker(t)
	// A topic of its own per run; the demo policy encrypts payments-*.
	topic := fmt.Sprintf("payments-go-%d", time.Now().UnixNano())

	f := brokerFixture(t, topic)
	createTopic(t, bootstrap, topic)

	producer, err := kafka.NewProducer(&kafka.ConfigMap{"bootstrap.servers": bootstrap, "enable.idempotence": true})
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	ser := kafkaserde.NewSerializer(f.producer, f.ser, serde.ValueSerde)
	var sent []*fctest.Payment
	for i := 0; i < 5; i++ {
		p := fctest.NewPayment()
		p.ID = fmt.Sprintf("%s-%d", p.ID, i)
		if i == 1 {
			p.Phone = nil // the nullable PII field, null: stays null
		}
		sent = append(sent, p) // the plain serializer does not change p
		m, err := ser.NewMessage(topic, p)
		if err != nil {
			t.Fatal(err)
		}
		m.Key = []byte(p.ID)
		m.Headers = append([]kafka.Header{{Key: "trace", Value: []byte(fmt.Sprint(i))}}, m.Headers...)
		produce(t, producer, m)
	}
	// A tombstone passes through.
	produce(t, producer, &kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: kafka.PartitionAny}, Key: []byte("gone")})

	consumer, err := kafka.NewConsumer(&kafka.ConfigMap{
		"bootstrap.servers": bootstrap, "group.id": topic, "auto.offset.reset": "earliest", "enable.auto.commit": false})
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	if err := consumer.Subscribe(topic, nil); err != nil {
		t.Fatal(err)
	}
	deser := kafkaserde.NewDeserializer(f.consumer, f.deser, serde.ValueSerde)
	deadline := time.Now().Add(60 * time.Second)
	for i := 0; i <= len(sent); i++ {
		var m *kafka.Message
		for m == nil {
			if time.Now().After(deadline) {
				t.Fatalf("consumed %d of %d records from %s", i, len(sent)+1, topic)
			}
			m, err = consumer.ReadMessage(time.Second)
			if err != nil && err.(kafka.Error).Code() != kafka.ErrTimedOut {
				t.Fatal(err)
			}
		}
		if i == len(sent) {
			if m.Value != nil || string(m.Key) != "gone" {
				t.Fatalf("the tombstone came back as %v", m)
			}
			break
		}
		// What the broker stores: ciphertext, and the header.
		for _, pii := range fctest.PII {
			if bytes.Contains(m.Value, []byte(pii)) {
				t.Fatalf("record %d: %s stored in the clear", i, pii)
			}
		}
		if len(m.Headers) != 2 || m.Headers[0].Key != "trace" || m.Headers[1].Key != "fieldcrypt" || string(m.Key) != sent[i].ID {
			t.Fatalf("record %d: key %q headers %v", i, m.Key, m.Headers)
		}
		var got fctest.Payment
		if err := deser.FromMessageInto(m, &got); err != nil {
			t.Fatal(err)
		}
		want := sent[i]
		if got.ID != want.ID || got.Email != want.Email || got.SSN != want.SSN || got.Address != want.Address ||
			(got.Phone == nil) != (want.Phone == nil) || (want.Phone != nil && *got.Phone != *want.Phone) {
			t.Fatalf("record %d: %+v, want %+v", i, got, *want)
		}
	}
	if s, _ := f.consumer.Stats(); s.RecordsDecrypted != uint64(len(sent)) || s.FieldsDecrypted != uint64(4*len(sent)-1) {
		t.Fatalf("%+v", s)
	}
}

// brokerFixture: FIELDCRYPT_REGISTRY's registry if set, else the mock one.
func brokerFixture(t *testing.T, topic string) fixture {
	url := os.Getenv("FIELDCRYPT_REGISTRY")
	if url == "" {
		return newFixture(t, "mock://", topic)
	}
	client, err := schemaregistry.NewClient(schemaregistry.NewConfig(url))
	if err != nil {
		t.Fatal(err)
	}
	avsc := string(fctest.Read(t, filepath.Join(fctest.PaymentDir, "payment.avsc")))
	if _, err := client.Register(topic+"-value", schemaregistry.SchemaInfo{Schema: avsc, SchemaType: "AVRO"}, false); err != nil {
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
	return fixture{client: client, ser: ser, deser: deser,
		producer: fctest.Codec(t, fieldcrypt.Config{Registry: url}),
		consumer: fctest.Codec(t, fieldcrypt.Config{Registry: url})}
}

func createTopic(t *testing.T, bootstrap, topic string) {
	admin, err := kafka.NewAdminClient(&kafka.ConfigMap{"bootstrap.servers": bootstrap})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := admin.CreateTopics(ctx, []kafka.TopicSpecification{{Topic: topic, NumPartitions: 1, ReplicationFactor: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Error.Code() != kafka.ErrNoError {
		t.Fatal(res[0].Error)
	}
}

// produce sends m and waits for the broker's acknowledgement.
func produce(t *testing.T, p *kafka.Producer, m *kafka.Message) {
	t.Helper()
	done := make(chan kafka.Event, 1)
	if err := p.Produce(m, done); err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-done:
		if err := e.(*kafka.Message).TopicPartition.Error; err != nil {
			t.Fatal(err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("no acknowledgement from the broker in 60 s")
	}
}
