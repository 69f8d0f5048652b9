package codec

import (
	"encoding/binary"
	"fmt"
	"reflect"
	"unsafe"
)

// Key returns the built-in key codec for K, chosen once by the kind of K:
//
//   - any string kind (named types included): the raw bytes of the string;
//   - any signed integer kind (int, int8, int16, int32, int64 and named types
//     of them): the 8-byte big-endian two's complement of int64(k);
//   - any unsigned integer kind (uint, uint8, uint16, uint32, uint64, uintptr
//     and named types of them): the 8-byte big-endian form of uint64(k).
//
// Integer decoding requires exactly 8 bytes and a value that fits K. For any
// other K, Key returns nil and false; such keys need a key codec given
// explicitly, for example the deterministic CBOR codec.
//
// Reflection is used here only; the returned codec reads and writes K
// directly and its Append does not allocate when dst has room.
func Key[K comparable]() (Codec[K], bool) {
	t := reflect.TypeFor[K]()
	name := t.String()
	switch t.Kind() {
	case reflect.String:
		return stringKey[K]{}, true
	case reflect.Int:
		return signedKey[K, int]{name}, true
	case reflect.Int8:
		return signedKey[K, int8]{name}, true
	case reflect.Int16:
		return signedKey[K, int16]{name}, true
	case reflect.Int32:
		return signedKey[K, int32]{name}, true
	case reflect.Int64:
		return signedKey[K, int64]{name}, true
	case reflect.Uint:
		return unsignedKey[K, uint]{name}, true
	case reflect.Uint8:
		return unsignedKey[K, uint8]{name}, true
	case reflect.Uint16:
		return unsignedKey[K, uint16]{name}, true
	case reflect.Uint32:
		return unsignedKey[K, uint32]{name}, true
	case reflect.Uint64:
		return unsignedKey[K, uint64]{name}, true
	case reflect.Uintptr:
		return unsignedKey[K, uintptr]{name}, true
	}
	return nil, false
}

// The key codecs below reinterpret K as U through unsafe.Pointer. That is
// sound because Key only pairs K with the U whose kind it has: K's underlying
// type is U, so both have the same size and representation.

// stringKey encodes a string-kind K as its bytes.
type stringKey[K comparable] struct{}

func (stringKey[K]) Append(dst []byte, k K) ([]byte, error) {
	return append(dst, *(*string)(unsafe.Pointer(&k))...), nil
}

func (stringKey[K]) Decode(data []byte) (K, error) {
	s := string(data)
	return *(*K)(unsafe.Pointer(&s)), nil
}

const intKeyLen = 8

// signedKey encodes a signed-integer-kind K whose underlying type is U.
type signedKey[K comparable, U int | int8 | int16 | int32 | int64] struct {
	name string // K's type name, for errors
}

func (signedKey[K, U]) Append(dst []byte, k K) ([]byte, error) {
	return binary.BigEndian.AppendUint64(dst, uint64(int64(*(*U)(unsafe.Pointer(&k))))), nil
}

func (c signedKey[K, U]) Decode(data []byte) (K, error) {
	var zero K
	if len(data) != intKeyLen {
		return zero, decodeError("key", fmt.Errorf("%s key needs %d bytes, got %d", c.name, intKeyLen, len(data)))
	}
	x := int64(binary.BigEndian.Uint64(data))
	u := U(x)
	if int64(u) != x {
		return zero, decodeError("key", fmt.Errorf("%d is out of range for a %s key", x, c.name))
	}
	return *(*K)(unsafe.Pointer(&u)), nil
}

// unsignedKey encodes an unsigned-integer-kind K whose underlying type is U.
type unsignedKey[K comparable, U uint | uint8 | uint16 | uint32 | uint64 | uintptr] struct {
	name string // K's type name, for errors
}

func (unsignedKey[K, U]) Append(dst []byte, k K) ([]byte, error) {
	return binary.BigEndian.AppendUint64(dst, uint64(*(*U)(unsafe.Pointer(&k)))), nil
}

func (c unsignedKey[K, U]) Decode(data []byte) (K, error) {
	var zero K
	if len(data) != intKeyLen {
		return zero, decodeError("key", fmt.Errorf("%s key needs %d bytes, got %d", c.name, intKeyLen, len(data)))
	}
	x := binary.BigEndian.Uint64(data)
	u := U(x)
	if uint64(u) != x {
		return zero, decodeError("key", fmt.Errorf("%d is out of range for a %s key", x, c.name))
	}
	return *(*K)(unsafe.Pointer(&u)), nil
}
