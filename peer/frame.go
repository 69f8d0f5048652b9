package peer

import (
	"encoding/binary"
	"fmt"
	"unicode/utf8"

	"github.com/klauspost/compress/s2"
)

// Version is the frame version byte this package writes and accepts.
const Version = 1

// Default limits (see Limits).
const (
	// DefaultMaxKeyBytes is the default longest key: 4 KiB.
	DefaultMaxKeyBytes = 4 << 10
	// DefaultMaxValueBytes is the default largest value: 64 MiB (the decoded size, for a
	// compressed value).
	DefaultMaxValueBytes = 64 << 20
	// DefaultMaxCacheName is the default longest cache name: 255 bytes.
	DefaultMaxCacheName = 255
	// DefaultMaxBatchKeys is the default longest key list of a Remove, GetMany or PeekMany
	// request: 4096.
	DefaultMaxBatchKeys = 4096
	// MaxMessageBytes is the longest message a response may carry. Servers cut longer messages
	// (at a UTF-8 boundary); ParseResponse rejects longer ones.
	MaxMessageBytes = 1024
	// FrameOverhead is what MaxFrameBytes adds by default to the value, key and cache name
	// limits: room for the header bytes, the length varints and a message.
	FrameOverhead = MaxMessageBytes + 64

	// Hard ceilings on configured limits.
	maxKeyCeiling   = 1 << 20
	maxValueCeiling = 1 << 30
	maxNameCeiling  = 1 << 16
	maxBatchCeiling = 1 << 16
	maxFrameCeiling = 1<<31 - 1

	headerLen = 3 // version, op or status, flags
	prefixLen = 4 // the length prefix of a frame on a stream
)

// Flags of a response, of a batch entry and of an OpSet request (the other requests have none).
const (
	flagCompressed = 1 << 0 // the value is an S2 block
	flagExpires    = 1 << 1 // an 8-byte big-endian expiry follows the flags
	knownFlags     = flagCompressed | flagExpires
)

// Limits bound what one side accepts and sends. A zero (or negative) field means its default.
// Both sides check them: a client refuses to send a request over its limits and to read a reply
// over them; a server refuses requests over its limits and does not send values over them.
type Limits struct {
	// MaxKeyBytes bounds the length of a key. Default DefaultMaxKeyBytes (4 KiB); at most 1 MiB.
	MaxKeyBytes int
	// MaxValueBytes bounds the length of a value: of its raw bytes, and of its decoded bytes when
	// it is compressed. Default DefaultMaxValueBytes (64 MiB); at most 1 GiB.
	MaxValueBytes int
	// MaxCacheName bounds the length of a cache name. Default DefaultMaxCacheName (255); at most
	// 64 KiB.
	MaxCacheName int
	// MaxBatchKeys bounds the number of keys of a Remove, GetMany or PeekMany request. Default
	// DefaultMaxBatchKeys (4096); at most 65536.
	MaxBatchKeys int
	// MaxFrameBytes bounds the length of one frame (after the 4-byte length prefix). It is
	// checked against the prefix before any memory is allocated for the frame. Default
	// MaxValueBytes + MaxKeyBytes + MaxCacheName + FrameOverhead; at most 2 GiB - 1.
	MaxFrameBytes int
}

// withDefaults returns l with every zero or negative field replaced by its default.
func (l Limits) withDefaults() Limits {
	if l.MaxKeyBytes <= 0 {
		l.MaxKeyBytes = DefaultMaxKeyBytes
	}
	if l.MaxValueBytes <= 0 {
		l.MaxValueBytes = DefaultMaxValueBytes
	}
	if l.MaxCacheName <= 0 {
		l.MaxCacheName = DefaultMaxCacheName
	}
	if l.MaxBatchKeys <= 0 {
		l.MaxBatchKeys = DefaultMaxBatchKeys
	}
	if l.MaxFrameBytes <= 0 {
		l.MaxFrameBytes = min(l.MaxValueBytes+l.MaxKeyBytes+l.MaxCacheName+FrameOverhead, maxFrameCeiling)
	}
	return l
}

// validate reports a field out of its range.
func (l Limits) validate() error {
	check := func(name string, v, ceiling int) error {
		if v < 0 || v > ceiling {
			return fmt.Errorf("%s %d is outside 0..%d", name, v, ceiling)
		}
		return nil
	}
	if err := check("MaxKeyBytes", l.MaxKeyBytes, maxKeyCeiling); err != nil {
		return err
	}
	if err := check("MaxValueBytes", l.MaxValueBytes, maxValueCeiling); err != nil {
		return err
	}
	if err := check("MaxCacheName", l.MaxCacheName, maxNameCeiling); err != nil {
		return err
	}
	if err := check("MaxBatchKeys", l.MaxBatchKeys, maxBatchCeiling); err != nil {
		return err
	}
	return check("MaxFrameBytes", l.MaxFrameBytes, maxFrameCeiling)
}

// Request is a request frame. Which fields an op uses:
//
//	OpGet, OpPeek:         Cache, Key
//	OpSet:                 Cache, Key, Value (Data, Compressed, Expires)
//	OpRemove:              Cache, Keys
//	OpGetMany, OpPeekMany: Cache, Keys
//	OpClear:               Cache, Generation
//
// AppendRequest ignores the fields an op does not use; ParseRequest leaves them zero. In a parsed
// Request, Key, Keys and Value.Data alias the frame.
type Request struct {
	// Op is the operation.
	Op Op
	// Cache is the name of the cache: 1 to MaxCacheName bytes.
	Cache string
	// Key is the encoded key: 0 to MaxKeyBytes bytes.
	Key []byte
	// Keys are the encoded keys: 1 to MaxBatchKeys of them, each 0 to MaxKeyBytes bytes.
	Keys [][]byte
	// Value is the value to store: at most MaxValueBytes bytes, and for a compressed value a
	// decoded length (stated in its S2 header) of at most MaxValueBytes.
	Value Value
	// Generation is the generation number the peer's cache adopts; at least 1.
	Generation uint64
}

// Response is a response frame. In a parsed Response, Value.Data aliases the frame.
type Response struct {
	// Status is StatusOK, or the reason there is no value.
	Status Status
	// Value is the value; only encoded when Status is StatusOK.
	Value Value
	// Msg is a human-readable message, usually empty for StatusOK; at most MaxMessageBytes
	// (AppendResponse cuts a longer one).
	Msg string
}

// AppendRequest appends the frame of r (without the stream's length prefix) to dst. It does not
// check limits: the parser of the other side does. An op this package does not know is encoded
// with the fields of OpGet.
func AppendRequest(dst []byte, r *Request) []byte {
	dst = appendRequestHead(dst, r)
	if r.Op == OpSet {
		dst = append(dst, r.Value.Data...)
	}
	return dst
}

// appendRequestHead appends the frame of r up to the value bytes of an OpSet request (all of the
// frame for the other ops), so a large value can be written from where it lies.
func appendRequestHead(dst []byte, r *Request) []byte {
	var flags byte
	if r.Op == OpSet {
		if r.Value.Compressed {
			flags |= flagCompressed
		}
		if r.Value.Expires != 0 {
			flags |= flagExpires
		}
	}
	dst = append(dst, Version, byte(r.Op), flags)
	if flags&flagExpires != 0 {
		dst = binary.BigEndian.AppendUint64(dst, uint64(r.Value.Expires))
	}
	dst = appendField(dst, r.Cache)
	switch r.Op {
	case OpRemove, OpGetMany, OpPeekMany:
		dst = binary.AppendUvarint(dst, uint64(len(r.Keys)))
		for _, k := range r.Keys {
			dst = appendField(dst, k)
		}
	case OpClear:
		dst = binary.AppendUvarint(dst, r.Generation)
	case OpSet:
		dst = appendField(dst, r.Key)
		dst = binary.AppendUvarint(dst, uint64(len(r.Value.Data)))
	default:
		dst = appendField(dst, r.Key)
	}
	return dst
}

// appendField appends f with its uvarint length.
func appendField[T string | []byte](dst []byte, f T) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(f)))
	return append(dst, f...)
}

// requestFrameMax returns the length of the longest request frame valid under lim, of any op.
func requestFrameMax(lim Limits) int {
	const v = binary.MaxVarintLen64
	name := v + lim.MaxCacheName
	key := v + lim.MaxKeyBytes
	get := headerLen + name + key
	set := headerLen + 8 + name + key + v + lim.MaxValueBytes
	batch := headerLen + name + v + lim.MaxBatchKeys*(uvarintLen(uint64(lim.MaxKeyBytes))+lim.MaxKeyBytes)
	clr := headerLen + name + v
	return max(get, set, batch, clr)
}

// uvarintLen returns the length of the uvarint encoding of x.
func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

// ParseRequest parses a request frame (without the stream's length prefix). It is strict: every
// byte must be accounted for and every length must be minimally encoded, so a frame that parses
// re-encodes (AppendRequest) to the same bytes. Errors are *Error values with a Status the server
// replies with: StatusBadVersion (has StatusBadVersion) when the version byte is not Version;
// StatusTooLarge (has StatusTooLarge) for an OpSet value over lim.MaxValueBytes, or a compressed
// one whose decoded length (stated in its S2 header) is, so a decompression bomb is refused
// without inflating it; and StatusBadRequest (has StatusBadRequest) for anything else: a frame
// that is truncated, has trailing bytes, flags other than those of OpSet, an unknown op, an empty
// cache name, a field over lim, a key count of 0 or over lim.MaxBatchKeys, a generation of 0, a
// zero expiry with the expiry flag, or a compressed value whose S2 header is malformed. It never
// panics. The returned Key, Keys and Value.Data alias frame.
func ParseRequest(frame []byte, lim Limits) (r Request, err error) {
	if err = parseRequest(frame, lim.withDefaults(), nil, &r); err != nil {
		r = Request{}
	}
	return r, err
}

// reqScratch is what a server connection reuses from one request to the next.
type reqScratch struct {
	cache string   // the previous request's cache name, returned again while it does not change
	keys  [][]byte // the key list of the previous batch request
	body  []byte   // the batch body of the previous GetMany or PeekMany reply
}

// maxKeptKeys bounds the key list a reqScratch keeps between requests.
const maxKeptKeys = 1024

// parseRequest parses with resolved limits into r (which it overwrites, also on failure). sc,
// when not nil, lends the key list and returns the cache name of the previous request when it is
// the same.
func parseRequest(frame []byte, lim Limits, sc *reqScratch, r *Request) error {
	if len(frame) > 0 && frame[0] != Version {
		return &Error{Status: StatusBadVersion,
			Msg: fmt.Sprintf("request version %d, this server speaks %d", frame[0], Version)}
	}
	if len(frame) < headerLen {
		return badRequest("truncated header")
	}
	op := Op(frame[1])
	if op == 0 || op > maxOp {
		return badRequest("unsupported op " + op.String())
	}
	flags := frame[2]
	if (op != OpSet && flags != 0) || flags&^knownFlags != 0 {
		return badRequest("unknown request flags")
	}
	*r = Request{Op: op}
	rest := frame[headerLen:]
	if flags&flagExpires != 0 {
		if len(rest) < 8 {
			return badRequest("truncated expiry")
		}
		r.Value.Expires = int64(binary.BigEndian.Uint64(rest))
		if r.Value.Expires == 0 {
			return badRequest("zero expiry with the expiry flag")
		}
		rest = rest[8:]
	}
	name, rest, msg := field(rest, lim.MaxCacheName)
	if msg != "" {
		return badRequest("cache name: " + msg)
	}
	if len(name) == 0 {
		return badRequest("empty cache name")
	}
	switch op {
	case OpRemove, OpGetMany, OpPeekMany:
		n, k := uvarint(rest)
		if k <= 0 {
			return badRequest("key count: bad encoding")
		}
		rest = rest[k:]
		if n == 0 || n > uint64(lim.MaxBatchKeys) {
			return badRequest(fmt.Sprintf("key count %d outside 1..%d", n, lim.MaxBatchKeys))
		}
		if n > uint64(len(rest)) { // every key takes at least its length byte
			return badRequest("keys: truncated")
		}
		var keys [][]byte
		if sc != nil && cap(sc.keys) >= int(n) {
			keys = sc.keys[:0]
		} else {
			keys = make([][]byte, 0, n)
			if sc != nil && n <= maxKeptKeys {
				sc.keys = keys
			}
		}
		for i := range int(n) {
			var key []byte
			key, rest, msg = field(rest, lim.MaxKeyBytes)
			if msg != "" {
				return badRequest(fmt.Sprintf("key %d: %s", i, msg))
			}
			keys = append(keys, key[:len(key):len(key)])
		}
		r.Keys = keys
	case OpClear:
		g, k := uvarint(rest)
		if k <= 0 {
			return badRequest("generation: bad encoding")
		}
		if g == 0 {
			return badRequest("generation 0")
		}
		r.Generation = g
		rest = rest[k:]
	default: // OpGet, OpPeek, OpSet
		key, after, msg := field(rest, lim.MaxKeyBytes)
		if msg != "" {
			return badRequest("key: " + msg)
		}
		r.Key = key[:len(key):len(key)]
		rest = after
		if op == OpSet {
			if err := parseSetValue(rest, flags, lim, &r.Value); err != nil {
				return err
			}
			rest = nil
		}
	}
	if len(rest) != 0 {
		return badRequest("trailing bytes")
	}
	if sc != nil && sc.cache == string(name) {
		r.Cache = sc.cache
	} else {
		r.Cache = string(name)
		if sc != nil {
			sc.cache = r.Cache
		}
	}
	return nil
}

// parseSetValue parses the value field of an OpSet request, which runs to the end of b, into v.
func parseSetValue(b []byte, flags byte, lim Limits, v *Value) error {
	n, k := uvarint(b)
	if k <= 0 {
		return badRequest("value: bad length")
	}
	b = b[k:]
	if n > uint64(lim.MaxValueBytes) {
		return &Error{Status: StatusTooLarge,
			Msg: fmt.Sprintf("value of %d bytes over the limit of %d", n, lim.MaxValueBytes)}
	}
	if n != uint64(len(b)) {
		if n > uint64(len(b)) {
			return badRequest("value: truncated")
		}
		return badRequest("trailing bytes")
	}
	v.Data = b[:len(b):len(b)]
	if flags&flagCompressed == 0 {
		return nil
	}
	v.Compressed = true
	dlen, err := s2.DecodedLen(v.Data)
	if err != nil {
		return badRequest("compressed value: bad header")
	}
	if dlen > lim.MaxValueBytes {
		return &Error{Status: StatusTooLarge,
			Msg: fmt.Sprintf("compressed value inflates to %d bytes, over the limit of %d", dlen, lim.MaxValueBytes)}
	}
	return nil
}

func badRequest(msg string) error {
	return &Error{Status: StatusBadRequest, Msg: msg}
}

// field reads a uvarint-length-prefixed field of at most max bytes from b. It returns the field,
// the bytes after it, and a non-empty problem description when b does not hold a valid field.
func field(b []byte, max int) (f, rest []byte, problem string) {
	n, k := uvarint(b)
	if k <= 0 {
		return nil, nil, "bad length"
	}
	b = b[k:]
	if n > uint64(max) {
		return nil, nil, fmt.Sprintf("length %d over the limit of %d", n, max)
	}
	if n > uint64(len(b)) {
		return nil, nil, "truncated"
	}
	return b[:n], b[n:], ""
}

// uvarint decodes a minimally encoded uvarint from b. It returns the value and the number of
// bytes read, or k <= 0 when b is truncated, overflows 64 bits or is not minimal.
func uvarint(b []byte) (v uint64, k int) {
	var s uint
	for i := 0; i < len(b) && i < binary.MaxVarintLen64; i++ {
		c := b[i]
		if c < 0x80 {
			if i > 0 && c == 0 {
				return 0, -1 // a longer encoding than needed
			}
			if i == binary.MaxVarintLen64-1 && c > 1 {
				return 0, -1 // overflow
			}
			return v | uint64(c)<<s, i + 1
		}
		v |= uint64(c&0x7f) << s
		s += 7
	}
	return 0, 0
}

// AppendResponse appends the frame of r (without the stream's length prefix) to dst. For a status
// other than StatusOK the value is not encoded. A message longer than MaxMessageBytes is cut.
func AppendResponse(dst []byte, r *Response) []byte {
	dst = appendResponseHead(dst, r)
	if r.Status == StatusOK {
		dst = append(dst, r.Value.Data...)
	}
	return dst
}

// appendResponseHead appends the frame of r up to the value bytes: what follows is the value
// (when r.Status is StatusOK), so a large value can be written from where it lies.
func appendResponseHead(dst []byte, r *Response) []byte {
	var flags byte
	v := &r.Value
	ok := r.Status == StatusOK
	if ok && v.Compressed {
		flags |= flagCompressed
	}
	if ok && v.Expires != 0 {
		flags |= flagExpires
	}
	dst = append(dst, Version, byte(r.Status), flags)
	if flags&flagExpires != 0 {
		dst = binary.BigEndian.AppendUint64(dst, uint64(v.Expires))
	}
	msg := cutMessage(r.Msg)
	dst = binary.AppendUvarint(dst, uint64(len(msg)))
	dst = append(dst, msg...)
	if ok {
		dst = binary.AppendUvarint(dst, uint64(len(v.Data)))
	}
	return dst
}

// responseFrameLen returns the length of the frame AppendResponse(nil, r) returns.
func responseFrameLen(headLen int, r *Response) int {
	if r.Status == StatusOK {
		return headLen + len(r.Value.Data)
	}
	return headLen
}

// cutMessage returns msg cut to at most MaxMessageBytes, at a UTF-8 boundary.
func cutMessage(msg string) string {
	if len(msg) <= MaxMessageBytes {
		return msg
	}
	n := MaxMessageBytes
	for n > 0 && !utf8.RuneStart(msg[n]) {
		n--
	}
	return msg[:n]
}

// ParseResponse parses a response frame (without the stream's length prefix). It is strict like
// ParseRequest, so a frame that parses re-encodes (AppendResponse) to the same bytes. Errors are
// *Error values whose Err is: StatusBadVersion when the version byte is not Version; StatusTooLarge when
// the value (or, for a compressed value, its decoded length as stated in its header) is over
// lim.MaxValueBytes, so a decompression bomb is refused without inflating it; ErrProtocol for
// anything else malformed (truncated, trailing bytes, unknown status or flags, a value or flags
// with a non-OK status, a compressed value whose header is not S2, an over-long message). It never
// panics. The returned Value.Data aliases frame.
func ParseResponse(frame []byte, lim Limits) (Response, error) {
	return parseResponse(frame, lim.withDefaults().MaxValueBytes)
}

func parseResponse(frame []byte, maxValue int) (Response, error) {
	r, off, err := parseResponseHead(frame, len(frame), maxValue)
	if err != nil {
		return Response{}, err
	}
	if r.Status == StatusOK {
		r.Value.Data = frame[off:len(frame):len(frame)]
		if err := checkValue(&r.Value, maxValue); err != nil {
			return Response{}, err
		}
	}
	return r, nil
}

// maxResponseHead bounds the length of a response frame's head (everything before the value):
// the header bytes, the expiry, the message with its length, and the value's length.
const maxResponseHead = headerLen + 8 + binary.MaxVarintLen64 + MaxMessageBytes + binary.MaxVarintLen64

// parseResponseHead parses the head of a response frame of n bytes: everything before the value.
// b is the frame or a prefix of it holding at least min(n, maxResponseHead) bytes. It returns the
// response without its value's data and the offset of the value, which runs to the end of the
// frame (off == n for a status other than StatusOK). A value over maxValue bytes gives an error
// with StatusTooLarge: the frame itself is well formed.
func parseResponseHead(b []byte, n int, maxValue int) (r Response, off int, err error) {
	if len(b) > 0 && b[0] != Version {
		return Response{}, 0, &Error{Status: StatusBadVersion,
			Msg: fmt.Sprintf("reply version %d, this client speaks %d", b[0], Version)}
	}
	if len(b) < headerLen {
		return Response{}, 0, protocolError("truncated header")
	}
	st := Status(b[1])
	if st > maxStatus {
		return Response{}, 0, protocolError(fmt.Sprintf("unknown status %d", b[1]))
	}
	flags := b[2]
	if flags&^knownFlags != 0 {
		return Response{}, 0, protocolError("unknown flags")
	}
	if st != StatusOK && flags != 0 {
		return Response{}, 0, protocolError("flags on a reply without value")
	}
	rest := b[headerLen:]
	r.Status = st
	if flags&flagExpires != 0 {
		if len(rest) < 8 {
			return Response{}, 0, protocolError("truncated expiry")
		}
		r.Value.Expires = int64(binary.BigEndian.Uint64(rest))
		if r.Value.Expires == 0 {
			return Response{}, 0, protocolError("zero expiry with the expiry flag")
		}
		rest = rest[8:]
	}
	msg, rest, problem := field(rest, MaxMessageBytes)
	if problem != "" {
		return Response{}, 0, protocolError("message: " + problem)
	}
	if len(msg) > 0 {
		r.Msg = string(msg)
	}
	off = len(b) - len(rest)
	if st != StatusOK {
		if off != n {
			return Response{}, 0, protocolError("trailing bytes")
		}
		return r, off, nil
	}
	vlen, k := uvarint(rest)
	if k <= 0 {
		return Response{}, 0, protocolError("value: bad length")
	}
	off += k
	if vlen > uint64(maxValue) {
		return Response{}, 0, &Error{Status: StatusTooLarge,
			Msg: fmt.Sprintf("value of %d bytes over the limit of %d", vlen, maxValue)}
	}
	if vlen != uint64(n-off) {
		if vlen > uint64(n-off) {
			return Response{}, 0, protocolError("value: truncated")
		}
		return Response{}, 0, protocolError("trailing bytes")
	}
	if flags&flagCompressed != 0 {
		r.Value.Compressed = true
	}
	return r, off, nil
}

// checkValue checks the S2 header of a compressed value: well formed, and stating a decoded
// length of at most maxValue bytes.
func checkValue(v *Value, maxValue int) error {
	if !v.Compressed {
		return nil
	}
	dlen, err := s2.DecodedLen(v.Data)
	if err != nil {
		return protocolError("compressed value: bad header")
	}
	if dlen > maxValue {
		return &Error{Status: StatusTooLarge,
			Msg: fmt.Sprintf("compressed value inflates to %d bytes, over the limit of %d", dlen, maxValue)}
	}
	return nil
}

func protocolError(msg string) error {
	return &Error{Err: ErrProtocol, Msg: msg}
}
