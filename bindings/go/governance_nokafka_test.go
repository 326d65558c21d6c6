//go:build !fieldcrypt_kafka

package fieldcrypt_test

import (
	"strings"
	"testing"

	fieldcrypt "github.com/fieldcrypt/fieldcrypt/bindings/go"
)

// The static library has no Kafka client: the Kafka key store and policy source are config
// errors that name the library to use (nothing is attempted over the network).
func TestGovernanceKafkaNeedsTheKafkaLibrary(t *testing.T) {
	if fieldcrypt.KafkaSupport {
		t.Fatal("KafkaSupport without the fieldcrypt_kafka build tag")
	}
	kafka := map[string]any{"kafka": map[string]any{"bootstrap": "127.0.0.1:9", "topic": "_fieldcrypt_keys"}}
	cfg := governanceConfig(t, nil, kafka, "")
	_, err := fieldcrypt.NewCodec(governanceFixture(t, "policy-r1.signed.json"), cfg)
	if fe := wantKind(t, err, fieldcrypt.KindConfig, fieldcrypt.ErrConfig); !strings.Contains(fe.Message, "key_store") ||
		!strings.Contains(fe.Message, "fieldcrypt_ffi_kafka") {
		t.Errorf("the message names the option and the library: %q", fe.Message)
	}
	kafka["policy_id"] = "governance-demo"
	cfg = governanceConfig(t, kafka, nil, "")
	_, err = fieldcrypt.NewCodec(nil, cfg)
	if fe := wantKind(t, err, fieldcrypt.KindConfig, fieldcrypt.ErrConfig); !strings.Contains(fe.Message, "policy_source") {
		t.Errorf("the message names the option: %q", fe.Message)
	}
}
