package fieldcrypt_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	fieldcrypt "github.com/fieldcrypt/fieldcrypt/bindings/go"
	"github.com/fieldcrypt/fieldcrypt/bindings/go/internal/fctest"
)

// framed is Confluent's wire format: magic byte 0, the schema id (big-endian), the payload.
func framed(id uint32, payload []byte) []byte {
	return append(binary.BigEndian.AppendUint32([]byte{0}, id), payload...)
}

func avroCodec(t *testing.T) *fieldcrypt.Codec {
	avsc := string(fctest.Read(t, filepath.Join(fctest.PaymentDir, "payment.avsc")))
	return fctest.Codec(t, fieldcrypt.Config{Schemas: map[string]fieldcrypt.Schema{"1": {Type: "AVRO", Schema: avsc}}})
}

func TestAvroFramed(t *testing.T) {
	value := framed(1, fctest.Read(t, filepath.Join(fctest.PaymentDir, "payment.avro.bin")))
	codec := avroCodec(t)
	sealed, err := codec.Encrypt("payments", nil, value, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(sealed.Value[:5], value[:5]) {
		t.Fatal("the framing changed")
	}
	for _, pii := range fctest.PII {
		if !bytes.Contains(value, []byte(pii)) || bytes.Contains(sealed.Value, []byte(pii)) {
			t.Fatalf("%s left in the clear", pii)
		}
	}
	opened, err := avroCodec(t).Decrypt("payments", nil, sealed.Value, sealed.Headers)
	if err != nil || !bytes.Equal(opened.Value, value) {
		t.Fatal(err)
	}
}

func TestRegistryErrors(t *testing.T) {
	value := fctest.Read(t, filepath.Join(fctest.PaymentDir, "payment.avro.bin"))
	_, err := avroCodec(t).Encrypt("payments", nil, framed(99, value), nil)
	fe := wantKind(t, err, fieldcrypt.KindRegistry, fieldcrypt.ErrRegistry)
	if fe.Retryable || !strings.Contains(fe.Message, "99") {
		t.Fatalf("%#v", fe)
	}
	// Nothing listens on port 1 of the loopback address: retryable.
	unreachable := fctest.Codec(t, fieldcrypt.Config{Registry: map[string]any{"url": "http://127.0.0.1:1", "timeout": 2, "max_retries": 0}})
	_, err = unreachable.Encrypt("payments", nil, framed(1, value), nil)
	fe = wantKind(t, err, fieldcrypt.KindRegistry, fieldcrypt.ErrRegistry)
	if !fe.Retryable {
		t.Fatalf("%#v", fe)
	}
}

// stubVault answers Vault Transit encrypt/decrypt (ciphertext "vault:v1:<base64>"), or fails
// with the status and message in fail.
type stubVault struct {
	mu     sync.Mutex
	status int
	msg    string
	srv    *httptest.Server
}

func newStubVault(t *testing.T) *stubVault {
	v := &stubVault{}
	v.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]string
		_ = json.NewDecoder(r.Body).Decode(&body)
		v.mu.Lock()
		status, msg := v.status, v.msg
		v.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch {
		case status != 0:
			w.WriteHeader(status)
			_ = json.NewEncoder(w).Encode(map[string]any{"errors": []string{msg}})
		case strings.Contains(r.URL.Path, "/encrypt/"):
			_ = json.NewEncoder(w).Encode(map[string]any{"data": map[string]any{"ciphertext": "vault:v1:" + body["plaintext"], "key_version": 1}})
		default:
			_ = json.NewEncoder(w).Encode(map[string]any{"data": map[string]any{"plaintext": strings.SplitN(body["ciphertext"], ":", 3)[2]}})
		}
	}))
	t.Cleanup(v.srv.Close)
	return v
}

func (v *stubVault) fail(status int, msg string) {
	v.mu.Lock()
	v.status, v.msg = status, msg
	v.mu.Unlock()
}

func (v *stubVault) codec(t *testing.T) *fieldcrypt.Codec {
	kek := "vault://" + strings.TrimPrefix(v.srv.URL, "http://") + "/transit/keys/pii"
	policy := strings.Replace(string(fctest.Read(t, fctest.PolicyPath)), `"local://demo-kek"`, `"`+kek+`"`, 1)
	c, err := fieldcrypt.NewCodec([]byte(policy), fieldcrypt.Config{KMS: map[string]any{"vault": map[string]any{
		"token": "s.stub-token", "plain_http": true, "max_retries": 0, "timeout": 5}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestKMSErrors(t *testing.T) {
	vault := newStubVault(t)
	sealed, err := vault.codec(t).Encrypt("customers", nil, []byte(fctest.Customer), nil)
	if err != nil {
		t.Fatal(err)
	}
	if opened, err := vault.codec(t).Decrypt("customers", nil, sealed.Value, sealed.Headers); err != nil || string(opened.Value) != fctest.Customer {
		t.Fatal(err)
	}

	vault.fail(403, "1 error occurred:\n\t* permission denied\n\n")
	_, err = vault.codec(t).Encrypt("customers", nil, []byte(fctest.Customer), nil)
	fe := wantKind(t, err, fieldcrypt.KindAccessDenied, fieldcrypt.ErrAccessDenied)
	if fe.Retryable || strings.Contains(fe.Message, "s.stub-token") {
		t.Fatalf("%#v", fe)
	}
	vault.fail(404, "no handler for route")
	_, err = vault.codec(t).Encrypt("customers", nil, []byte(fctest.Customer), nil)
	wantKind(t, err, fieldcrypt.KindKeyNotFound, fieldcrypt.ErrKeyNotFound)
	vault.fail(503, "Vault is sealed")
	_, err = vault.codec(t).Encrypt("customers", nil, []byte(fctest.Customer), nil)
	if fe := wantKind(t, err, fieldcrypt.KindKMS, fieldcrypt.ErrKMS); !fe.Retryable {
		t.Fatalf("%#v", fe)
	}
	vault.fail(400, "message authentication failed")
	_, err = vault.codec(t).Encrypt("customers", nil, []byte(fctest.Customer), nil)
	wantKind(t, err, fieldcrypt.KindCrypto, fieldcrypt.ErrCrypto)
}
