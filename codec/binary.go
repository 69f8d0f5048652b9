package codec

import "encoding"

// Binary returns a codec for a type whose pointer implements
// encoding.BinaryMarshaler and encoding.BinaryUnmarshaler:
//
//	c := codec.Binary[Point]()
//
// If *T also implements encoding.BinaryAppender, Append uses AppendBinary and
// writes into dst directly. UnmarshalBinary must copy data if it keeps it, as
// its contract requires.
func Binary[T any, PT interface {
	*T
	encoding.BinaryMarshaler
	encoding.BinaryUnmarshaler
}]() Codec[T] {
	_, appender := any(PT(nil)).(encoding.BinaryAppender)
	return binaryCodec[T, PT]{appender: appender}
}

type binaryCodec[T any, PT interface {
	*T
	encoding.BinaryMarshaler
	encoding.BinaryUnmarshaler
}] struct {
	appender bool // PT implements encoding.BinaryAppender
}

func (c binaryCodec[T, PT]) Append(dst []byte, v T) ([]byte, error) {
	p := PT(&v)
	if c.appender {
		out, err := any(p).(encoding.BinaryAppender).AppendBinary(dst)
		if err != nil {
			return dst, encodeError("binary", err)
		}
		return out, nil
	}
	b, err := p.MarshalBinary()
	if err != nil {
		return dst, encodeError("binary", err)
	}
	return append(dst, b...), nil
}

func (binaryCodec[T, PT]) Decode(data []byte) (T, error) {
	var v T
	if err := PT(&v).UnmarshalBinary(data); err != nil {
		var zero T
		return zero, decodeError("binary", err)
	}
	return v, nil
}
