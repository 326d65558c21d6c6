package fieldcrypt_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	fieldcrypt "github.com/fieldcrypt/fieldcrypt/bindings/go"
	"github.com/fieldcrypt/fieldcrypt/bindings/go/internal/fctest"
)

func TestVersion(t *testing.T) {
	if v := fieldcrypt.Version(); !regexp.MustCompile(`^\d+\.\d+\.\d+`).MatchString(v) {
		t.Fatalf("Version() = %q", v)
	}
}

func header(t *testing.T, hs []fieldcrypt.Header, name string) []byte {
	t.Helper()
	for _, h := range hs {
		if h.Key == name {
			return h.Value
		}
	}
	t.Fatalf("no %q header in %v", name, hs)
	return nil
}

func TestRoundTrip(t *testing.T) {
	codec := fctest.Codec(t, fieldcrypt.Config{})
	in := []byte(fctest.Customer)
	sealed, err := codec.Encrypt("customers", nil, in, nil)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed.Value, []byte("hunter2")) || bytes.Contains(sealed.Value, []byte("4111")) {
		t.Fatalf("plaintext left in %s", sealed.Value)
	}
	if !bytes.Contains(sealed.Value, []byte(`"name":"Ada"`)) {
		t.Fatalf("other fields changed: %s", sealed.Value)
	}
	if len(sealed.Headers) != 1 || sealed.Headers[0].Key != "fieldcrypt" || len(sealed.Headers[0].Value) == 0 {
		t.Fatalf("headers %v", sealed.Headers)
	}
	if sealed.Key != nil {
		t.Fatalf("a null key came back as %q", sealed.Key)
	}
	opened, err := codec.Decrypt("customers", sealed.Key, sealed.Value, sealed.Headers)
	if err != nil {
		t.Fatal(err)
	}
	if string(opened.Value) != fctest.Customer || opened.Key != nil || len(opened.Headers) != 0 {
		t.Fatalf("decrypted %+v", opened)
	}
	if string(in) != fctest.Customer {
		t.Fatal("the input was changed")
	}

	// The support profile decrypts visa only and masks the rest.
	support := fctest.Codec(t, fieldcrypt.Config{Profile: "support"})
	masked, err := support.Decrypt("customers", nil, sealed.Value, sealed.Headers)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]string
	if err := json.Unmarshal(masked.Value, &doc); err != nil {
		t.Fatal(err)
	}
	if doc["password"] != "****" || doc["visa"] != "4111-1111-1111-1111" {
		t.Fatalf("support sees %v", doc)
	}
}

func TestConfigJSON(t *testing.T) {
	cfg := fmt.Sprintf(`{"kms": {"local": {"key_file": %q}}, "profile": "full"}`, fctest.KeysPath)
	codec, err := fieldcrypt.NewCodecJSON(fctest.Read(t, fctest.PolicyPath), []byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	defer codec.Close()
	sealed, err := codec.Encrypt("customers", nil, []byte(fctest.Customer), nil)
	if err != nil {
		t.Fatal(err)
	}
	if opened, err := codec.Decrypt("customers", nil, sealed.Value, sealed.Headers); err != nil || string(opened.Value) != fctest.Customer {
		t.Fatal(opened, err)
	}
	// Empty configuration text is {}: a codec without KMS clients (fails when it needs one).
	bare, err := fieldcrypt.NewCodecJSON(fctest.Read(t, fctest.PolicyPath), nil)
	if err != nil {
		t.Fatal(err)
	}
	bare.Close()
}

func TestTombstoneAndNullKey(t *testing.T) {
	codec := fctest.Codec(t, fieldcrypt.Config{})
	for _, op := range []func(string, []byte, []byte, []fieldcrypt.Header) (fieldcrypt.Record, error){codec.Encrypt, codec.Decrypt} {
		r, err := op("customers", nil, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if r.Key != nil || r.Value != nil || len(r.Headers) != 0 {
			t.Fatalf("a tombstone with a null key came back as %+v", r)
		}
		r, err = op("customers", []byte("k1"), nil, []fieldcrypt.Header{{Key: "h", Value: nil}})
		if err != nil {
			t.Fatal(err)
		}
		if string(r.Key) != "k1" || r.Value != nil || len(r.Headers) != 1 || r.Headers[0].Value != nil {
			t.Fatalf("a tombstone came back as %+v", r)
		}
	}
}

func TestEmptyIsNotNil(t *testing.T) {
	codec := fctest.Codec(t, fieldcrypt.Config{})
	// "elsewhere" is no topic of the policy: records pass through as they are.
	r, err := codec.Encrypt("elsewhere", []byte{}, []byte{}, []fieldcrypt.Header{{Key: "e", Value: []byte{}}, {Key: "n"}})
	if err != nil {
		t.Fatal(err)
	}
	if r.Key == nil || len(r.Key) != 0 || r.Value == nil || len(r.Value) != 0 {
		t.Fatalf("empty key/value came back as %#v / %#v", r.Key, r.Value)
	}
	if len(r.Headers) != 2 || r.Headers[0].Value == nil || len(r.Headers[0].Value) != 0 || r.Headers[1].Value != nil {
		t.Fatalf("headers %#v", r.Headers)
	}
	r, err = codec.Encrypt("elsewhere", nil, []byte{}, nil)
	if err != nil || r.Key != nil || r.Value == nil {
		t.Fatalf("%#v %v", r, err)
	}
}

func TestHeadersPreserved(t *testing.T) {
	codec := fctest.Codec(t, fieldcrypt.Config{})
	in := []fieldcrypt.Header{
		{Key: "trace", Value: []byte("1")},
		{Key: "null", Value: nil},
		{Key: "empty", Value: []byte{}},
		{Key: "bin", Value: []byte{0, 0xff, 0xfe, 0}},
		{Key: "trace", Value: []byte("2")}, // repeated names stay, in order
		{Key: "ünïcode", Value: []byte("v")},
	}
	orig := append([]fieldcrypt.Header(nil), in...)
	sealed, err := codec.Encrypt("customers", []byte("key-1"), []byte(fctest.Customer), in)
	if err != nil {
		t.Fatal(err)
	}
	if len(sealed.Headers) != len(in)+1 {
		t.Fatalf("headers %v", sealed.Headers)
	}
	for i := range in {
		got := sealed.Headers[i]
		if got.Key != in[i].Key || !bytes.Equal(got.Value, in[i].Value) || (got.Value == nil) != (in[i].Value == nil) {
			t.Fatalf("header %d: %#v, want %#v", i, got, in[i])
		}
	}
	if sealed.Headers[len(in)].Key != "fieldcrypt" || string(sealed.Key) != "key-1" {
		t.Fatalf("%+v", sealed)
	}
	for i := range in {
		if in[i].Key != orig[i].Key || !bytes.Equal(in[i].Value, orig[i].Value) {
			t.Fatal("the input headers were changed")
		}
	}
	opened, err := codec.Decrypt("customers", sealed.Key, sealed.Value, sealed.Headers)
	if err != nil {
		t.Fatal(err)
	}
	if len(opened.Headers) != len(in) || string(opened.Value) != fctest.Customer {
		t.Fatalf("%+v", opened)
	}
	for i := range in {
		if opened.Headers[i].Key != in[i].Key || (opened.Headers[i].Value == nil) != (in[i].Value == nil) ||
			!bytes.Equal(opened.Headers[i].Value, in[i].Value) {
			t.Fatalf("header %d: %#v, want %#v", i, opened.Headers[i], in[i])
		}
	}
	// The returned slices share one allocation but are capped: appending copies.
	v := append(opened.Headers[0].Value, "XXXXXXXXXXXXXXXX"...)
	_ = v
	if string(opened.Headers[1].Key) != "null" || opened.Headers[1].Value != nil || string(opened.Headers[3].Value) != "\x00\xff\xfe\x00" {
		t.Fatal("append overwrote a neighbour")
	}
}

func TestBatch(t *testing.T) {
	codec := fctest.Codec(t, fieldcrypt.Config{})
	var in []fieldcrypt.Record
	for i := 0; i < 50; i++ {
		in = append(in, fieldcrypt.Record{
			Key:     []byte(fmt.Sprint("k", i)),
			Value:   []byte(strings.Replace(fctest.Customer, "hunter2", fmt.Sprint("pw-", i), 1)),
			Headers: []fieldcrypt.Header{{Key: "i", Value: []byte(fmt.Sprint(i))}},
		})
	}
	in = append(in, fieldcrypt.Record{}) // a tombstone with a null key
	sealed, err := codec.EncryptBatch("customers", in)
	if err != nil {
		t.Fatal(err)
	}
	if len(sealed) != len(in) {
		t.Fatalf("%d records back", len(sealed))
	}
	opened, err := codec.DecryptBatch("customers", sealed)
	if err != nil {
		t.Fatal(err)
	}
	for i := range in {
		if bytes.Contains(sealed[i].Value, []byte("pw-")) {
			t.Fatalf("record %d not encrypted", i)
		}
		if !bytes.Equal(opened[i].Value, in[i].Value) || !bytes.Equal(opened[i].Key, in[i].Key) ||
			(opened[i].Key == nil) != (in[i].Key == nil) || (opened[i].Value == nil) != (in[i].Value == nil) ||
			len(opened[i].Headers) != len(in[i].Headers) {
			t.Fatalf("record %d: %+v, want %+v", i, opened[i], in[i])
		}
	}
	if out, err := codec.EncryptBatch("customers", nil); err != nil || len(out) != 0 {
		t.Fatal(out, err)
	}
	// A batch fails as a whole at its first failing record.
	bad := append([]fieldcrypt.Record(nil), sealed...)
	bad[7].Headers = []fieldcrypt.Header{{Key: "fieldcrypt", Value: []byte{1, 2, 3}}}
	_, err = codec.DecryptBatch("customers", bad)
	var fe *fieldcrypt.Error
	if !errors.As(err, &fe) || fe.Kind != fieldcrypt.KindFormat || fe.Index != 7 {
		t.Fatalf("%#v", err)
	}
	if !strings.Contains(err.Error(), "record 7") {
		t.Fatal(err)
	}
}

func TestStatsAndClearKeyCache(t *testing.T) {
	codec := fctest.Codec(t, fieldcrypt.Config{})
	for i := 0; i < 3; i++ {
		sealed, err := codec.Encrypt("customers", nil, []byte(fctest.Customer), nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := codec.Decrypt("customers", nil, sealed.Value, sealed.Headers); err != nil {
			t.Fatal(err)
		}
	}
	s, err := codec.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if s.RecordsEncrypted != 3 || s.RecordsDecrypted != 3 || s.FieldsEncrypted != 6 || s.FieldsDecrypted != 6 ||
		s.DEKsCreated != 1 || s.KMSWrapCalls != 1 {
		t.Fatalf("%+v", s)
	}
	if err := codec.ClearKeyCache(); err != nil {
		t.Fatal(err)
	}
}

func TestCloseThenUse(t *testing.T) {
	codec, err := fieldcrypt.NewCodec(fctest.Read(t, fctest.PolicyPath), fieldcrypt.Config{KMS: fctest.LocalKMS()})
	if err != nil {
		t.Fatal(err)
	}
	if err := codec.Close(); err != nil {
		t.Fatal(err)
	}
	if err := codec.Close(); err != nil {
		t.Fatal("closing twice:", err)
	}
	checks := map[string]error{}
	_, checks["Encrypt"] = codec.Encrypt("customers", nil, []byte(fctest.Customer), nil)
	_, checks["Decrypt"] = codec.Decrypt("customers", nil, []byte(fctest.Customer), nil)
	_, checks["EncryptBatch"] = codec.EncryptBatch("customers", []fieldcrypt.Record{{}})
	_, checks["DecryptBatch"] = codec.DecryptBatch("customers", nil)
	_, checks["Stats"] = codec.Stats()
	checks["ClearKeyCache"] = codec.ClearKeyCache()
	for name, err := range checks {
		var fe *fieldcrypt.Error
		if !errors.Is(err, fieldcrypt.ErrClosed) || !errors.Is(err, fieldcrypt.ErrInvalidArgument) ||
			!errors.As(err, &fe) || fe.Kind != fieldcrypt.KindInvalidArgument {
			t.Errorf("%s after Close: %v", name, err)
		}
	}
}

func TestConcurrentUse(t *testing.T) {
	codec := fctest.Codec(t, fieldcrypt.Config{})
	const workers, rounds = 16, 100
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < rounds; i++ {
				value := []byte(strings.Replace(fctest.Customer, "hunter2", fmt.Sprint("pw-", w, "-", i), 1))
				sealed, err := codec.Encrypt("customers", nil, value, []fieldcrypt.Header{{Key: "w", Value: []byte{byte(w)}}})
				if err == nil && i%10 == 0 {
					var out []fieldcrypt.Record
					out, err = codec.DecryptBatch("customers", []fieldcrypt.Record{sealed, sealed})
					if err == nil && !bytes.Equal(out[1].Value, value) {
						err = fmt.Errorf("batch: %s", out[1].Value)
					}
				} else if err == nil {
					var opened fieldcrypt.Record
					opened, err = codec.Decrypt("customers", nil, sealed.Value, sealed.Headers)
					if err == nil && !bytes.Equal(opened.Value, value) {
						err = fmt.Errorf("%s != %s", opened.Value, value)
					}
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	s, _ := codec.Stats()
	if s.RecordsEncrypted != workers*rounds {
		t.Fatalf("%+v", s)
	}
}

// Close while other goroutines encrypt: each call either completes or gets ErrClosed.
func TestCloseWhileInUse(t *testing.T) {
	codec, err := fieldcrypt.NewCodec(fctest.Read(t, fctest.PolicyPath), fieldcrypt.Config{KMS: fctest.LocalKMS()})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	started := make(chan struct{}, 8)
	errs := make(chan error, 8)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				_, err := codec.Encrypt("customers", nil, []byte(fctest.Customer), nil)
				if i == 5 {
					started <- struct{}{}
				}
				if errors.Is(err, fieldcrypt.ErrClosed) {
					if i < 5 {
						started <- struct{}{}
					}
					return
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for w := 0; w < 8; w++ {
		<-started
	}
	codec.Close()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func sealedCustomer(t *testing.T, codec *fieldcrypt.Codec) (fieldcrypt.Record, []byte) {
	t.Helper()
	sealed, err := codec.Encrypt("customers", nil, []byte(fctest.Customer), nil)
	if err != nil {
		t.Fatal(err)
	}
	return sealed, header(t, sealed.Headers, "fieldcrypt")
}

// wantKind checks err is a *fieldcrypt.Error of kind k, found by errors.As and errors.Is.
func wantKind(t *testing.T, err error, k fieldcrypt.Kind, sentinel error) *fieldcrypt.Error {
	t.Helper()
	var fe *fieldcrypt.Error
	if !errors.As(err, &fe) {
		t.Fatalf("want a %v error, got %v", k, err)
	}
	if fe.Kind != k || !errors.Is(err, sentinel) || fe.Index != -1 || fe.Message == "" {
		t.Fatalf("want a %v error, got %#v", k, fe)
	}
	for _, other := range []error{fieldcrypt.ErrPolicy, fieldcrypt.ErrConfig, fieldcrypt.ErrCrypto, fieldcrypt.ErrFormat} {
		if other != sentinel && errors.Is(err, other) {
			t.Fatalf("%v is also %v", err, other)
		}
	}
	if !strings.HasPrefix(err.Error(), "fieldcrypt: "+k.String()+": ") {
		t.Fatalf("message %q", err.Error())
	}
	return fe
}

func TestKindNames(t *testing.T) {
	want := map[fieldcrypt.Kind]string{
		fieldcrypt.KindOK: "ok", fieldcrypt.KindPolicy: "policy", fieldcrypt.KindConfig: "config",
		fieldcrypt.KindRecord: "record", fieldcrypt.KindFormat: "format",
		fieldcrypt.KindUnsupportedVersion: "unsupported_version", fieldcrypt.KindCrypto: "crypto",
		fieldcrypt.KindKeyNotFound: "key_not_found", fieldcrypt.KindAccessDenied: "access_denied",
		fieldcrypt.KindKMS: "kms", fieldcrypt.KindRegistry: "registry",
		fieldcrypt.KindLimitExceeded: "limit_exceeded", fieldcrypt.KindShredded: "shredded",
		fieldcrypt.KindInvalidArgument: "invalid_argument",
		fieldcrypt.KindPanic:           "panic", fieldcrypt.Kind(99): "unknown",
	}
	for k, name := range want {
		if k.String() != name {
			t.Errorf("Kind(%d).String() = %q, want %q", int32(k), k.String(), name)
		}
	}
	if errors.Is(fieldcrypt.ErrCrypto, fieldcrypt.ErrClosed) || !errors.Is(fieldcrypt.ErrCrypto, fieldcrypt.ErrCrypto) {
		t.Fatal("the kind values")
	}
}

func TestPolicyErrors(t *testing.T) {
	policy := fctest.Read(t, fctest.PolicyPath)
	for name, p := range map[string]string{
		"not JSON":      `{not json`,
		"unknown field": strings.Replace(string(policy), `"revision"`, `"bogus": 1, "revision"`, 1),
		"bad scheme":    strings.Replace(string(policy), `"local://demo-kek"`, `"ftp://nope"`, 1),
	} {
		_, err := fieldcrypt.NewCodec([]byte(p), fieldcrypt.Config{KMS: fctest.LocalKMS()})
		fe := wantKind(t, err, fieldcrypt.KindPolicy, fieldcrypt.ErrPolicy)
		if name == "bad scheme" && !strings.Contains(fe.Message, "customer-secrets") {
			t.Errorf("the message names the rule: %q", fe.Message)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	policy := fctest.Read(t, fctest.PolicyPath)
	for name, cfg := range map[string]fieldcrypt.Config{
		"unknown profile":   {KMS: fctest.LocalKMS(), Profile: "nobody"},
		"unknown limit":     {KMS: fctest.LocalKMS(), Limits: map[string]any{"dek_max_uzes": 1}},
		"bad limit":         {KMS: fctest.LocalKMS(), Limits: map[string]any{"dek_max_uses": 0}},
		"unknown KMS":       {KMS: map[string]any{"hsm": map[string]any{}}},
		"missing key file":  {KMS: map[string]any{"local": map[string]any{"key_file": "/nonexistent/keys.json"}}},
		"bad schema type":   {KMS: fctest.LocalKMS(), Schemas: map[string]fieldcrypt.Schema{"1": {Type: "XML", Schema: "<x/>"}}},
		"bad registry type": {KMS: fctest.LocalKMS(), Registry: 42},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := fieldcrypt.NewCodec(policy, cfg)
			wantKind(t, err, fieldcrypt.KindConfig, fieldcrypt.ErrConfig)
		})
	}
	for name, cfg := range map[string]string{
		"unknown option": `{"kms": {}, "colour": "blue"}`,
		"not JSON":       `{"kms": `,
		"not an object":  `[1]`,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := fieldcrypt.NewCodecJSON(policy, []byte(cfg))
			fe := wantKind(t, err, fieldcrypt.KindConfig, fieldcrypt.ErrConfig)
			if name == "unknown option" && !strings.Contains(fe.Message, "colour") {
				t.Errorf("the message names the option: %q", fe.Message)
			}
		})
	}
	// No policy text (and no policy_source in the configuration): nothing to follow.
	for _, p := range [][]byte{nil, {}} {
		_, err := fieldcrypt.NewCodec(p, fieldcrypt.Config{KMS: fctest.LocalKMS()})
		if fe := wantKind(t, err, fieldcrypt.KindConfig, fieldcrypt.ErrConfig); !strings.Contains(fe.Message, "policy_source") {
			t.Errorf("the message says how to give a policy: %q", fe.Message)
		}
	}
	// A KEK scheme with no KMS client configured fails when a record needs it.
	bare, err := fieldcrypt.NewCodec(policy, fieldcrypt.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer bare.Close()
	_, err = bare.Encrypt("customers", nil, []byte(fctest.Customer), nil)
	wantKind(t, err, fieldcrypt.KindConfig, fieldcrypt.ErrConfig)
}

func TestRecordErrors(t *testing.T) {
	codec := fctest.Codec(t, fieldcrypt.Config{})
	_, err := codec.Encrypt("customers", nil, []byte(`{"password":"hunter2",`), nil)
	fe := wantKind(t, err, fieldcrypt.KindRecord, fieldcrypt.ErrRecord)
	if strings.Contains(fe.Message, "hunter2") {
		t.Fatal("plaintext in an error message")
	}
	sealed, _ := sealedCustomer(t, codec)
	_, err = codec.Encrypt("customers", nil, sealed.Value, sealed.Headers) // already encrypted
	wantKind(t, err, fieldcrypt.KindRecord, fieldcrypt.ErrRecord)
}

func TestFormatAndVersionErrors(t *testing.T) {
	codec := fctest.Codec(t, fieldcrypt.Config{})
	sealed, h := sealedCustomer(t, codec)
	for name, hs := range map[string][]fieldcrypt.Header{
		"truncated": {{Key: "fieldcrypt", Value: h[:20]}},
		"null":      {{Key: "fieldcrypt", Value: nil}},
		"twice":     {{Key: "fieldcrypt", Value: h}, {Key: "fieldcrypt", Value: h}},
		"trailing":  {{Key: "fieldcrypt", Value: append(append([]byte(nil), h...), 0)}},
	} {
		_, err := codec.Decrypt("customers", nil, sealed.Value, hs)
		t.Run(name, func(t *testing.T) { wantKind(t, err, fieldcrypt.KindFormat, fieldcrypt.ErrFormat) })
	}
	v9 := append([]byte{9}, h[1:]...)
	_, err := codec.Decrypt("customers", nil, sealed.Value, []fieldcrypt.Header{{Key: "fieldcrypt", Value: v9}})
	wantKind(t, err, fieldcrypt.KindUnsupportedVersion, fieldcrypt.ErrUnsupportedVersion)
}

func TestCryptoErrors(t *testing.T) {
	codec := fctest.Codec(t, fieldcrypt.Config{})
	sealed, h := sealedCustomer(t, codec)
	var doc map[string]string
	if err := json.Unmarshal(sealed.Value, &doc); err != nil {
		t.Fatal(err)
	}
	ct, err := base64.StdEncoding.DecodeString(doc["password"])
	if err != nil {
		t.Fatal(err)
	}
	ct[len(ct)-1] ^= 1
	doc["password"] = base64.StdEncoding.EncodeToString(ct)
	tampered, _ := json.Marshal(doc)
	_, err = codec.Decrypt("customers", nil, tampered, sealed.Headers)
	wantKind(t, err, fieldcrypt.KindCrypto, fieldcrypt.ErrCrypto)

	bad := append([]byte(nil), h...)
	bad[len(bad)-1] ^= 1
	_, err = codec.Decrypt("customers", nil, sealed.Value, []fieldcrypt.Header{{Key: "fieldcrypt", Value: bad}})
	wantKind(t, err, fieldcrypt.KindCrypto, fieldcrypt.ErrCrypto)
}

func TestKeyNotFoundOnEncryptFallbackOnDecrypt(t *testing.T) {
	other := map[string]any{"local": map[string]any{"secrets": map[string]any{"another-kek": "x"}}}
	producer := fctest.Codec(t, fieldcrypt.Config{KMS: other})
	_, err := producer.Encrypt("customers", nil, []byte(fctest.Customer), nil)
	fe := wantKind(t, err, fieldcrypt.KindKeyNotFound, fieldcrypt.ErrKeyNotFound)
	if !strings.Contains(fe.Message, "local://demo-kek") {
		t.Fatalf("the message names the key: %q", fe.Message)
	}
	sealed, _ := sealedCustomer(t, fctest.Codec(t, fieldcrypt.Config{}))
	// A consumer that cannot unwrap the data key gets its profile's fallback, not an error.
	consumer := fctest.Codec(t, fieldcrypt.Config{KMS: other})
	opened, err := consumer.Decrypt("customers", nil, sealed.Value, sealed.Headers)
	if err != nil || !bytes.Equal(opened.Value, sealed.Value) || len(opened.Headers) != 1 {
		t.Fatal(opened, err)
	}
	s, _ := consumer.Stats()
	if s.FieldsWithheld != 2 || s.KMSErrors != 1 {
		t.Fatalf("%+v", s)
	}
}

// Go strings may hold any bytes; the ABI takes UTF-8 text only.
func TestInvalidUTF8(t *testing.T) {
	codec := fctest.Codec(t, fieldcrypt.Config{})
	_, err := codec.Encrypt("cust\xffomers", nil, []byte(fctest.Customer), nil)
	wantKind(t, err, fieldcrypt.KindInvalidArgument, fieldcrypt.ErrInvalidArgument)
	_, err = codec.Decrypt("customers", nil, []byte(fctest.Customer), []fieldcrypt.Header{{Key: "\xc3", Value: []byte("v")}})
	wantKind(t, err, fieldcrypt.KindInvalidArgument, fieldcrypt.ErrInvalidArgument)
	_, err = codec.EncryptBatch("\xff", []fieldcrypt.Record{{Value: []byte(fctest.Customer)}})
	wantKind(t, err, fieldcrypt.KindInvalidArgument, fieldcrypt.ErrInvalidArgument)
}

// Per-subject keys with a file key store: shred one subject, the other still decrypts.
func TestShredAndRotateSubject(t *testing.T) {
	store := filepath.Join(t.TempDir(), "keys.jsonl")
	policy := []byte(`{"fieldcrypt_policy": 1, "id": "go-shred", "encrypt": [{"name": "r", "topics": ["t"],
		"fields": ["email"], "key": "local://k", "subject": "customer_id"}],
		"profiles": {"strict": {"decrypt": [{"topics": ["*"]}], "otherwise": "error"}}}`)
	config := func(profile string) []byte {
		p := ""
		if profile != "" {
			p = `, "profile": "` + profile + `"`
		}
		return []byte(`{"kms": {"local": {"secrets": {"k": "go"}}}, "key_store": {"file": "` + store + `", "refresh": 0}` + p + `}`)
	}
	producer, err := fieldcrypt.NewCodecJSON(policy, config(""))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	consumer, err := fieldcrypt.NewCodecJSON(policy, config("strict"))
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	one, err := producer.Encrypt("t", nil, []byte(`{"customer_id":"c-1","email":"a@x"}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	two, err := producer.Encrypt("t", nil, []byte(`{"customer_id":"c-2","email":"b@x"}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := producer.RotateSubject("c-1"); err != nil {
		t.Fatal(err)
	}
	if n, err := producer.Shred("c-1"); err != nil || n != 2 {
		t.Fatalf("Shred = %d, %v; want 2 keys", n, err)
	}
	if _, err := consumer.Decrypt("t", nil, one.Value, one.Headers); !errors.Is(err, fieldcrypt.ErrShredded) {
		t.Fatalf("decrypting a shredded subject's record: %v, want ErrShredded", err)
	}
	if _, err := consumer.Decrypt("t", nil, two.Value, two.Headers); err != nil {
		t.Fatalf("another subject: %v", err)
	}
}
