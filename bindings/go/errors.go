package fieldcrypt

/*
#include "fieldcrypt.h"
static void fcgo_error_free(fc_error e) { fc_error_free(&e); }
*/
import "C"

import (
	"strconv"
	"unsafe"
)

// Kind is the kind of a fieldcrypt error: the C ABI's status code (stable numbers).
type Kind int32

// The ABI's status codes (ffi/README.md, "Status codes").
const (
	KindOK                 Kind = C.FC_OK
	KindPolicy             Kind = C.FC_ERR_POLICY
	KindConfig             Kind = C.FC_ERR_CONFIG
	KindRecord             Kind = C.FC_ERR_RECORD
	KindFormat             Kind = C.FC_ERR_FORMAT
	KindUnsupportedVersion Kind = C.FC_ERR_UNSUPPORTED_VERSION
	KindCrypto             Kind = C.FC_ERR_CRYPTO
	KindKeyNotFound        Kind = C.FC_ERR_KEY_NOT_FOUND
	KindAccessDenied       Kind = C.FC_ERR_ACCESS_DENIED
	KindKMS                Kind = C.FC_ERR_KMS
	KindRegistry           Kind = C.FC_ERR_REGISTRY
	KindLimitExceeded      Kind = C.FC_ERR_LIMIT_EXCEEDED
	KindShredded           Kind = C.FC_ERR_SHREDDED
	KindInvalidArgument    Kind = C.FC_ERR_INVALID_ARGUMENT
	KindPanic              Kind = C.FC_ERR_PANIC
	KindOther              Kind = C.FC_ERR_OTHER // an error kind newer than the ABI's list
	KindKafka              Kind = C.FC_ERR_KAFKA // fieldcrypt-ffi-kafka's own Kafka client only; not used here
)

// kinds are the kinds with a name of their own, for kindNamed.
var kinds = []Kind{KindPolicy, KindConfig, KindRecord, KindFormat, KindUnsupportedVersion,
	KindCrypto, KindKeyNotFound, KindAccessDenied, KindKMS, KindRegistry, KindLimitExceeded,
	KindShredded, KindInvalidArgument, KindPanic, KindOther, KindKafka}

// kindNamed is the kind whose String() is name (a kind the library reports by name, e.g. in
// the policy status); KindOther for a name this binding does not know.
func kindNamed(name string) Kind {
	for _, k := range kinds {
		if k.String() == name {
			return k
		}
	}
	return KindOther
}

// String is the core's name of the kind: "policy", "crypto", "key_not_found", ... ("unknown"
// for a code the library does not know).
func (k Kind) String() string {
	return C.GoString(C.fc_status_name(C.int32_t(k)))
}

// Error is every error of the binding. Test its kind with errors.As, or errors.Is against the
// Err* values: errors.Is(err, fieldcrypt.ErrCrypto). Messages never hold plaintext or key
// material.
type Error struct {
	Kind Kind
	// Retryable: the same call may succeed later (a KMS or registry outage).
	Retryable bool
	// Index is the failing record of a batch, else -1.
	Index   int
	Message string

	sentinel bool // one of the Err* kind values: matches every error of its kind
}

func (e *Error) Error() string {
	s := "fieldcrypt: " + e.Kind.String()
	if e.Index >= 0 {
		s += " (record " + strconv.Itoa(e.Index) + ")"
	}
	return s + ": " + e.Message
}

// Is makes errors.Is(err, ErrCrypto) true for every error of kind KindCrypto.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.sentinel && t.Kind == e.Kind
}

func kindError(k Kind) error {
	return &Error{Kind: k, Index: -1, Message: "any " + k.String() + " error", sentinel: true}
}

// Values for errors.Is, one per kind.
var (
	ErrPolicy             = kindError(KindPolicy)
	ErrConfig             = kindError(KindConfig)
	ErrRecord             = kindError(KindRecord)
	ErrFormat             = kindError(KindFormat)
	ErrUnsupportedVersion = kindError(KindUnsupportedVersion)
	ErrCrypto             = kindError(KindCrypto)
	ErrKeyNotFound        = kindError(KindKeyNotFound)
	ErrAccessDenied       = kindError(KindAccessDenied)
	ErrKMS                = kindError(KindKMS)
	ErrRegistry           = kindError(KindRegistry)
	ErrLimitExceeded      = kindError(KindLimitExceeded)
	ErrShredded           = kindError(KindShredded)
	ErrInvalidArgument    = kindError(KindInvalidArgument)
	ErrPanic              = kindError(KindPanic)
	ErrOther              = kindError(KindOther)
)

// ErrClosed is returned by every call on a closed Codec (kind KindInvalidArgument).
var ErrClosed error = &Error{Kind: KindInvalidArgument, Index: -1, Message: "the codec is closed"}

// errMalformedOutput: the library's output did not parse (a bug on one side of the ABI).
var errMalformedOutput error = &Error{Kind: KindInvalidArgument, Index: -1,
	Message: "malformed packed output from the library"}

// takeError copies a C error into Go memory and frees it at once.
func takeError(status C.int32_t, e C.fc_error) error {
	err := &Error{Kind: Kind(status), Retryable: e.retryable != 0, Index: int(e.index)}
	if e.message.len > 0 {
		err.Message = string(unsafe.Slice((*byte)(unsafe.Pointer(e.message.data)), int(e.message.len)))
	}
	C.fcgo_error_free(e)
	return err
}
