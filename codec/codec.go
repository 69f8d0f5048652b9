package codec

import (
	"errors"
	"fmt"
	"unsafe"
)

// Codec encodes and decodes values of type T.
//
// Implementations are safe for concurrent use. Decode never retains data: the
// caller may reuse the buffer as soon as Decode returns, so implementations
// that return slices or strings must copy them.
type Codec[T any] interface {
	// Append appends the encoding of v to dst and returns the extended slice.
	// On error the built-in codecs return dst with its length unchanged.
	Append(dst []byte, v T) ([]byte, error)
	// Decode decodes one value from data; data must be exactly one encoded
	// value (trailing bytes are an error where the format can tell).
	// On error the built-in codecs return the zero value of T.
	Decode(data []byte) (T, error)
}

// Operation names used in Error.Op.
const (
	opEncode = "encode"
	opDecode = "decode"
)

// Error reports which codec and which operation failed. Every error the codecs
// of this package return is an *Error; match it with errors.As and tell the
// operation by Op. Unwrap returns Err, so the underlying cause (for example a
// *json.SyntaxError) can be reached with errors.As too.
type Error struct {
	Codec string // codec name: "cbor", "json", "bytes", "string", "binary", "func" or "key"
	Op    string // "encode" or "decode"
	Err   error  // underlying cause
}

// Error returns a message of the form "codec: cbor decode: <cause>".
func (e *Error) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("codec: %s %s failed", e.Codec, e.Op)
	}
	return fmt.Sprintf("codec: %s %s: %v", e.Codec, e.Op, e.Err)
}

// Unwrap returns the underlying cause.
func (e *Error) Unwrap() error { return e.Err }

func encodeError(codec string, err error) error {
	return &Error{Codec: codec, Op: opEncode, Err: err}
}

func decodeError(codec string, err error) error {
	return &Error{Codec: codec, Op: opDecode, Err: err}
}

// wrap returns err as an *Error for op, leaving it alone if it already is one
// for the same operation (so that composed codecs do not stack prefixes).
func wrap(codec, op string, err error) error {
	if e, ok := errors.AsType[*Error](err); ok && e.Op == op {
		return err
	}
	return &Error{Codec: codec, Op: op, Err: err}
}

// Func adapts a pair of functions to a Codec. Errors they return are wrapped
// in an *Error (Codec "func") unless they already are an *Error for the same
// operation. The functions must be safe for concurrent use, and decodeFn must
// not retain data. Func panics if either function is nil.
func Func[T any](appendFn func(dst []byte, v T) ([]byte, error), decodeFn func(data []byte) (T, error)) Codec[T] {
	if appendFn == nil || decodeFn == nil {
		panic("codec: Func with a nil function")
	}
	return funcCodec[T]{appendFn: appendFn, decodeFn: decodeFn}
}

type funcCodec[T any] struct {
	appendFn func(dst []byte, v T) ([]byte, error)
	decodeFn func(data []byte) (T, error)
}

func (c funcCodec[T]) Append(dst []byte, v T) ([]byte, error) {
	out, err := c.appendFn(dst, v)
	if err != nil {
		return dst, wrap("func", opEncode, err)
	}
	return out, nil
}

func (c funcCodec[T]) Decode(data []byte) (T, error) {
	v, err := c.decodeFn(data)
	if err != nil {
		var zero T
		return zero, wrap("func", opDecode, err)
	}
	return v, nil
}

// OwnedDecoder is implemented by codecs that can decode from a buffer handed over for good: the
// decoded value may share data's memory, which saves a copy of large values. Callers use it only
// for buffers they own and will never modify or reuse, such as a value just read from a peer.
// Bytes and String implement it.
type OwnedDecoder[T any] interface {
	DecodeOwned(data []byte) (T, error)
}

// Bytes returns a codec that stores a byte slice as is. Decode copies data and
// always returns a non-nil slice: nil and empty slices both encode to zero
// bytes and decode to an empty, non-nil slice. Decode never fails.
func Bytes() Codec[[]byte] { return bytesCodec{} }

type bytesCodec struct{}

func (bytesCodec) Append(dst []byte, v []byte) ([]byte, error) { return append(dst, v...), nil }

func (bytesCodec) Decode(data []byte) ([]byte, error) {
	out := make([]byte, len(data))
	copy(out, data)
	return out, nil
}

// DecodeOwned returns data itself (an empty, non-nil slice for empty data): no copy.
func (bytesCodec) DecodeOwned(data []byte) ([]byte, error) {
	if data == nil {
		data = []byte{}
	}
	return data, nil
}

// String returns a codec that stores a string as its raw bytes (no UTF-8
// validation, no length prefix). Decode copies data and never fails.
func String() Codec[string] { return stringCodec{} }

type stringCodec struct{}

func (stringCodec) Append(dst []byte, v string) ([]byte, error) { return append(dst, v...), nil }

func (stringCodec) Decode(data []byte) (string, error) { return string(data), nil }

// DecodeOwned returns a string that shares data's memory: no copy. data must never change again.
func (stringCodec) DecodeOwned(data []byte) (string, error) {
	if len(data) == 0 {
		return "", nil
	}
	return unsafe.String(&data[0], len(data)), nil
}
