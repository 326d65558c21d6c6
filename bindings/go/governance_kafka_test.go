//go:build fieldcrypt_kafka

package fieldcrypt_test

// The governance scenario of schemas/governance/README.md through a real broker, with the
// package linked to libfieldcrypt_ffi_kafka (-tags fieldcrypt_kafka; run-tests.sh runs it): the
// policy documents are published with confluent-kafka-go's Producer, so this test binary holds
// two copies of librdkafka (confluent-kafka-go's and the library's, whose symbols are hidden)
// and proves they coexist. The codecs follow the policy topic (manual reload) and keep
// per-subject keys in a Kafka key store.
//
// Needs FIELDCRYPT_KAFKA (bootstrap servers); without it the test skips, unless
// FIELDCRYPT_SERVER_TESTS=1 is set: then it fails.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	fieldcrypt "github.com/fieldcrypt/fieldcrypt/bindings/go"
	"github.com/fieldcrypt/fieldcrypt/bindings/go/internal/fctest"
)

// publishPolicy sends a policy document as the security team's tooling would (key = policy id)
// with confluent-kafka-go, and waits for the broker's acknowledgement.
func publishPolicy(t *testing.T, p *kafka.Producer, topic string, document []byte) {
	t.Helper()
	done := make(chan kafka.Event, 1)
	err := p.Produce(&kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: kafka.PartitionAny},
		Key: []byte("governance-demo"), Value: document}, done)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-done:
		if err := e.(*kafka.Message).TopicPartition.Error; err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no acknowledgement from the broker in 30 s")
	}
}

func TestGovernanceBrokerScenario(t *testing.T) {
	if !fieldcrypt.KafkaSupport {
		t.Fatal("built with fieldcrypt_kafka but KafkaSupport is false")
	}
	bootstrap := fctest.Broker(t)
	run := time.Now().UnixNano()
	policyTopic := fmt.Sprintf("_fieldcrypt_policy-gov-go-%d", run)
	keyTopic := fmt.Sprintf("_fieldcrypt_keys-gov-go-%d", run)
	topic := fmt.Sprintf("customers-gov-go-%d", run)
	config := func(profile string) fieldcrypt.Config {
		return governanceConfig(t,
			map[string]any{"kafka": map[string]any{"bootstrap": bootstrap, "topic": policyTopic, "timeout": 20},
				"policy_id": "governance-demo", "manual": true},
			map[string]any{"kafka": map[string]any{"bootstrap": bootstrap, "topic": keyTopic, "timeout": 20}},
			profile)
	}
	open := func(profile string) *fieldcrypt.Codec {
		t.Helper()
		c, err := fieldcrypt.NewCodec(nil, config(profile))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}

	admin, err := kafka.NewAdminClient(&kafka.ConfigMap{"bootstrap.servers": bootstrap})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	res, err := admin.CreateTopics(ctx, []kafka.TopicSpecification{{Topic: policyTopic, NumPartitions: 1, ReplicationFactor: 1}})
	cancel()
	admin.Close()
	if err != nil || res[0].Error.Code() != kafka.ErrNoError {
		t.Fatalf("creating the policy topic: %v %v", err, res)
	}
	publisher, err := kafka.NewProducer(&kafka.ConfigMap{"bootstrap.servers": bootstrap})
	if err != nil {
		t.Fatal(err)
	}
	defer publisher.Close()

	// 1. Revision 1, signed: email encrypted, card in clear.
	publishPolicy(t, publisher, policyTopic, governanceFixture(t, "policy-r1.signed.json"))
	producer := open("")
	s := policyStatus(t, producer)
	if s.PolicyID != "governance-demo" || s.Revision != 1 || s.SignedBy != "governance-test" || s.Loads != 1 {
		t.Fatalf("status after opening: %+v", s)
	}
	if !strings.Contains(s.Source, policyTopic) {
		t.Errorf("the source %q does not name the topic %s", s.Source, policyTopic)
	}
	wantInClear(t, encryptCustomer(t, producer, topic, "c-1"), "c-1", "card")

	// 2. A tampered revision 2 is refused; revision 1 stays in force.
	publishPolicy(t, publisher, policyTopic, governanceFixture(t, "policy-r2.tampered.json"))
	loaded, err := producer.Reload()
	if loaded {
		t.Fatal("Reload of a tampered policy reports it loaded")
	}
	wantKind(t, err, fieldcrypt.KindPolicy, fieldcrypt.ErrPolicy)
	if s := policyStatus(t, producer); s.Revision != 1 || s.Rejections != 1 ||
		s.LastError == nil || s.LastError.Kind != fieldcrypt.KindPolicy {
		t.Fatalf("status after the tampered revision: %+v", s)
	}
	wantInClear(t, encryptCustomer(t, producer, topic, "c-1"), "c-1", "card")

	// 3. The signed revision 2 loads without a restart: card is encrypted too.
	publishPolicy(t, publisher, policyTopic, governanceFixture(t, "policy-r2.signed.json"))
	if loaded, err := producer.Reload(); err != nil || !loaded {
		t.Fatalf("Reload of revision 2 = %v, %v; want true, nil", loaded, err)
	}
	if s := policyStatus(t, producer); s.Revision != 2 || s.Loads != 2 || s.SignedBy != "governance-test" {
		t.Fatalf("status after revision 2: %+v", s)
	}
	wantInClear(t, encryptCustomer(t, producer, topic, "c-1"), "c-1")

	// 4. Shredding c-2 through the producer's codec: a consumer opened afterwards, and one
	// running since before (its key store reader follows the topic), refuse c-2's records
	// within 10 s and still read c-1's and c-3's.
	ids := []string{"c-1", "c-2", "c-3"}
	records := map[string]fieldcrypt.Record{}
	for _, id := range ids {
		records[id] = encryptCustomer(t, producer, topic, id)
	}
	running := open("strict")
	for _, id := range ids {
		r := records[id]
		if _, err := running.Decrypt(topic, r.Key, r.Value, r.Headers); err != nil {
			t.Fatalf("%s before the shred: %v", id, err)
		}
	}
	if n, err := producer.Shred("c-2"); err != nil || n < 1 {
		t.Fatalf("Shred(c-2) = %d, %v; want at least one key", n, err)
	}
	fresh := open("strict")
	for name, consumer := range map[string]*fieldcrypt.Codec{"fresh": fresh, "running": running} {
		deadline := time.Now().Add(10 * time.Second)
		for _, id := range ids {
			r := records[id]
			if id == "c-2" {
				for {
					_, err := consumer.Decrypt(topic, r.Key, r.Value, r.Headers)
					if errors.Is(err, fieldcrypt.ErrShredded) {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("%s consumer: c-2 still reads 10 s after the shred (error %v)", name, err)
					}
					time.Sleep(50 * time.Millisecond)
				}
				continue
			}
			clear, err := consumer.Decrypt(topic, r.Key, r.Value, r.Headers)
			if err != nil || !strings.Contains(string(clear.Value), id+"@example.com") {
				t.Fatalf("%s consumer, %s: %s, %v", name, id, clear.Value, err)
			}
		}
	}
}
