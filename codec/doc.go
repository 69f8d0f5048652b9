// Package codec turns cache keys and values into bytes and back.
//
// A [Codec] appends the encoding of a value to a byte slice and decodes one
// value from a byte slice. The cache uses the value codec to measure an
// entry's cost and, in a cluster, to produce the bytes served to peers; it
// uses the key codec to hash keys and to send them over the wire.
//
// # Value codecs
//
//   - [CBOR] is the default. Its encoding is deterministic (RFC 8949 Core
//     Deterministic Encoding) and its decoder is strict and bounded: trailing
//     bytes, duplicate map keys and indefinite-length items are rejected, and
//     nesting is limited to 32 levels, arrays to 1<<20 elements and maps to
//     1<<20 pairs.
//   - [JSON] uses encoding/json; anything but white space after the value is
//     an error.
//   - [Bytes] and [String] store the raw bytes. Decoding never fails; Bytes
//     decodes nil and empty slices alike to an empty, non-nil slice.
//   - [Binary] uses a type's MarshalBinary (or AppendBinary, when available)
//     and UnmarshalBinary methods.
//   - [Func] adapts a pair of functions.
//
// # Key codecs
//
// [Key] picks a built-in key codec once, from the kind of K, and uses no
// reflection after that. The encodings are fixed, because every node of a
// cluster must turn the same key into the same bytes, whatever its
// architecture:
//
//   - string kinds (string and named types such as `type Name string`): the
//     raw bytes of the string;
//   - signed integer kinds (int, int8, int16, int32, int64 and named types
//     such as `type UserID int64`): the 8-byte big-endian two's complement of
//     int64(k), so an int key encodes the same on 32- and 64-bit machines;
//   - unsigned integer kinds (uint, uint8, uint16, uint32, uint64, uintptr and
//     named types of them): the 8-byte big-endian form of uint64(k).
//
// Decoding an integer key requires exactly 8 bytes holding a value that fits
// K; an int8 key of 300, for example, is an error. Any other key type has no
// built-in codec: Key reports false, and the key codec must be given
// explicitly.
//
// A key codec must be deterministic: the same key must encode to the same
// bytes every time and on every node, so it must not depend on map iteration
// order, pointers or other per-process state. It should also be injective:
// distinct keys must encode to distinct bytes, or they share one entry. The
// CBOR codec meets both for most key types, which makes codec.CBOR[MyKey]() a
// ready key codec for struct keys; mind that it skips unexported fields and
// fields tagged "-". JSON is not injective for strings that are not valid
// UTF-8.
//
// # Rules for implementations
//
// A Codec must be safe for concurrent use. Decode must not retain data: the
// caller may reuse the buffer as soon as Decode returns, so a decoder that
// returns slices or strings must copy them (all codecs here do). Values given
// to Append are treated as read-only. A decoder must not panic on malformed
// input; the decoders in this package are fuzzed for that.
//
// # Errors
//
// Every error returned by Append or Decode of the codecs here is an [*Error]
// that names the codec and the operation (Op "encode" or "decode"); match it
// with errors.As, which reaches the underlying cause too. The package exports
// no sentinel errors. On error, Append returns dst with its length unchanged
// and Decode returns the zero value.
package codec
