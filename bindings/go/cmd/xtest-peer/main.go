// Command xtest-peer is the Go peer of the cross-language produce/consume matrix
// (xtests/README.md, "The matrix"): confluent-kafka-go's Producer and Consumer with the fieldcrypt
// Go binding.
//
//	xtest-peer produce --bootstrap HOST:PORT --spec SPEC.json --topic-prefix PREFIX
//	xtest-peer consume --bootstrap HOST:PORT --spec SPEC.json --topic-prefix PREFIX --group GROUP --out OUT.json
//
// produce encrypts each record of the spec with a codec of producer_config and produces it to
// PREFIX-FORMAT; consume reads as many records per topic as the spec lists, decrypts them with a
// codec of consumer_config and writes {"formats": {FORMAT: [{"raw": R, "decrypted": R}, ...]}}.
// Any failure: a message on stderr, exit status 1.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	fieldcrypt "github.com/fieldcrypt/fieldcrypt/bindings/go"
	"github.com/fieldcrypt/fieldcrypt/bindings/go/internal/xtest"
)

// formatOrder is the order in which formats are produced; a spec may hold any of them.
var formatOrder = []string{"json", "avro", "protobuf", "json_schema"}

const timeout = 60 * time.Second

type spec struct {
	Policy         json.RawMessage           `json:"policy"`
	ProducerConfig json.RawMessage           `json:"producer_config"`
	ConsumerConfig json.RawMessage           `json:"consumer_config"`
	Formats        map[string][]xtest.Record `json:"formats"`
}

type args struct {
	bootstrap, spec, prefix, group, out string
}

const usage = `usage:
  xtest-peer produce --bootstrap HOST:PORT --spec SPEC.json --topic-prefix PREFIX
  xtest-peer consume --bootstrap HOST:PORT --spec SPEC.json --topic-prefix PREFIX --group GROUP --out OUT.json`

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "xtest-peer (go):", err)
		os.Exit(1)
	}
}

func run(argv []string) error {
	if len(argv) == 0 || (argv[0] != "produce" && argv[0] != "consume") {
		return errors.New(usage)
	}
	cmd := argv[0]
	var a args
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.StringVar(&a.bootstrap, "bootstrap", "", "Kafka bootstrap servers")
	fs.StringVar(&a.spec, "spec", "", "the spec file (JSON)")
	fs.StringVar(&a.prefix, "topic-prefix", "", "topics are PREFIX-FORMAT")
	if cmd == "consume" {
		fs.StringVar(&a.group, "group", "", "the consumer group")
		fs.StringVar(&a.out, "out", "", "the output file (JSON)")
	}
	if err := fs.Parse(argv[1:]); err != nil {
		return err
	}
	if fs.NArg() != 0 || a.bootstrap == "" || a.spec == "" || a.prefix == "" ||
		(cmd == "consume" && (a.group == "" || a.out == "")) {
		return errors.New(usage)
	}
	s, formats, err := readSpec(a.spec)
	if err != nil {
		return err
	}
	if cmd == "produce" {
		return produce(a, s, formats)
	}
	return consume(a, s, formats)
}

// readSpec reads the spec and returns the formats it holds, in formatOrder.
func readSpec(path string) (*spec, []string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	var s spec
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	var formats []string
	for _, f := range formatOrder {
		if _, ok := s.Formats[f]; ok {
			formats = append(formats, f)
		}
	}
	if len(formats) != len(s.Formats) {
		return nil, nil, fmt.Errorf("%s: unknown format among %v (known: %v)", path, keys(s.Formats), formatOrder)
	}
	if len(formats) == 0 {
		return nil, nil, fmt.Errorf("%s: no formats", path)
	}
	return &s, formats, nil
}

func produce(a args, s *spec, formats []string) error {
	codec, err := fieldcrypt.NewCodecJSON(s.Policy, s.ProducerConfig)
	if err != nil {
		return fmt.Errorf("producer codec: %w", err)
	}
	defer codec.Close()
	p, err := kafka.NewProducer(&kafka.ConfigMap{"bootstrap.servers": a.bootstrap, "enable.idempotence": true})
	if err != nil {
		return err
	}
	defer p.Close()

	total := 0
	for _, f := range formats {
		total += len(s.Formats[f])
	}
	deliveries := make(chan kafka.Event, total) // never blocks the producer's event loop
	for _, f := range formats {
		topic := a.prefix + "-" + f
		for i, r := range s.Formats[f] {
			sealed, err := codec.Encrypt(topic, r.Key, r.Value, r.Headers)
			if err != nil {
				return fmt.Errorf("%s record %d: encrypt: %w", topic, i, err)
			}
			err = p.Produce(&kafka.Message{
				TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: kafka.PartitionAny},
				Key:            sealed.Key,
				Value:          sealed.Value,
				Headers:        kafkaHeaders(sealed.Headers),
			}, deliveries)
			if err != nil {
				return fmt.Errorf("%s record %d: produce: %w", topic, i, err)
			}
		}
	}
	for ; total > 0; total-- {
		if err := awaitDelivery(deliveries); err != nil {
			return err
		}
	}
	if left := p.Flush(int(timeout / time.Millisecond)); left != 0 {
		return fmt.Errorf("%d records not delivered after flush", left)
	}
	return nil
}

// awaitDelivery waits for one delivery report and returns its error.
func awaitDelivery(deliveries chan kafka.Event) error {
	select {
	case e := <-deliveries:
		m, ok := e.(*kafka.Message)
		if !ok {
			return fmt.Errorf("unexpected delivery event %v", e)
		}
		if err := m.TopicPartition.Error; err != nil {
			return fmt.Errorf("%s: delivery failed: %w", *m.TopicPartition.Topic, err)
		}
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("no delivery report from the broker in %s", timeout)
	}
}

type entry struct {
	Raw       xtest.Record `json:"raw"`
	Decrypted xtest.Record `json:"decrypted"`
}

func consume(a args, s *spec, formats []string) error {
	codec, err := fieldcrypt.NewCodecJSON(s.Policy, s.ConsumerConfig)
	if err != nil {
		return fmt.Errorf("consumer codec: %w", err)
	}
	defer codec.Close()
	c, err := kafka.NewConsumer(&kafka.ConfigMap{
		"bootstrap.servers":  a.bootstrap,
		"group.id":           a.group,
		"auto.offset.reset":  "earliest",
		"enable.auto.commit": false,
	})
	if err != nil {
		return err
	}
	defer c.Close()

	formatOf := map[string]string{} // topic -> format
	var topics []string
	out := map[string][]entry{}
	for _, f := range formats {
		topic := a.prefix + "-" + f
		formatOf[topic] = f
		topics = append(topics, topic)
		out[f] = []entry{}
	}
	if err := c.SubscribeTopics(topics, nil); err != nil {
		return err
	}

	missing := 0
	for _, f := range formats {
		missing += len(s.Formats[f])
	}
	deadline := time.Now().Add(timeout)
	var lastErr error // the last transient consumer error, for the timeout message
	for missing > 0 {
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("timed out after %s: %s (last consumer error: %v)", timeout, progress(s, out, formats), lastErr)
		}
		m, err := c.ReadMessage(min(left, time.Second))
		if err != nil {
			var ke kafka.Error
			if errors.As(err, &ke) && ke.Code() == kafka.ErrTimedOut {
				continue
			}
			if errors.As(err, &ke) && ke.IsFatal() {
				return err
			}
			lastErr = err // e.g. a topic not created yet: retried until the deadline
			continue
		}
		topic := *m.TopicPartition.Topic
		f, ok := formatOf[topic]
		if !ok {
			return fmt.Errorf("a record from unexpected topic %s", topic)
		}
		i := len(out[f])
		if i >= len(s.Formats[f]) {
			return fmt.Errorf("%s: more records than the %d the spec lists (offset %v)", topic, len(s.Formats[f]), m.TopicPartition.Offset)
		}
		raw := fieldcrypt.Record{Key: m.Key, Value: m.Value, Headers: make([]fieldcrypt.Header, len(m.Headers))}
		for j, h := range m.Headers {
			raw.Headers[j] = fieldcrypt.Header(h)
		}
		opened, err := codec.Decrypt(topic, raw.Key, raw.Value, raw.Headers)
		if err != nil {
			return fmt.Errorf("%s record %d (offset %v): decrypt: %w", topic, i, m.TopicPartition.Offset, err)
		}
		out[f] = append(out[f], entry{Raw: xtest.Record(raw), Decrypted: xtest.Record(opened)})
		missing--
	}

	doc, err := json.MarshalIndent(map[string]any{"formats": out}, "", " ")
	if err != nil {
		return err
	}
	return os.WriteFile(a.out, append(doc, '\n'), 0o644)
}

func kafkaHeaders(hs []fieldcrypt.Header) []kafka.Header {
	out := make([]kafka.Header, len(hs))
	for i, h := range hs {
		out[i] = kafka.Header(h)
	}
	return out
}

func progress(s *spec, out map[string][]entry, formats []string) string {
	p := ""
	for _, f := range formats {
		p += fmt.Sprintf("%s %d/%d ", f, len(out[f]), len(s.Formats[f]))
	}
	return p + "records read"
}

func keys(m map[string][]xtest.Record) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}
