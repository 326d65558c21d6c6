// Package kafkaserde plugs fieldcrypt into confluent-kafka-go (v2): a Serializer that wraps any
// serde.Serializer (Avro, Protobuf, JSON Schema, ...) and encrypts what it writes, and a
// Deserializer that decrypts before the wrapped serde.Deserializer reads.
//
// The "fieldcrypt" header must travel with the record, so encrypting needs the message's
// headers: use SerializeWithHeaders (or NewMessage, which fills a *kafka.Message) on the producer
// side, and DeserializeWithHeaders (or FromMessage) on the consumer side. Serialize refuses to
// return encrypted bytes without their header.
//
// Each Serializer works on one part of the record (serde.KeySerde or serde.ValueSerde). For a
// topic whose policy encrypts fields of both the key and the value, serialize both parts with
// plain serializers and call EncryptMessage once: the record gets one header for both.
package kafkaserde

import (
	"errors"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/confluentinc/confluent-kafka-go/v2/schemaregistry"
	"github.com/confluentinc/confluent-kafka-go/v2/schemaregistry/serde"

	fieldcrypt "github.com/fieldcrypt/fieldcrypt/bindings/go"
)

// ErrHeadersNeeded is returned by Serializer.Serialize when the record was encrypted: its
// "fieldcrypt" header would be lost. Use SerializeWithHeaders or NewMessage.
var ErrHeadersNeeded = errors.New("kafkaserde: the record was encrypted and needs its fieldcrypt header: use SerializeWithHeaders or NewMessage")

// Serializer is a serde.Serializer that serializes with Inner, then encrypts with Codec.
type Serializer struct {
	Codec *fieldcrypt.Codec
	Inner serde.Serializer
	Part  serde.Type // serde.ValueSerde or serde.KeySerde
}

var _ serde.Serializer = (*Serializer)(nil)

// NewSerializer wraps inner. The codec is shared, not owned: Close does not close it.
func NewSerializer(codec *fieldcrypt.Codec, inner serde.Serializer, part serde.Type) *Serializer {
	return &Serializer{Codec: codec, Inner: inner, Part: part}
}

// ConfigureSerializer configures the wrapped serializer.
func (s *Serializer) ConfigureSerializer(client schemaregistry.Client, serdeType serde.Type,
	conf *serde.SerializerConfig) error {
	s.Part = serdeType
	return s.Inner.ConfigureSerializer(client, serdeType, conf)
}

// SerializeWithHeaders serializes msg with the wrapped serializer and encrypts the result. The
// headers returned are the wrapped serializer's (e.g. a schema id header) plus "fieldcrypt";
// the producer must send them with the payload.
func (s *Serializer) SerializeWithHeaders(topic string, msg interface{}) ([]kafka.Header, []byte, error) {
	hs, payload, err := s.Inner.SerializeWithHeaders(topic, msg)
	if err != nil || payload == nil {
		return hs, payload, err
	}
	var rec fieldcrypt.Record
	if s.Part == serde.KeySerde {
		rec, err = s.Codec.Encrypt(topic, payload, nil, fromKafka(hs))
		payload = rec.Key
	} else {
		rec, err = s.Codec.Encrypt(topic, nil, payload, fromKafka(hs))
		payload = rec.Value
	}
	if err != nil {
		return nil, nil, err
	}
	return toKafka(rec.Headers), payload, nil
}

// Serialize is SerializeWithHeaders for records the policy leaves alone; it returns
// ErrHeadersNeeded when something was encrypted. (Other headers are dropped, as the wrapped
// serializer's Serialize drops them.)
func (s *Serializer) Serialize(topic string, msg interface{}) ([]byte, error) {
	hs, payload, err := s.SerializeWithHeaders(topic, msg)
	if err != nil {
		return nil, err
	}
	for _, h := range hs {
		if h.Key == "fieldcrypt" {
			return nil, ErrHeadersNeeded
		}
	}
	return payload, nil
}

// NewMessage serializes and encrypts msg into a message for topic (partition
// kafka.PartitionAny), ready for Producer.Produce: its Value (or Key, for a key serializer) and
// Headers are set.
func (s *Serializer) NewMessage(topic string, msg interface{}) (*kafka.Message, error) {
	hs, payload, err := s.SerializeWithHeaders(topic, msg)
	if err != nil {
		return nil, err
	}
	m := &kafka.Message{
		TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: kafka.PartitionAny},
		Headers:        hs,
	}
	if s.Part == serde.KeySerde {
		m.Key = payload
	} else {
		m.Value = payload
	}
	return m, nil
}

// Close closes the wrapped serializer (not the codec).
func (s *Serializer) Close() error { return s.Inner.Close() }

// Deserializer is a serde.Deserializer that decrypts with Codec, then deserializes with Inner.
type Deserializer struct {
	Codec *fieldcrypt.Codec
	Inner serde.Deserializer
	Part  serde.Type // serde.ValueSerde or serde.KeySerde
}

var _ serde.Deserializer = (*Deserializer)(nil)

// NewDeserializer wraps inner. The codec is shared, not owned: Close does not close it.
func NewDeserializer(codec *fieldcrypt.Codec, inner serde.Deserializer, part serde.Type) *Deserializer {
	return &Deserializer{Codec: codec, Inner: inner, Part: part}
}

// ConfigureDeserializer configures the wrapped deserializer.
func (d *Deserializer) ConfigureDeserializer(client schemaregistry.Client, serdeType serde.Type,
	conf *serde.DeserializerConfig) error {
	d.Part = serdeType
	return d.Inner.ConfigureDeserializer(client, serdeType, conf)
}

func (d *Deserializer) decrypt(topic string, headers []kafka.Header, payload []byte) ([]kafka.Header, []byte, error) {
	if payload == nil {
		return headers, nil, nil
	}
	var rec fieldcrypt.Record
	var err error
	if d.Part == serde.KeySerde {
		rec, err = d.Codec.Decrypt(topic, payload, nil, fromKafka(headers))
		payload = rec.Key
	} else {
		rec, err = d.Codec.Decrypt(topic, nil, payload, fromKafka(headers))
		payload = rec.Value
	}
	if err != nil {
		return nil, nil, err
	}
	return toKafka(rec.Headers), payload, nil
}

// DeserializeWithHeaders decrypts payload (by the "fieldcrypt" header in headers), then
// deserializes it with the wrapped deserializer.
func (d *Deserializer) DeserializeWithHeaders(topic string, headers []kafka.Header, payload []byte) (interface{}, error) {
	hs, payload, err := d.decrypt(topic, headers, payload)
	if err != nil {
		return nil, err
	}
	return d.Inner.DeserializeWithHeaders(topic, hs, payload)
}

// DeserializeWithHeadersInto is DeserializeWithHeaders into msg.
func (d *Deserializer) DeserializeWithHeadersInto(topic string, headers []kafka.Header, payload []byte, msg interface{}) error {
	hs, payload, err := d.decrypt(topic, headers, payload)
	if err != nil {
		return err
	}
	return d.Inner.DeserializeWithHeadersInto(topic, hs, payload, msg)
}

// Deserialize has no headers, so nothing to decrypt with: it deserializes payload as it is
// (encrypted fields stay ciphertext). Use DeserializeWithHeaders or FromMessage.
func (d *Deserializer) Deserialize(topic string, payload []byte) (interface{}, error) {
	return d.DeserializeWithHeaders(topic, nil, payload)
}

// DeserializeInto is Deserialize into msg.
func (d *Deserializer) DeserializeInto(topic string, payload []byte, msg interface{}) error {
	return d.DeserializeWithHeadersInto(topic, nil, payload, msg)
}

// FromMessage decrypts a consumed message (key and value together, so a record whose key and
// value were encrypted in one call opens too) and deserializes the Deserializer's part. The
// message is not changed.
func (d *Deserializer) FromMessage(m *kafka.Message) (interface{}, error) {
	topic, hs, payload, err := d.fromMessage(m)
	if err != nil {
		return nil, err
	}
	return d.Inner.DeserializeWithHeaders(topic, hs, payload)
}

// FromMessageInto is FromMessage into msg.
func (d *Deserializer) FromMessageInto(m *kafka.Message, msg interface{}) error {
	topic, hs, payload, err := d.fromMessage(m)
	if err != nil {
		return err
	}
	return d.Inner.DeserializeWithHeadersInto(topic, hs, payload, msg)
}

func (d *Deserializer) fromMessage(m *kafka.Message) (string, []kafka.Header, []byte, error) {
	if m.TopicPartition.Topic == nil {
		return "", nil, nil, errors.New("kafkaserde: the message has no topic")
	}
	topic := *m.TopicPartition.Topic
	rec, err := d.Codec.Decrypt(topic, m.Key, m.Value, fromKafka(m.Headers))
	if err != nil {
		return "", nil, nil, err
	}
	if d.Part == serde.KeySerde {
		return topic, toKafka(rec.Headers), rec.Key, nil
	}
	return topic, toKafka(rec.Headers), rec.Value, nil
}

// Close closes the wrapped deserializer (not the codec).
func (d *Deserializer) Close() error { return d.Inner.Close() }

// EncryptMessage encrypts an already serialized message in place: its Key and Value in one
// call (one "fieldcrypt" header for both), with the header added to its Headers.
func EncryptMessage(codec *fieldcrypt.Codec, m *kafka.Message) error {
	return crypt(m, codec.Encrypt)
}

// DecryptMessage decrypts a consumed message in place (Key, Value and Headers).
func DecryptMessage(codec *fieldcrypt.Codec, m *kafka.Message) error {
	return crypt(m, codec.Decrypt)
}

func crypt(m *kafka.Message, f func(string, []byte, []byte, []fieldcrypt.Header) (fieldcrypt.Record, error)) error {
	if m.TopicPartition.Topic == nil {
		return errors.New("kafkaserde: the message has no topic")
	}
	rec, err := f(*m.TopicPartition.Topic, m.Key, m.Value, fromKafka(m.Headers))
	if err != nil {
		return err
	}
	m.Key, m.Value, m.Headers = rec.Key, rec.Value, toKafka(rec.Headers)
	return nil
}

func fromKafka(hs []kafka.Header) []fieldcrypt.Header {
	if hs == nil {
		return nil
	}
	out := make([]fieldcrypt.Header, len(hs))
	for i, h := range hs {
		out[i] = fieldcrypt.Header(h)
	}
	return out
}

func toKafka(hs []fieldcrypt.Header) []kafka.Header {
	if hs == nil {
		return nil
	}
	out := make([]kafka.Header, len(hs))
	for i, h := range hs {
		out[i] = kafka.Header(h)
	}
	return out
}
