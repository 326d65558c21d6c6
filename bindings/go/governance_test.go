package fieldcrypt_test

// Signed policies followed from a source (schemas/governance/README.md): a file policy source
// reloaded by hand, a tampered revision refused, the status, and a fixed (signed) policy. Both
// libraries run these (the default run and the -tags fieldcrypt_kafka run); the broker scenario
// is governance_kafka_test.go.

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	fieldcrypt "github.com/fieldcrypt/fieldcrypt/bindings/go"
	"github.com/fieldcrypt/fieldcrypt/bindings/go/internal/fctest"
)

// governanceFixture is a file of schemas/governance/.
func governanceFixture(t *testing.T, name string) []byte {
	t.Helper()
	return fctest.Read(t, filepath.Join(fctest.Root, "schemas", "governance", name))
}

// governanceConfig is the scenario's configuration with the given policy source and key store.
func governanceConfig(t *testing.T, source, keyStore map[string]any, profile string) fieldcrypt.Config {
	t.Helper()
	var trusted map[string]string
	if err := json.Unmarshal(governanceFixture(t, "trusted-keys.json"), &trusted); err != nil {
		t.Fatal(err)
	}
	return fieldcrypt.Config{
		KMS:          map[string]any{"local": map[string]any{"secrets": map[string]any{"governance": "governance-test-secret"}}},
		TrustedKeys:  trusted,
		PolicySource: source,
		KeyStore:     keyStore,
		Profile:      profile,
	}
}

func customerRecord(id string) []byte {
	return []byte(`{"customer_id":"` + id + `","email":"` + id + `@example.com","card":"4111-` + id + `"}`)
}

func encryptCustomer(t *testing.T, codec *fieldcrypt.Codec, topic, id string) fieldcrypt.Record {
	t.Helper()
	r, err := codec.Encrypt(topic, nil, customerRecord(id), nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// inClear lists which of the customer's PII values the encrypted record still shows.
func inClear(r fieldcrypt.Record, id string) []string {
	shown := []string{}
	if strings.Contains(string(r.Value), id+"@example.com") {
		shown = append(shown, "email")
	}
	if strings.Contains(string(r.Value), "4111-"+id) {
		shown = append(shown, "card")
	}
	return shown
}

func wantInClear(t *testing.T, r fieldcrypt.Record, id string, want ...string) {
	t.Helper()
	if want == nil {
		want = []string{}
	}
	if got := inClear(r, id); !reflect.DeepEqual(got, want) {
		t.Fatalf("in clear: %v, want %v (record %s)", got, want, r.Value)
	}
}

func policyStatus(t *testing.T, codec *fieldcrypt.Codec) fieldcrypt.PolicyStatus {
	t.Helper()
	s, err := codec.PolicyStatus()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// writeFile replaces a file's content the way a deployment would (a rename: readers never see
// half a document).
func writeFile(t *testing.T, path string, content []byte) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, content, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestGovernanceFilePolicySource(t *testing.T) {
	dir := t.TempDir()
	policyFile := filepath.Join(dir, "policy.json")
	writeFile(t, policyFile, governanceFixture(t, "policy-r1.signed.json"))
	cfg := governanceConfig(t,
		map[string]any{"file": policyFile, "policy_id": "governance-demo", "manual": true},
		map[string]any{"file": filepath.Join(dir, "keys.jsonl"), "refresh": 0}, "")
	const topic = "customers-go-file"

	// Revision 1: email encrypted, card in clear.
	codec, err := fieldcrypt.NewCodec(nil, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer codec.Close()
	s := policyStatus(t, codec)
	if s.PolicyID != "governance-demo" || s.Revision != 1 || s.SignedBy != "governance-test" ||
		s.Loads != 1 || s.Rejections != 0 || s.FetchErrors != 0 || s.LastError != nil {
		t.Fatalf("status after opening: %+v", s)
	}
	if !strings.Contains(s.Source, policyFile) {
		t.Errorf("the source %q does not name the file %s", s.Source, policyFile)
	}
	r1 := encryptCustomer(t, codec, topic, "c-1")
	wantInClear(t, r1, "c-1", "card")
	// Nothing new at the source.
	if loaded, err := codec.Reload(); err != nil || loaded {
		t.Fatalf("Reload with nothing new = %v, %v; want false, nil", loaded, err)
	}

	// A tampered revision 2 is refused; revision 1 stays in force.
	writeFile(t, policyFile, governanceFixture(t, "policy-r2.tampered.json"))
	loaded, err := codec.Reload()
	if loaded {
		t.Fatal("Reload of a tampered policy reports it loaded")
	}
	wantKind(t, err, fieldcrypt.KindPolicy, fieldcrypt.ErrPolicy)
	s = policyStatus(t, codec)
	if s.Revision != 1 || s.Rejections != 1 || s.Loads != 1 || s.SignedBy != "governance-test" {
		t.Fatalf("status after the tampered revision: %+v", s)
	}
	if s.LastError == nil || s.LastError.Kind != fieldcrypt.KindPolicy || !errors.Is(s.LastError, fieldcrypt.ErrPolicy) ||
		s.LastError.Message == "" || s.LastError.Index != -1 {
		t.Fatalf("last error after the tampered revision: %#v", s.LastError)
	}
	wantInClear(t, encryptCustomer(t, codec, topic, "c-1"), "c-1", "card")

	// The signed revision 2 loads without a new codec: card is encrypted too.
	writeFile(t, policyFile, governanceFixture(t, "policy-r2.signed.json"))
	if loaded, err := codec.Reload(); err != nil || !loaded {
		t.Fatalf("Reload of revision 2 = %v, %v; want true, nil", loaded, err)
	}
	s = policyStatus(t, codec)
	if s.PolicyID != "governance-demo" || s.Revision != 2 || s.SignedBy != "governance-test" || s.Loads != 2 || s.Rejections != 1 {
		t.Fatalf("status after revision 2: %+v", s)
	}
	wantInClear(t, encryptCustomer(t, codec, topic, "c-1"), "c-1")
	// A record of revision 1 still decrypts.
	clear, err := codec.Decrypt(topic, r1.Key, r1.Value, r1.Headers)
	if err != nil || string(clear.Value) != string(customerRecord("c-1")) {
		t.Fatalf("decrypting revision 1's record: %s, %v", clear.Value, err)
	}

	codec.Close()
	if _, err := codec.Reload(); err != fieldcrypt.ErrClosed {
		t.Fatalf("Reload after Close: %v", err)
	}
	if _, err := codec.PolicyStatus(); err != fieldcrypt.ErrClosed {
		t.Fatalf("PolicyStatus after Close: %v", err)
	}
}

// A policy given to NewCodec is fixed: Reload is a config error, the status shows one load.
func TestGovernanceFixedPolicy(t *testing.T) {
	cfg := governanceConfig(t, nil, map[string]any{"file": filepath.Join(t.TempDir(), "keys.jsonl")}, "")
	codec, err := fieldcrypt.NewCodec(governanceFixture(t, "policy-r1.signed.json"), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer codec.Close()
	loaded, err := codec.Reload()
	if loaded {
		t.Fatal("Reload of a fixed policy reports a load")
	}
	wantKind(t, err, fieldcrypt.KindConfig, fieldcrypt.ErrConfig)
	want := fieldcrypt.PolicyStatus{PolicyID: "governance-demo", Revision: 1, SignedBy: "governance-test", Loads: 1}
	if s := policyStatus(t, codec); s != want {
		t.Fatalf("status of a fixed policy: %+v, want %+v", s, want)
	}
	wantInClear(t, encryptCustomer(t, codec, "customers-go-fixed", "c-1"), "c-1", "card")

	// A policy and a policy source, or neither, is a config error.
	_, err = fieldcrypt.NewCodec(nil, cfg)
	wantKind(t, err, fieldcrypt.KindConfig, fieldcrypt.ErrConfig)
	both := cfg
	both.PolicySource = map[string]any{"file": filepath.Join(t.TempDir(), "policy.json"), "manual": true}
	_, err = fieldcrypt.NewCodec(governanceFixture(t, "policy-r1.signed.json"), both)
	wantKind(t, err, fieldcrypt.KindConfig, fieldcrypt.ErrConfig)

	// With trusted keys, a tampered envelope, or a policy without a signature, is refused.
	_, err = fieldcrypt.NewCodec(governanceFixture(t, "policy-r2.tampered.json"), cfg)
	wantKind(t, err, fieldcrypt.KindPolicy, fieldcrypt.ErrPolicy)
	_, err = fieldcrypt.NewCodec(governanceFixture(t, "policy-r1.json"), cfg)
	wantKind(t, err, fieldcrypt.KindPolicy, fieldcrypt.ErrPolicy)
	// Without trusted keys the unsigned policy is accepted, and the status says unverified.
	cfg.TrustedKeys = nil
	plain, err := fieldcrypt.NewCodec(governanceFixture(t, "policy-r1.json"), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if s := policyStatus(t, plain); s.SignedBy != "" || s.Revision != 1 || s.Source != "" {
		t.Fatalf("status of an unsigned fixed policy: %+v", s)
	}
}
