package fieldcrypt_test

// Cross-language: records encrypted here decrypt with the Rust CLI (FIELDCRYPT_BIN, built by
// run-tests.sh) and records the CLI encrypted decrypt here.

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"testing"

	fieldcrypt "github.com/fieldcrypt/fieldcrypt/bindings/go"
	"github.com/fieldcrypt/fieldcrypt/bindings/go/internal/fctest"
)

// cliLine is the CLI's record: {"key": B64|null, "value": B64|null, "headers": [[name, B64|null]]}.
type cliLine struct {
	Key     *string      `json:"key"`
	Value   *string      `json:"value"`
	Headers [][2]*string `json:"headers"`
}

func b64(b []byte) *string {
	if b == nil {
		return nil
	}
	s := base64.StdEncoding.EncodeToString(b)
	return &s
}

func unb64(t *testing.T, s *string) []byte {
	t.Helper()
	if s == nil {
		return nil
	}
	b, err := base64.StdEncoding.DecodeString(*s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func toLine(r fieldcrypt.Record) cliLine {
	l := cliLine{Key: b64(r.Key), Value: b64(r.Value), Headers: [][2]*string{}}
	for _, h := range r.Headers {
		name := h.Key
		l.Headers = append(l.Headers, [2]*string{&name, b64(h.Value)})
	}
	return l
}

func fromLine(t *testing.T, l cliLine) fieldcrypt.Record {
	r := fieldcrypt.Record{Key: unb64(t, l.Key), Value: unb64(t, l.Value)}
	for _, h := range l.Headers {
		r.Headers = append(r.Headers, fieldcrypt.Header{Key: *h[0], Value: unb64(t, h[1])})
	}
	return r
}

// cli runs `fieldcrypt <command> --policy demo --topic customers --local-keys dev` on records.
func cli(t *testing.T, command string, in []fieldcrypt.Record, extra ...string) []fieldcrypt.Record {
	t.Helper()
	bin := os.Getenv("FIELDCRYPT_BIN")
	if bin == "" {
		t.Fatal("FIELDCRYPT_BIN (the Rust CLI) is not set: bindings/go/run-tests.sh sets it")
	}
	var stdin, stdout, stderr bytes.Buffer
	enc := json.NewEncoder(&stdin)
	for _, r := range in {
		if err := enc.Encode(toLine(r)); err != nil {
			t.Fatal(err)
		}
	}
	args := append([]string{command, "--policy", fctest.PolicyPath, "--topic", "customers", "--local-keys", fctest.KeysPath}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = &stdin, &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %v: %v: %s", bin, args, err, stderr.String())
	}
	var out []fieldcrypt.Record
	dec := json.NewDecoder(&stdout)
	for dec.More() {
		var l cliLine
		if err := dec.Decode(&l); err != nil {
			t.Fatal(err)
		}
		out = append(out, fromLine(t, l))
	}
	if len(out) != len(in) {
		t.Fatalf("%d records in, %d out", len(in), len(out))
	}
	return out
}

func interopRecords() []fieldcrypt.Record {
	return []fieldcrypt.Record{
		{Key: []byte("k1"), Value: []byte(fctest.Customer), Headers: []fieldcrypt.Header{{Key: "trace", Value: []byte("1")}, {Key: "null"}}},
		{Key: nil, Value: []byte(`{"name":"Bob","password":"pw","visa":"5500-0000-0000-0004"}`)},
		{Key: []byte{}, Value: nil}, // a tombstone with an empty key
	}
}

func sameRecord(t *testing.T, i int, got, want fieldcrypt.Record) {
	t.Helper()
	if !bytes.Equal(got.Key, want.Key) || (got.Key == nil) != (want.Key == nil) ||
		!bytes.Equal(got.Value, want.Value) || (got.Value == nil) != (want.Value == nil) ||
		len(got.Headers) != len(want.Headers) {
		t.Fatalf("record %d: %+v, want %+v", i, got, want)
	}
	for j := range want.Headers {
		if got.Headers[j].Key != want.Headers[j].Key || !bytes.Equal(got.Headers[j].Value, want.Headers[j].Value) ||
			(got.Headers[j].Value == nil) != (want.Headers[j].Value == nil) {
			t.Fatalf("record %d header %d: %+v, want %+v", i, j, got.Headers[j], want.Headers[j])
		}
	}
}

func TestGoEncryptsRustDecrypts(t *testing.T) {
	codec := fctest.Codec(t, fieldcrypt.Config{})
	in := interopRecords()
	var sealed []fieldcrypt.Record
	for _, r := range in {
		s, err := codec.Encrypt("customers", r.Key, r.Value, r.Headers)
		if err != nil {
			t.Fatal(err)
		}
		sealed = append(sealed, s)
	}
	if bytes.Contains(sealed[0].Value, []byte("hunter2")) {
		t.Fatal("not encrypted")
	}
	for i, r := range cli(t, "decrypt", sealed) {
		sameRecord(t, i, r, in[i])
	}
	// And with a profile: the CLI's support consumer sees the visa, the password masked.
	masked := cli(t, "decrypt", sealed[:1], "--profile", "support")
	if !bytes.Contains(masked[0].Value, []byte(`"password":"****"`)) || !bytes.Contains(masked[0].Value, []byte("4111-1111")) {
		t.Fatalf("%s", masked[0].Value)
	}
}

func TestRustEncryptsGoDecrypts(t *testing.T) {
	in := interopRecords()
	sealed := cli(t, "encrypt", in)
	if bytes.Contains(sealed[0].Value, []byte("hunter2")) || sealed[0].Headers[len(sealed[0].Headers)-1].Key != "fieldcrypt" {
		t.Fatalf("not encrypted: %+v", sealed[0])
	}
	codec := fctest.Codec(t, fieldcrypt.Config{})
	opened, err := codec.DecryptBatch("customers", sealed)
	if err != nil {
		t.Fatal(err)
	}
	for i := range in {
		sameRecord(t, i, opened[i], in[i])
	}
}
