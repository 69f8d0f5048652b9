package codec

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Types shared by the tests, fuzz targets and benchmarks.

type inner struct {
	A int    `cbor:"a" json:"a"`
	B string `cbor:"b" json:"b"`
}

type record struct {
	ID    uint64           `cbor:"id" json:"id"`
	Name  string           `cbor:"name" json:"name"`
	Tags  []string         `cbor:"tags" json:"tags"`
	Attrs map[string]int64 `cbor:"attrs" json:"attrs"`
	Inner inner            `cbor:"inner" json:"inner"`
	Ptr   *inner           `cbor:"ptr" json:"ptr"`
	Data  []byte           `cbor:"data" json:"data"`
	Score float64          `cbor:"score" json:"score"`
	Kids  []record         `cbor:"kids" json:"kids"`
}

// small is the ~5-field struct of the benchmarks.
type small struct {
	ID     int64   `cbor:"id" json:"id"`
	Name   string  `cbor:"name" json:"name"`
	Email  string  `cbor:"email" json:"email"`
	Active bool    `cbor:"active" json:"active"`
	Score  float64 `cbor:"score" json:"score"`
}

// point implements encoding.BinaryMarshaler, BinaryUnmarshaler and
// BinaryAppender.
type point struct{ X, Y int32 }

func (p *point) AppendBinary(dst []byte) ([]byte, error) {
	dst = binary.BigEndian.AppendUint32(dst, uint32(p.X))
	return binary.BigEndian.AppendUint32(dst, uint32(p.Y)), nil
}

func (p *point) MarshalBinary() ([]byte, error) { return p.AppendBinary(nil) }

func (p *point) UnmarshalBinary(data []byte) error {
	if len(data) != 8 {
		return fmt.Errorf("point: need 8 bytes, got %d", len(data))
	}
	p.X = int32(binary.BigEndian.Uint32(data))
	p.Y = int32(binary.BigEndian.Uint32(data[4:]))
	return nil
}

// blob implements only BinaryMarshaler and BinaryUnmarshaler.
type blob struct{ b []byte }

func (v *blob) MarshalBinary() ([]byte, error) { return append([]byte{'B'}, v.b...), nil }

func (v *blob) UnmarshalBinary(data []byte) error {
	if len(data) == 0 || data[0] != 'B' {
		return errors.New("blob: missing marker")
	}
	v.b = append([]byte{}, data[1:]...)
	return nil
}

var errBroken = errors.New("broken")

// broken fails to marshal and unmarshal.
type broken struct{}

func (*broken) MarshalBinary() ([]byte, error)          { return nil, errBroken }
func (*broken) AppendBinary(dst []byte) ([]byte, error) { return append(dst, 'x'), errBroken }
func (*broken) UnmarshalBinary([]byte) error            { return errBroken }

// Named key types of every supported kind.
type (
	nString  string
	nInt     int
	nInt8    int8
	nInt16   int16
	nInt32   int32
	nInt64   int64
	nUint    uint
	nUint8   uint8
	nUint16  uint16
	nUint32  uint32
	nUint64  uint64
	nUintptr uintptr
)
