package codec_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"

	"github.com/typedcache/groupcache/codec"
)

func ExampleCBOR() {
	type User struct {
		Name string `cbor:"name"`
		ID   int64  `cbor:"id"`
	}
	c := codec.CBOR[User]()

	b, err := c.Append(nil, User{Name: "ann", ID: 7})
	if err != nil {
		panic(err)
	}
	fmt.Printf("%x\n", b) // map keys sorted: "id" before "name"

	u, err := c.Decode(b)
	fmt.Printf("%+v %v\n", u, err)

	_, err = c.Decode(append(b, 0)) // one trailing byte
	var ce *codec.Error
	fmt.Println(errors.As(err, &ce), ce.Op)
	fmt.Println(err)
	// Output:
	// a262696407646e616d6563616e6e
	// {Name:ann ID:7} <nil>
	// true decode
	// codec: cbor decode: cbor: 1 bytes of extraneous data starting at index 14
}

func ExampleKey() {
	type UserID int64
	c, ok := codec.Key[UserID]()
	if !ok {
		panic("no key codec")
	}
	b, _ := c.Append(nil, -2)
	fmt.Printf("%x\n", b) // 8-byte big-endian two's complement

	id, err := c.Decode(b)
	fmt.Println(id, err)

	_, ok = codec.Key[float64]() // no built-in key codec: give one, e.g. codec.CBOR
	fmt.Println(ok)
	// Output:
	// fffffffffffffffe
	// -2 <nil>
	// false
}

// Point has binary marshaling methods on its pointer.
type Point struct{ X, Y int16 }

func (p *Point) MarshalBinary() ([]byte, error) {
	return binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(nil, uint16(p.X)), uint16(p.Y)), nil
}

func (p *Point) UnmarshalBinary(data []byte) error {
	if len(data) != 4 {
		return fmt.Errorf("point: need 4 bytes, got %d", len(data))
	}
	p.X, p.Y = int16(binary.BigEndian.Uint16(data)), int16(binary.BigEndian.Uint16(data[2:]))
	return nil
}

func ExampleBinary() {
	c := codec.Binary[Point]()

	b, err := c.Append(nil, Point{X: 1, Y: -1})
	if err != nil {
		panic(err)
	}
	fmt.Printf("%x\n", b)

	p, err := c.Decode(b)
	fmt.Printf("%+v %v\n", p, err)

	_, err = c.Decode(b[:3])
	fmt.Println(err)
	// Output:
	// 0001ffff
	// {X:1 Y:-1} <nil>
	// codec: binary decode: point: need 4 bytes, got 3
}

func ExampleFunc() {
	// Integers as decimal text.
	c := codec.Func(
		func(dst []byte, v int) ([]byte, error) { return strconv.AppendInt(dst, int64(v), 10), nil },
		func(data []byte) (int, error) { return strconv.Atoi(string(data)) },
	)

	b, _ := c.Append([]byte("n="), 42)
	fmt.Printf("%s\n", b)

	n, err := c.Decode(b[2:])
	fmt.Println(n, err)

	_, err = c.Decode([]byte("forty-two"))
	fmt.Println(err)
	// Output:
	// n=42
	// 42 <nil>
	// codec: func decode: strconv.Atoi: parsing "forty-two": invalid syntax
}
