// Package fieldcrypt is the Go binding of fieldcrypt: client-side field-level encryption of
// Kafka records. A policy says which fields of which topics are encrypted under which KMS key; a
// Codec rewrites those fields inside the serialized record (JSON, or Avro / Protobuf / JSON
// Schema with Confluent framing) and adds a "fieldcrypt" header that consumers decrypt with.
//
// The binding is thin: it calls the C ABI of the Rust core (ffi/README.md) through cgo and
// converts types. The crypto, the formats and the policy rules are the core's.
//
// By default the static library is linked by its full path, bindings/go/lib/libfieldcrypt_ffi.a
// (with -L/-l the linker prefers the .so next to it and the binary then fails at start): run
// bindings/go/run-tests.sh, or build it with cargo and copy it there (README.md). With the build
// tag fieldcrypt_kafka the package links bindings/go/lib/libfieldcrypt_ffi_kafka.so instead: the
// same functions with librdkafka inside (symbols hidden, so it coexists with
// confluent-kafka-go's copy), needed for the Kafka key store and the Kafka policy source
// (link_static.go, link_kafka.go; KafkaSupport says which one a binary has).
package fieldcrypt

/*
#cgo CFLAGS: -I${SRCDIR}/../../ffi/include
#include <stdlib.h>
#include "fieldcrypt.h"

// The out-parameters live on the C stack and come back by value: a Go variable whose address
// is passed to C escapes to the heap (two allocations per call otherwise).
typedef struct { int32_t status; fc_buf out; fc_error err; } fcgo_result;

static fcgo_result fcgo_crypt(int encrypt, const fc_codec *c, const uint8_t *topic, size_t topic_len,
                              const uint8_t *key, int64_t key_len, const uint8_t *value, int64_t value_len,
                              const uint8_t *headers, size_t headers_len) {
	fcgo_result r = {0};
	r.status = (encrypt ? fc_codec_encrypt : fc_codec_decrypt)(c, topic, topic_len, key, key_len,
		value, value_len, headers, headers_len, &r.out, &r.err);
	return r;
}

static fcgo_result fcgo_crypt_batch(int encrypt, const fc_codec *c, const uint8_t *topic, size_t topic_len,
                                    const uint8_t *records, size_t records_len) {
	fcgo_result r = {0};
	r.status = (encrypt ? fc_codec_encrypt_batch : fc_codec_decrypt_batch)(c, topic, topic_len,
		records, records_len, &r.out, &r.err);
	return r;
}

static void fcgo_buf_free(fc_buf b) { fc_buf_free(&b); }
*/
import "C"

import (
	"encoding/json"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"
)

// Version is the version of the linked fieldcrypt library, e.g. "0.1.0".
func Version() string {
	return C.GoString(C.fc_version())
}

// Header is a Kafka record header. A nil Value is an absent (null) value, distinct from an
// empty one. Same fields as confluent-kafka-go's kafka.Header, so kafka.Header(h) converts.
type Header struct {
	Key   string
	Value []byte
}

// Record is a Kafka record's key, value and headers. A nil Key is a null key, a nil Value a
// tombstone; an empty non-nil slice is an empty key or value.
//
// The slices of a Record the codec returns share one allocation, capped so that appending to
// one never overwrites another.
type Record struct {
	Key     []byte
	Value   []byte
	Headers []Header
}

// Config is the codec's configuration: the JSON object of ffi/README.md ("Configuration JSON"),
// the same options as the Python binding's Codec(...) keyword arguments (docs/KMS.md). Nested
// options are passed through as they are: the core validates them (an unknown option is a
// KindConfig error naming it).
type Config struct {
	// KMS clients by name ("local", "vault", "aws", "azure", "gcp"), each an options object or
	// "from_env", e.g. {"local": {"key_file": "schemas/keys/local-dev.json"}}.
	KMS map[string]any `json:"kms,omitempty"`
	// Profile is the policy's decryption profile ("" = every field the keys allow).
	Profile string `json:"profile,omitempty"`
	// Registry is a Schema Registry URL (string) or an options object {"url", "basic_auth", ...}.
	Registry any `json:"registry,omitempty"`
	// Schemas are writer schemas known up front, by schema id (decimal) or GUID.
	Schemas map[string]Schema `json:"schemas,omitempty"`
	// Limits: dek_max_uses, dek_max_age, dek_cache_capacity, dek_cache_ttl, ... (seconds).
	Limits             map[string]any `json:"limits,omitempty"`
	ValidateJSONSchema bool           `json:"validate_json_schema,omitempty"`
	// KeyStore is where per-subject data keys live (docs/SHREDDING.md):
	// {"file": PATH, "refresh": secs} or {"kafka": {"bootstrap", "topic", ...}} (the latter
	// needs KafkaSupport).
	KeyStore map[string]any `json:"key_store,omitempty"`
	// TrustedKeys are Ed25519 public keys (Base64 or PEM) by key id: the policy, given or
	// fetched, must then be a signed envelope verified by one of them.
	TrustedKeys map[string]string `json:"trusted_keys,omitempty"`
	// PolicySource makes the codec follow a policy source instead of a policy given to
	// NewCodec (pass a nil policy then): {"file": PATH} | {"url": URL, "headers": {...}} |
	// {"kafka": {"bootstrap", "topic", ...}} (needs KafkaSupport), with "policy_id",
	// "interval" (seconds), "manual" (true: only Codec.Reload fetches), "min_revision",
	// "allow_unsigned".
	PolicySource map[string]any `json:"policy_source,omitempty"`
}

// Schema is a writer schema given to the codec up front (Config.Schemas).
type Schema struct {
	Type       string            `json:"type"` // "AVRO", "PROTOBUF" or "JSON"
	Schema     string            `json:"schema"`
	Name       string            `json:"name,omitempty"`
	References map[string]string `json:"references,omitempty"`
}

// Stats are the codec's counters since it was made.
type Stats struct {
	RecordsEncrypted uint64
	RecordsDecrypted uint64
	FieldsEncrypted  uint64
	FieldsDecrypted  uint64
	FieldsWithheld   uint64
	DEKsCreated      uint64
	KMSWrapCalls     uint64
	KMSUnwrapCalls   uint64
	KMSDeriveCalls   uint64
	KMSErrors        uint64
	KMSDenialsCached uint64
	DEKCacheHits     uint64
	DEKCacheMisses   uint64
}

// Codec encrypts and decrypts records under one policy. It is safe for concurrent use: share
// one per process. Close it when done (a finalizer frees it otherwise).
type Codec struct {
	// mu guards ptr: calls hold it shared, Close exclusively, so Close never frees the handle
	// under a running call and a call after Close gets ErrClosed, not a use-after-free.
	mu  sync.RWMutex
	ptr *C.fc_codec
}

// NewCodec makes a codec from a policy (JSON text, docs/POLICY.md, or a signed envelope) and a
// configuration. With Config.PolicySource the policy is nil: the codec fetches it from the
// source (an error, often KindPolicy, if the source cannot be read or the document does not
// verify) and follows it (Reload, PolicyStatus). A policy and a source, or neither, is a
// KindConfig error.
func NewCodec(policyJSON []byte, config Config) (*Codec, error) {
	cfg, err := json.Marshal(config)
	if err != nil {
		return nil, &Error{Kind: KindConfig, Index: -1, Message: "config: " + err.Error()}
	}
	return NewCodecJSON(policyJSON, cfg)
}

// NewCodecJSON is NewCodec with the configuration as JSON text (empty = {}); the policy is nil
// (or empty) when the configuration has a "policy_source".
func NewCodecJSON(policyJSON, configJSON []byte) (*Codec, error) {
	var ptr *C.fc_codec
	var cerr C.fc_error
	st := C.fc_codec_new(bytesPtr(policyJSON), C.size_t(len(policyJSON)),
		bytesPtr(configJSON), C.size_t(len(configJSON)), &ptr, &cerr)
	if st != 0 {
		return nil, takeError(st, cerr)
	}
	c := &Codec{ptr: ptr}
	live.Add(1)
	runtime.SetFinalizer(c, (*Codec).Close)
	return c, nil
}

// live counts the codecs not yet freed (for the finalizer test).
var live atomic.Int64

// Close frees the codec. Calls after Close return ErrClosed; closing twice is harmless.
func (c *Codec) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ptr != nil {
		C.fc_codec_free(c.ptr)
		c.ptr = nil
		live.Add(-1)
		runtime.SetFinalizer(c, nil)
	}
	return nil
}

// Encrypt encrypts the fields the policy selects for topic in key and value, and returns the
// record with the "fieldcrypt" header added to a copy of headers (a record in which nothing was
// selected comes back unchanged, without it). Its inputs are not changed.
func (c *Codec) Encrypt(topic string, key, value []byte, headers []Header) (Record, error) {
	return c.one(true, topic, key, value, headers)
}

// Decrypt decrypts what the codec's keys and profile allow and removes the "fieldcrypt" header;
// what it may not decrypt gets the profile's fallback. A record without the header is returned
// as it is.
func (c *Codec) Decrypt(topic string, key, value []byte, headers []Header) (Record, error) {
	return c.one(false, topic, key, value, headers)
}

// EncryptBatch encrypts records of one topic in one call. It fails as a whole at the first
// failing record; the Error's Index says which.
func (c *Codec) EncryptBatch(topic string, records []Record) ([]Record, error) {
	return c.batch(true, topic, records)
}

// DecryptBatch is the batch form of Decrypt (see EncryptBatch).
func (c *Codec) DecryptBatch(topic string, records []Record) ([]Record, error) {
	return c.batch(false, topic, records)
}

// Stats returns the codec's counters.
func (c *Codec) Stats() (Stats, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.ptr == nil {
		return Stats{}, ErrClosed
	}
	var s C.fc_stats
	var cerr C.fc_error
	st := C.fc_codec_stats(c.ptr, &s, &cerr)
	runtime.KeepAlive(c)
	if st != 0 {
		return Stats{}, takeError(st, cerr)
	}
	return Stats{
		RecordsEncrypted: uint64(s.records_encrypted),
		RecordsDecrypted: uint64(s.records_decrypted),
		FieldsEncrypted:  uint64(s.fields_encrypted),
		FieldsDecrypted:  uint64(s.fields_decrypted),
		FieldsWithheld:   uint64(s.fields_withheld),
		DEKsCreated:      uint64(s.deks_created),
		KMSWrapCalls:     uint64(s.kms_wrap_calls),
		KMSUnwrapCalls:   uint64(s.kms_unwrap_calls),
		KMSDeriveCalls:   uint64(s.kms_derive_calls),
		KMSErrors:        uint64(s.kms_errors),
		KMSDenialsCached: uint64(s.kms_denials_cached),
		DEKCacheHits:     uint64(s.dek_cache_hits),
		DEKCacheMisses:   uint64(s.dek_cache_misses),
	}, nil
}

// Shred crypto-shreds a data subject (docs/SHREDDING.md): it deletes the subject's data keys
// from the codec's key store, so none of its records decrypts again, and returns how many.
func (c *Codec) Shred(subject string) (int, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.ptr == nil {
		return 0, ErrClosed
	}
	var keys C.uint64_t
	var cerr C.fc_error
	st := C.fc_codec_shred(c.ptr, stringPtr(subject), C.size_t(len(subject)), &keys, &cerr)
	runtime.KeepAlive(c)
	if st != 0 {
		return 0, takeError(st, cerr)
	}
	return int(keys), nil
}

// RotateSubject stores a new data key for a data subject; older records still decrypt.
func (c *Codec) RotateSubject(subject string) error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.ptr == nil {
		return ErrClosed
	}
	var cerr C.fc_error
	st := C.fc_codec_rotate_subject(c.ptr, stringPtr(subject), C.size_t(len(subject)), &cerr)
	runtime.KeepAlive(c)
	if st != 0 {
		return takeError(st, cerr)
	}
	return nil
}

// ClearKeyCache drops every cached unwrapped data key; the next records ask the KMS again.
func (c *Codec) ClearKeyCache() error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.ptr == nil {
		return ErrClosed
	}
	var cerr C.fc_error
	st := C.fc_codec_clear_key_cache(c.ptr, &cerr)
	runtime.KeepAlive(c)
	if st != 0 {
		return takeError(st, cerr)
	}
	return nil
}

// Reload fetches the codec's policy source now (a codec made with Config.PolicySource; the
// way to load a new revision when the source is "manual"). It returns true when a new revision
// is now in force, false when the source had nothing new. A document that does not verify or
// is not a valid policy is a KindPolicy error and the policy in force stays; so is an
// unreachable source (retryable, counted in FetchErrors); a codec with a fixed policy gives
// KindConfig.
func (c *Codec) Reload() (bool, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.ptr == nil {
		return false, ErrClosed
	}
	var loaded C.bool
	var cerr C.fc_error
	st := C.fc_codec_reload(c.ptr, &loaded, &cerr)
	runtime.KeepAlive(c)
	if st != 0 {
		return false, takeError(st, cerr)
	}
	return bool(loaded), nil
}

// PolicyStatus is the policy in force and the codec's reload counters (Codec.PolicyStatus).
type PolicyStatus struct {
	PolicyID string
	Revision uint64
	// SignedBy is the trusted key id whose signature verified the policy in force ("" when it
	// was not verified).
	SignedBy string
	// Source names where the policy is read from ("" for a policy given to NewCodec).
	Source string
	// Loads counts the policies loaded, the first included; Rejections the documents refused
	// (signature, parse, rollback, policy id); FetchErrors the failed reads of the source.
	Loads       uint64
	Rejections  uint64
	FetchErrors uint64
	// LastError is the last rejection or fetch error (nil when none): Kind and Message set,
	// Index -1; errors.Is(status.LastError, ErrPolicy) works.
	LastError *Error
}

// PolicyStatus returns the policy in force and the reload counters (for a fixed policy: one
// load, no source).
func (c *Codec) PolicyStatus() (PolicyStatus, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.ptr == nil {
		return PolicyStatus{}, ErrClosed
	}
	var out C.fc_buf
	var cerr C.fc_error
	st := C.fc_codec_policy_status(c.ptr, &out, &cerr)
	runtime.KeepAlive(c)
	if st != 0 {
		return PolicyStatus{}, takeError(st, cerr)
	}
	var doc struct {
		PolicyID    string  `json:"policy_id"`
		Revision    uint64  `json:"revision"`
		SignedBy    *string `json:"signed_by"`
		Source      *string `json:"source"`
		Loads       uint64  `json:"loads"`
		Rejections  uint64  `json:"rejections"`
		FetchErrors uint64  `json:"fetch_errors"`
		LastError   *struct {
			Kind    string `json:"kind"`
			Message string `json:"message"`
		} `json:"last_error"`
	}
	if err := json.Unmarshal(takeBuf(out), &doc); err != nil {
		return PolicyStatus{}, &Error{Kind: KindInvalidArgument, Index: -1,
			Message: "malformed policy status from the library: " + err.Error()}
	}
	s := PolicyStatus{PolicyID: doc.PolicyID, Revision: doc.Revision, Loads: doc.Loads,
		Rejections: doc.Rejections, FetchErrors: doc.FetchErrors}
	if doc.SignedBy != nil {
		s.SignedBy = *doc.SignedBy
	}
	if doc.Source != nil {
		s.Source = *doc.Source
	}
	if e := doc.LastError; e != nil {
		s.LastError = &Error{Kind: kindNamed(e.Kind), Index: -1, Message: e.Message}
	}
	return s, nil
}

func (c *Codec) one(encrypt bool, topic string, key, value []byte, headers []Header) (Record, error) {
	packed := packHeaders(make([]byte, 0, headersSize(headers)), headers)
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.ptr == nil {
		return Record{}, ErrClosed
	}
	r := C.fcgo_crypt(cBool(encrypt), c.ptr, stringPtr(topic), C.size_t(len(topic)),
		bytesPtr(key), optLen(key), bytesPtr(value), optLen(value),
		bytesPtr(packed), C.size_t(len(packed)))
	runtime.KeepAlive(c) // the finalizer must not free the handle during the call
	if r.status != 0 {
		return Record{}, takeError(r.status, r.err)
	}
	buf := takeBuf(r.out)
	rec, rest, ok := unpackRecord(buf)
	if !ok || len(rest) != 0 {
		return Record{}, errMalformedOutput
	}
	return rec, nil
}

func (c *Codec) batch(encrypt bool, topic string, records []Record) ([]Record, error) {
	size := 4
	for i := range records {
		size += recordSize(&records[i])
	}
	packed := appendU32(make([]byte, 0, size), uint32(len(records)))
	for i := range records {
		packed = packRecord(packed, &records[i])
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.ptr == nil {
		return nil, ErrClosed
	}
	r := C.fcgo_crypt_batch(cBool(encrypt), c.ptr, stringPtr(topic), C.size_t(len(topic)),
		bytesPtr(packed), C.size_t(len(packed)))
	runtime.KeepAlive(c)
	if r.status != 0 {
		return nil, takeError(r.status, r.err)
	}
	buf := takeBuf(r.out)
	n, buf, ok := readU32(buf)
	if !ok || int(n) != len(records) {
		return nil, errMalformedOutput
	}
	recs := make([]Record, n)
	for i := range recs {
		if recs[i], buf, ok = unpackRecord(buf); !ok {
			return nil, errMalformedOutput
		}
	}
	if len(buf) != 0 {
		return nil, errMalformedOutput
	}
	return recs, nil
}

// zero gives inputs of length 0 a valid address: the ABI allows NULL only where it says so.
var zero [1]byte

func bytesPtr(b []byte) *C.uint8_t {
	if len(b) == 0 {
		return (*C.uint8_t)(unsafe.Pointer(&zero[0]))
	}
	return (*C.uint8_t)(unsafe.Pointer(unsafe.SliceData(b)))
}

func stringPtr(s string) *C.uint8_t {
	if len(s) == 0 {
		return (*C.uint8_t)(unsafe.Pointer(&zero[0]))
	}
	return (*C.uint8_t)(unsafe.Pointer(unsafe.StringData(s)))
}

// optLen is the ABI's length of a key or value: -1 for absent (nil).
func optLen(b []byte) C.int64_t {
	if b == nil {
		return -1
	}
	return C.int64_t(len(b))
}

func cBool(b bool) C.int {
	if b {
		return 1
	}
	return 0
}

// takeBuf copies a Rust-owned buffer into Go memory and frees it at once.
func takeBuf(b C.fc_buf) []byte {
	var out []byte
	if b.len <= math.MaxInt32 {
		out = C.GoBytes(unsafe.Pointer(b.data), C.int(b.len)) // no zeroing before the copy
	} else {
		out = make([]byte, int(b.len)) // past C.GoBytes's C.int length
		copy(out, unsafe.Slice((*byte)(unsafe.Pointer(b.data)), int(b.len)))
	}
	C.fcgo_buf_free(b)
	return out
}

// cgoNoop is the cheapest call into the library (a static string's address): the benchmarks
// state the cgo overhead per call with it.
func cgoNoop() { C.fc_status_name(0) }
