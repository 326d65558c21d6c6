package fieldcrypt

// The ABI's packed records (ffi/README.md, "Packed records"): one byte string per record so that
// a record crosses into C in one call. Integers are u32 little-endian; null32 marks an absent
// key, value or header value.
//
//	headers := count:u32 { name_len:u32 name value_len:u32|null32 value }*count
//	record  := key_len:u32|null32 key value_len:u32|null32 value headers
//	batch   := count:u32 record*count

import "encoding/binary"

const null32 = 0xFFFFFFFF

// headerName is the name the codec adds to every encrypted record: returned without allocating.
const headerName = "fieldcrypt"

func appendU32(b []byte, v uint32) []byte { return binary.LittleEndian.AppendUint32(b, v) }

func appendOpt(b, v []byte) []byte {
	if v == nil {
		return appendU32(b, null32)
	}
	return append(appendU32(b, uint32(len(v))), v...)
}

func headersSize(hs []Header) int {
	if len(hs) == 0 {
		return 0
	}
	n := 4
	for i := range hs {
		n += 8 + len(hs[i].Key) + len(hs[i].Value)
	}
	return n
}

// packHeaders appends the packed headers; none at all packs as nothing (the ABI's "len 0").
func packHeaders(b []byte, hs []Header) []byte {
	if len(hs) == 0 {
		return b
	}
	b = appendU32(b, uint32(len(hs)))
	for i := range hs {
		b = appendU32(b, uint32(len(hs[i].Key)))
		b = append(b, hs[i].Key...)
		b = appendOpt(b, hs[i].Value)
	}
	return b
}

func recordSize(r *Record) int {
	n := 8 + len(r.Key) + len(r.Value) + headersSize(r.Headers)
	if len(r.Headers) == 0 {
		n += 4 // inside a record the header count is always written
	}
	return n
}

func packRecord(b []byte, r *Record) []byte {
	b = appendOpt(b, r.Key)
	b = appendOpt(b, r.Value)
	if len(r.Headers) == 0 {
		return appendU32(b, 0)
	}
	return packHeaders(b, r.Headers)
}

func readU32(b []byte) (uint32, []byte, bool) {
	if len(b) < 4 {
		return 0, b, false
	}
	return binary.LittleEndian.Uint32(b), b[4:], true
}

// readOpt returns a sub-slice of b capped at its length, so that appending to it copies
// instead of overwriting the bytes that follow.
func readOpt(b []byte) ([]byte, []byte, bool) {
	n, b, ok := readU32(b)
	if !ok {
		return nil, b, false
	}
	if n == null32 {
		return nil, b, true
	}
	if uint64(n) > uint64(len(b)) {
		return nil, b, false
	}
	return b[:n:n], b[n:], true
}

func unpackRecord(b []byte) (Record, []byte, bool) {
	var r Record
	var ok bool
	if r.Key, b, ok = readOpt(b); !ok {
		return r, b, false
	}
	if r.Value, b, ok = readOpt(b); !ok {
		return r, b, false
	}
	n, b, ok := readU32(b)
	if !ok || uint64(n) > uint64(len(b)/8) { // each header takes at least 8 bytes
		return r, b, false
	}
	if n > 0 {
		r.Headers = make([]Header, n)
	}
	for i := range r.Headers {
		var name []byte
		if name, b, ok = readOpt(b); !ok || name == nil {
			return r, b, false
		}
		if string(name) == headerName {
			r.Headers[i].Key = headerName
		} else {
			r.Headers[i].Key = string(name)
		}
		if r.Headers[i].Value, b, ok = readOpt(b); !ok {
			return r, b, false
		}
	}
	return r, b, true
}
