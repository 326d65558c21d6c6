package fieldcrypt_test

// The cross-language test vectors (xtests/README.md, "Test vectors"): every positive case must
// decrypt to its record exactly, every negative case must fail with its error kind, and every
// plaintext is encrypted; with FIELDCRYPT_XTEST_OUT set, the encrypted records go to
// $FIELDCRYPT_XTEST_OUT/encrypted-go.json for the Rust checker (check-encrypted). The vectors are
// xtests/vectors/v*.json, or those in FIELDCRYPT_XTEST_VECTORS (a directory) when set.

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	fieldcrypt "github.com/fieldcrypt/fieldcrypt/bindings/go"
	"github.com/fieldcrypt/fieldcrypt/bindings/go/internal/fctest"
	"github.com/fieldcrypt/fieldcrypt/bindings/go/internal/xtest"
)

type vectorFile struct {
	Format   string                     `json:"format"`
	Version  int                        `json:"version"`
	Policies map[string]json.RawMessage `json:"policies"`
	Configs  map[string]json.RawMessage `json:"configs"`
	Cases    []struct {
		ID            string       `json:"id"`
		Policy        string       `json:"policy"`
		Topic         string       `json:"topic"`
		EncryptConfig string       `json:"encrypt_config"`
		DecryptConfig string       `json:"decrypt_config"`
		Plaintext     xtest.Record `json:"plaintext"`
		Encrypted     xtest.Record `json:"encrypted"`
		Decrypted     xtest.Record `json:"decrypted"`
		Deterministic bool         `json:"deterministic"`
	} `json:"cases"`
	Negative []struct {
		ID            string       `json:"id"`
		Policy        string       `json:"policy"`
		Topic         string       `json:"topic"`
		DecryptConfig string       `json:"decrypt_config"`
		Record        xtest.Record `json:"record"`
		Error         string       `json:"error"`
	} `json:"negative"`
}

type vectorResult struct {
	Vectors string       `json:"vectors"`
	ID      string       `json:"id"`
	Record  xtest.Record `json:"record"`
}

func TestVectors(t *testing.T) {
	vectorDir := os.Getenv("FIELDCRYPT_XTEST_VECTORS")
	if vectorDir == "" {
		vectorDir = filepath.Join(fctest.Root, "xtests", "vectors")
	}
	files, err := filepath.Glob(filepath.Join(vectorDir, "v*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no test vectors (v*.json) in %s", vectorDir)
	}
	var results []vectorResult
	for _, path := range files {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			var vf vectorFile
			if err := json.Unmarshal(fctest.Read(t, path), &vf); err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			if vf.Format != "fieldcrypt-test-vectors" || vf.Version < 1 {
				t.Fatalf("%s: format %q version %d, want fieldcrypt-test-vectors", path, vf.Format, vf.Version)
			}
			if len(vf.Cases) == 0 {
				t.Fatalf("%s: no cases", path)
			}
			seen := map[string]bool{}
			for _, c := range vf.Cases {
				checkID(t, seen, c.ID)
				t.Run(c.ID, func(t *testing.T) {
					dec := vectorCodec(t, &vf, c.Policy, c.DecryptConfig)
					got, err := dec.Decrypt(c.Topic, c.Encrypted.Key, c.Encrypted.Value, c.Encrypted.Headers)
					if err != nil {
						t.Errorf("decrypt: %v", err)
					} else {
						sameVectorRecord(t, "decrypt", got, fieldcrypt.Record(c.Decrypted))
					}

					enc := vectorCodec(t, &vf, c.Policy, c.EncryptConfig)
					sealed, err := enc.Encrypt(c.Topic, c.Plaintext.Key, c.Plaintext.Value, c.Plaintext.Headers)
					if err != nil {
						t.Fatalf("encrypt: %v", err)
					}
					results = append(results, vectorResult{Vectors: name, ID: c.ID, Record: xtest.Record(sealed)})
					// AES-256-SIV: the same key and value as the generator's (the header's nonce differs).
					if c.Deterministic && (!sameBytes(sealed.Key, c.Encrypted.Key) || !sameBytes(sealed.Value, c.Encrypted.Value)) {
						t.Errorf("deterministic case: encrypted key/value differ from the vector's\n got  %s\n want %s",
							recordJSON(sealed), recordJSON(fieldcrypt.Record(c.Encrypted)))
					}
				})
			}
			for _, n := range vf.Negative {
				checkID(t, seen, n.ID)
				t.Run(n.ID, func(t *testing.T) {
					dec := vectorCodec(t, &vf, n.Policy, n.DecryptConfig)
					got, err := dec.Decrypt(n.Topic, n.Record.Key, n.Record.Value, n.Record.Headers)
					var fe *fieldcrypt.Error
					switch {
					case err == nil:
						t.Fatalf("decrypted, want a %s error: %s", n.Error, recordJSON(got))
					case !errors.As(err, &fe):
						t.Fatalf("%v (%T), want a %s error", err, err, n.Error)
					case fe.Kind.String() != n.Error:
						t.Fatalf("error kind %s (%v), want %s", fe.Kind, err, n.Error)
					}
				})
			}
		})
	}

	out := os.Getenv("FIELDCRYPT_XTEST_OUT")
	if out == "" {
		return
	}
	doc, err := json.MarshalIndent(map[string]any{
		"format": "fieldcrypt-test-vector-results", "version": 1, "language": "go", "results": results,
	}, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(out, "encrypted-go.json")
	if err := os.WriteFile(path, append(doc, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d encrypt results written to %s", len(results), path)
}

func checkID(t *testing.T, seen map[string]bool, id string) {
	t.Helper()
	if id == "" || seen[id] {
		t.Errorf("case id %q: empty or not unique", id)
	}
	seen[id] = true
}

// vectorCodec is a codec of the file's policy and configuration by name, closed when t ends.
func vectorCodec(t *testing.T, vf *vectorFile, policy, config string) *fieldcrypt.Codec {
	t.Helper()
	p, ok := vf.Policies[policy]
	if !ok {
		t.Fatalf("no policy %q in the file", policy)
	}
	c, ok := vf.Configs[config]
	if !ok {
		t.Fatalf("no config %q in the file", config)
	}
	codec, err := fieldcrypt.NewCodecJSON(p, c)
	if err != nil {
		t.Fatalf("codec of policy %q, config %q: %v", policy, config, err)
	}
	t.Cleanup(func() { codec.Close() })
	return codec
}

// sameVectorRecord: key, value and headers (in order) equal, null distinct from empty.
func sameVectorRecord(t *testing.T, what string, got, want fieldcrypt.Record) {
	t.Helper()
	if g, w := recordJSON(got), recordJSON(want); g != w {
		t.Errorf("%s:\n got  %s\n want %s", what, g, w)
	}
}

// recordJSON is the record in the vectors' JSON form, which tells null from empty.
func recordJSON(r fieldcrypt.Record) string {
	b, err := json.Marshal(xtest.Record(r))
	if err != nil {
		return err.Error()
	}
	return string(b)
}

func sameBytes(a, b []byte) bool { return (a == nil) == (b == nil) && bytes.Equal(a, b) }
