package codec

import "encoding/json"

// JSON returns a codec based on encoding/json. Map keys are sorted, so the
// encoding is deterministic for the same value. Decode rejects anything but
// white space after the value. The usual encoding/json rules apply: unknown
// object fields are ignored, invalid UTF-8 is replaced by U+FFFD, and NaN or
// infinite floats cannot be encoded.
func JSON[T any]() Codec[T] { return jsonCodec[T]{} }

type jsonCodec[T any] struct{}

func (jsonCodec[T]) Append(dst []byte, v T) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return dst, encodeError("json", err)
	}
	if dst == nil {
		return b, nil
	}
	return append(dst, b...), nil
}

func (jsonCodec[T]) Decode(data []byte) (T, error) {
	var v T
	if err := json.Unmarshal(data, &v); err != nil {
		var zero T
		return zero, decodeError("json", err)
	}
	return v, nil
}
