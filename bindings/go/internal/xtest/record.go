// Package xtest holds what the cross-language harness's Go parts share (xtests/README.md): the
// JSON form of a record in vector, result, spec and output files.
package xtest

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	fieldcrypt "github.com/fieldcrypt/fieldcrypt/bindings/go"
)

// Record is a fieldcrypt.Record in the harness's JSON form:
//
//	{"key": B64 | null, "value": B64 | null, "headers": [[NAME, B64 | null], ...]}
//
// standard Base64 with padding of the raw bytes, null for absent (a nil slice).
type Record fieldcrypt.Record

type recordJSON struct {
	Key     *string             `json:"key"`
	Value   *string             `json:"value"`
	Headers [][]json.RawMessage `json:"headers"`
}

// MarshalJSON writes the record; no headers are written as [].
func (r Record) MarshalJSON() ([]byte, error) {
	out := recordJSON{Key: encode(r.Key), Value: encode(r.Value), Headers: make([][]json.RawMessage, 0, len(r.Headers))}
	for _, h := range r.Headers {
		name, err := json.Marshal(h.Key)
		if err != nil {
			return nil, err
		}
		value, err := json.Marshal(encode(h.Value))
		if err != nil {
			return nil, err
		}
		out.Headers = append(out.Headers, []json.RawMessage{name, value})
	}
	return json.Marshal(out)
}

// UnmarshalJSON reads the record; a missing key, value or headers is absent (none).
func (r *Record) UnmarshalJSON(b []byte) error {
	var in recordJSON
	if err := json.Unmarshal(b, &in); err != nil {
		return err
	}
	var rec Record
	var err error
	if rec.Key, err = decode(in.Key); err != nil {
		return fmt.Errorf("record key: %w", err)
	}
	if rec.Value, err = decode(in.Value); err != nil {
		return fmt.Errorf("record value: %w", err)
	}
	for i, pair := range in.Headers {
		if len(pair) != 2 {
			return fmt.Errorf("record header %d: want [NAME, B64 | null], got %d elements", i, len(pair))
		}
		var name string
		var value *string
		if err := json.Unmarshal(pair[0], &name); err != nil || string(pair[0]) == "null" {
			return fmt.Errorf("record header %d: the name is not a string", i)
		}
		if err := json.Unmarshal(pair[1], &value); err != nil {
			return fmt.Errorf("record header %d: the value is not Base64 or null", i)
		}
		h := fieldcrypt.Header{Key: name}
		if h.Value, err = decode(value); err != nil {
			return fmt.Errorf("record header %d: %w", i, err)
		}
		rec.Headers = append(rec.Headers, h)
	}
	*r = rec
	return nil
}

func encode(b []byte) *string {
	if b == nil {
		return nil
	}
	s := base64.StdEncoding.EncodeToString(b)
	return &s
}

func decode(s *string) ([]byte, error) {
	if s == nil {
		return nil, nil
	}
	b, err := base64.StdEncoding.Strict().DecodeString(*s)
	if err != nil {
		return nil, errors.New("invalid Base64: " + err.Error())
	}
	if b == nil {
		b = []byte{} // "" is empty, not absent
	}
	return b, nil
}
