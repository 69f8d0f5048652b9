package wire

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/klauspost/compress/s2"
)

// Version is the protocol version: the frame version byte this package writes and accepts, and
// the number of UpgradeToken.
const Version = 2

// UpgradeToken is the token of the Upgrade header that switches an HTTP/1.1 connection to the
// protocol's frames.
const UpgradeToken = "groupcache/2"

// MaxConnRequests bounds the requests in flight on one connection, on both sides.
const MaxConnRequests = 256

// MaxInflation bounds how many times its compressed length a compressed value may inflate to,
// once over 64 KiB decoded: a few bytes of a hostile peer cannot make a receiver allocate
// megabytes. Compress never makes such a value; both sides check it.
const MaxInflation = 256

// inflationFloor is the decoded length up to which MaxInflation does not apply.
const inflationFloor = 64 << 10

// Default limits (see Limits), and the message bound.
const (
	DefaultMaxKeyBytes   = 4 << 10  // 4 KiB
	DefaultMaxValueBytes = 64 << 20 // 64 MiB (the decoded size, for a compressed value)
	DefaultMaxCacheName  = 255
	DefaultMaxBatchKeys  = 4096 // keys of a Remove, GetMany or PeekMany request
	// MaxMessageBytes is the longest message a response may carry. Servers cut longer messages
	// (at a UTF-8 boundary); parsers refuse them.
	MaxMessageBytes = 1024
	// MaxTraceBytes is the longest trace context a request may carry; a longer one is not sent.
	MaxTraceBytes = 1024
	// FrameOverhead is what MaxFrameBytes adds by default to the value, key and cache name
	// limits: room for the header bytes, the length varints and a message.
	FrameOverhead = MaxMessageBytes + 64

	maxKeyCeiling   = 1 << 20
	maxValueCeiling = 1 << 30
	maxNameCeiling  = 1 << 16
	maxBatchCeiling = 1 << 16
	maxFrameCeiling = 1<<31 - 1

	headerLen = 3 // version, op or status, flags
	PrefixLen = 8 // what precedes a frame on a stream: its length and its request id
)

// Flags of a response, of a batch entry and of an OpSet or OpOffer request (the other requests
// have none).
const (
	flagCompressed = 1 << 0 // the value is an S2 block
	flagTTL        = 1 << 1 // an 8-byte big-endian TTL follows the flags
	knownFlags     = flagCompressed | flagTTL
	// flagTrace, of any request, says the caller's trace context follows the flags (and the TTL).
	flagTrace = 1 << 2
)

// Limits bound what one side accepts and sends (see peer.WithLimits); a zero field means its
// default.
type Limits struct {
	MaxKeyBytes   int // the length of a key; default 4 KiB, at most 1 MiB
	MaxValueBytes int // the raw, and for a compressed value the decoded, length of a value; default 64 MiB, at most 1 GiB
	MaxCacheName  int // the length of a cache name; default 255, at most 64 KiB
	MaxBatchKeys  int // the keys of a Remove, GetMany or PeekMany; default 4096, at most 65536
	// MaxFrameBytes bounds one frame, checked before any memory is allocated for it. Default
	// MaxValueBytes + MaxKeyBytes + MaxCacheName + FrameOverhead; at most 2 GiB - 1.
	MaxFrameBytes int
}

// Resolve returns l with every zero or negative field replaced by its default: the limits in force.
func Resolve(l Limits) Limits {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&l.MaxKeyBytes, DefaultMaxKeyBytes)
	def(&l.MaxValueBytes, DefaultMaxValueBytes)
	def(&l.MaxCacheName, DefaultMaxCacheName)
	def(&l.MaxBatchKeys, DefaultMaxBatchKeys)
	def(&l.MaxFrameBytes, min(l.MaxValueBytes+l.MaxKeyBytes+l.MaxCacheName+FrameOverhead, maxFrameCeiling))
	return l
}

// CheckLimits reports a field of l out of its range.
func CheckLimits(l Limits) error {
	for _, f := range []struct {
		name       string
		v, ceiling int
	}{{"MaxKeyBytes", l.MaxKeyBytes, maxKeyCeiling}, {"MaxValueBytes", l.MaxValueBytes, maxValueCeiling},
		{"MaxCacheName", l.MaxCacheName, maxNameCeiling}, {"MaxBatchKeys", l.MaxBatchKeys, maxBatchCeiling},
		{"MaxFrameBytes", l.MaxFrameBytes, maxFrameCeiling}} {
		if f.v < 0 || f.v > f.ceiling {
			return fmt.Errorf("%s %d is outside 0..%d", f.name, f.v, f.ceiling)
		}
	}
	return nil
}

// AppendPrefix appends the stream prefix of a frame of n bytes with the given request id.
func AppendPrefix(dst []byte, n int, id uint32) []byte {
	return binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(dst, uint32(n)), id)
}

// ParsePrefix returns the frame length and request id of a stream prefix (PrefixLen bytes).
func ParsePrefix(b []byte) (n int, id uint32) {
	return int(binary.BigEndian.Uint32(b)), binary.BigEndian.Uint32(b[4:])
}

// Request is a request frame. Get and Peek use Cache and Key; Set also Value; Remove, GetMany and
// PeekMany use Cache and Keys; Clear uses Cache and Generation. The other fields are ignored.
type Request struct {
	Op         Op
	Cache      string   // 1 to MaxCacheName bytes
	Key        []byte   // 0 to MaxKeyBytes bytes
	Keys       [][]byte // 1 to MaxBatchKeys keys of 0 to MaxKeyBytes bytes
	Value      Value    // at most MaxValueBytes, decoded (a compressed value's S2 header says)
	Generation uint64   // at least 1
	// Trace is the caller's trace context, of any op: opaque bytes (a W3C traceparent, then
	// optionally a line feed and the tracestate), 1 to MaxTraceBytes; empty when not traced.
	Trace []byte
}

// Response is a response frame. In a parsed Response, Value.Data aliases the frame.
type Response struct {
	Status Status // StatusOK, or why there is no value
	Value  Value  // encoded only with StatusOK
	Msg    string // usually empty with StatusOK; AppendResponse cuts it to MaxMessageBytes
}

// AppendRequest appends the frame of r (without its stream prefix) to dst, unchecked.
func AppendRequest(dst []byte, r *Request) []byte {
	var flags byte
	if r.Op.carriesValue() {
		flags = valueFlags(&r.Value)
	}
	if len(r.Trace) > 0 {
		flags |= flagTrace
	}
	dst = appendTTL(append(dst, Version, byte(r.Op), flags), flags, r.Value.TTL)
	if len(r.Trace) > 0 {
		dst = appendField(dst, r.Trace)
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
	case OpSet, OpOffer:
		dst = appendField(appendField(dst, r.Key), r.Value.Data)
	default:
		dst = appendField(dst, r.Key)
	}
	return dst
}

// valueFlags returns the flags that describe v.
func valueFlags(v *Value) (flags byte) {
	if v.Compressed {
		flags |= flagCompressed
	}
	if v.TTL != 0 {
		flags |= flagTTL
	}
	return flags
}

// appendTTL appends the TTL when flags say there is one.
func appendTTL(dst []byte, flags byte, ttl time.Duration) []byte {
	if flags&flagTTL != 0 {
		dst = binary.BigEndian.AppendUint64(dst, uint64(ttl))
	}
	return dst
}

// appendField appends f with its uvarint length.
func appendField[T string | []byte](dst []byte, f T) []byte {
	return append(binary.AppendUvarint(dst, uint64(len(f))), f...)
}

// RequestFrameMax returns the length of the longest request frame valid under lim, of any op.
func RequestFrameMax(lim Limits) int {
	const v = binary.MaxVarintLen64
	name, key := v+lim.MaxCacheName, v+lim.MaxKeyBytes
	trace := v + MaxTraceBytes
	set := headerLen + 8 + trace + name + key + v + lim.MaxValueBytes
	batch := headerLen + trace + name + v + lim.MaxBatchKeys*(uvarintLen(uint64(lim.MaxKeyBytes))+lim.MaxKeyBytes)
	return max(set, batch) // a Get, a Peek or a Clear is shorter than a Set
}

// uvarintLen returns the length of the uvarint encoding of x.
func uvarintLen(x uint64) int {
	n := 1
	for ; x >= 0x80; x >>= 7 {
		n++
	}
	return n
}

// ParseRequest parses a request frame (without its stream prefix), strictly: a frame that parses
// re-encodes to the same bytes. Errors have the Status a server replies with: StatusBadVersion,
// StatusTooLarge for a Set value over lim (decoded, without inflating it), else StatusBadRequest.
// It never panics. Key, Keys and Value.Data alias frame.
func ParseRequest(frame []byte, lim Limits) (r Request, err error) {
	if err = ParseRequestInto(frame, Resolve(lim), nil, &r); err != nil {
		r = Request{}
	}
	return r, err
}

// Scratch is what a server connection reuses from one request to the next.
type Scratch struct {
	cache string   // the previous request's cache name, returned again while it does not change
	keys  [][]byte // the key list of the previous batch request
}

// maxKeptKeys bounds the key list a Scratch keeps between requests.
const maxKeptKeys = 1024

// ParseRequestInto parses with resolved limits into r; sc, when not nil, lends its memory.
func ParseRequestInto(frame []byte, lim Limits, sc *Scratch, r *Request) error {
	op, flags, rest, err := parseRequestHeader(frame)
	if err != nil {
		return err
	}
	*r = Request{Op: op}
	if rest, err = parseTTL(rest, flags, &r.Value, badRequest); err != nil {
		return err
	}
	if flags&flagTrace != 0 {
		trace, after, msg := field(rest, MaxTraceBytes)
		if msg != "" || len(trace) == 0 {
			return badRequest("trace context: " + cmp.Or(msg, "empty"))
		}
		r.Trace, rest = trace[:len(trace):len(trace)], after
	}
	name, rest, msg := field(rest, lim.MaxCacheName)
	if msg != "" || len(name) == 0 {
		return badRequest("cache name: " + cmp.Or(msg, "empty"))
	}
	switch op {
	case OpRemove, OpGetMany, OpPeekMany:
		r.Keys, rest, err = parseKeys(rest, lim, sc)
	case OpClear:
		r.Generation, rest, err = parseGeneration(rest)
	default: // OpGet, OpPeek, OpSet, OpOffer
		key, after, msg := field(rest, lim.MaxKeyBytes)
		if msg != "" {
			return badRequest("key: " + msg)
		}
		r.Key, rest = key[:len(key):len(key)], after
		if op.carriesValue() {
			err = parseSetValue(rest, flags, lim, &r.Value)
			rest = nil
		}
	}
	if err == nil && len(rest) != 0 {
		err = badRequest("trailing bytes")
	}
	r.Cache = sc.name(name)
	return err
}

// parseRequestHeader checks the header bytes of a request and returns its op, flags and the rest.
func parseRequestHeader(frame []byte) (Op, byte, []byte, error) {
	if len(frame) > 0 && frame[0] != Version {
		return 0, 0, nil, &Error{Status: StatusBadVersion,
			Msg: fmt.Sprintf("request version %d, this server speaks %d", frame[0], Version)}
	}
	if len(frame) < headerLen {
		return 0, 0, nil, badRequest("truncated header")
	}
	op, flags := Op(frame[1]), frame[2]
	if op == 0 || op > MaxOp {
		return 0, 0, nil, badRequest("unsupported op " + op.String())
	}
	if valueFlags := flags &^ flagTrace; (!op.carriesValue() && valueFlags != 0) || valueFlags&^knownFlags != 0 {
		return 0, 0, nil, badRequest("unknown request flags")
	}
	return op, flags, frame[headerLen:], nil
}

// parseTTL reads the TTL that flags announce from b into v (fail: the error of a bad one).
func parseTTL(b []byte, flags byte, v *Value, fail func(string) error) ([]byte, error) {
	if flags&flagTTL == 0 {
		return b, nil
	}
	if len(b) < 8 {
		return nil, fail("truncated TTL")
	}
	if v.TTL = time.Duration(binary.BigEndian.Uint64(b)); v.TTL == 0 {
		return nil, fail("zero TTL with the expiry flag")
	}
	return b[8:], nil
}

// parseKeys parses the key list of a batch request from b, in memory sc lends when it can.
func parseKeys(b []byte, lim Limits, sc *Scratch) ([][]byte, []byte, error) {
	n, k := uvarint(b)
	if k <= 0 {
		return nil, nil, badRequest("key count: bad encoding")
	}
	b = b[k:]
	if n == 0 || n > uint64(lim.MaxBatchKeys) {
		return nil, nil, badRequest(fmt.Sprintf("key count %d outside 1..%d", n, lim.MaxBatchKeys))
	}
	if n > uint64(len(b)) { // every key takes at least its length byte
		return nil, nil, badRequest("keys: truncated")
	}
	keys := sc.keyList(int(n))
	for i := range int(n) {
		key, rest, msg := field(b, lim.MaxKeyBytes)
		if msg != "" {
			return nil, nil, badRequest(fmt.Sprintf("key %d: %s", i, msg))
		}
		keys = append(keys, key[:len(key):len(key)])
		b = rest
	}
	return keys, b, nil
}

// parseGeneration parses the generation of a Clear request from b.
func parseGeneration(b []byte) (uint64, []byte, error) {
	g, k := uvarint(b)
	if k <= 0 {
		return 0, nil, badRequest("generation: bad encoding")
	}
	if g == 0 {
		return 0, nil, badRequest("generation 0")
	}
	return g, b[k:], nil
}

// keyList returns an empty key list with room for n keys: sc's, or new memory sc keeps if small.
func (sc *Scratch) keyList(n int) [][]byte {
	if sc != nil && cap(sc.keys) >= n {
		return sc.keys[:0]
	}
	keys := make([][]byte, 0, n)
	if sc != nil && n <= maxKeptKeys {
		sc.keys = keys
	}
	return keys
}

// name returns the cache name b: the previous request's when the same (no allocation) or new.
func (sc *Scratch) name(b []byte) string {
	if sc == nil {
		return string(b)
	}
	if sc.cache != string(b) {
		sc.cache = string(b)
	}
	return sc.cache
}

// parseSetValue parses the value field of an OpSet or OpOffer request, which runs to the end of b, into v.
func parseSetValue(b []byte, flags byte, lim Limits, v *Value) error {
	n, k := uvarint(b)
	switch b = b[max(k, 0):]; {
	case k <= 0:
		return badRequest("value: bad length")
	case n > uint64(lim.MaxValueBytes):
		return tooLarge(n, lim.MaxValueBytes)
	case n > uint64(len(b)):
		return badRequest("value: truncated")
	case n < uint64(len(b)):
		return badRequest("trailing bytes")
	}
	v.Data, v.Compressed = b[:len(b):len(b)], flags&flagCompressed != 0
	return CheckValue(v, lim.MaxValueBytes, badRequest)
}

// CheckValue checks a compressed value's S2 header: well formed (else fail's error), stating a
// decoded length of at most maxValue, and of at most MaxInflation times its compressed length
// (above 64 KiB).
func CheckValue(v *Value, maxValue int, fail func(string) error) error {
	if !v.Compressed {
		return nil
	}
	dlen, err := s2.DecodedLen(v.Data)
	if err != nil {
		return fail("compressed value: bad header")
	}
	if dlen > maxValue {
		return &Error{Status: StatusTooLarge,
			Msg: fmt.Sprintf("compressed value inflates to %d bytes, over the limit of %d", dlen, maxValue)}
	}
	if dlen > inflationFloor && dlen/MaxInflation > len(v.Data) {
		return &Error{Status: StatusTooLarge,
			Msg: fmt.Sprintf("compressed value of %d bytes inflates to %d, over %d times its size", len(v.Data), dlen, MaxInflation)}
	}
	return nil
}

// tooLarge is the error of a value of n bytes over the limit.
func tooLarge[T int | uint64](n T, limit int) error {
	return &Error{Status: StatusTooLarge, Msg: fmt.Sprintf("value of %d bytes over the limit of %d", n, limit)}
}

func badRequest(msg string) error { return &Error{Status: StatusBadRequest, Msg: msg} }

func ProtocolError(msg string) error { return &Error{Err: errProtocol, Msg: msg} }

// field reads a uvarint-length-prefixed field of at most limit bytes from b, or says what is wrong.
func field(b []byte, limit int) (f, rest []byte, problem string) {
	n, k := uvarint(b)
	switch b = b[max(k, 0):]; {
	case k <= 0:
		return nil, nil, "bad length"
	case n > uint64(limit):
		return nil, nil, fmt.Sprintf("length %d over the limit of %d", n, limit)
	case n > uint64(len(b)):
		return nil, nil, "truncated"
	}
	return b[:n], b[n:], ""
}

// uvarint decodes a minimally encoded uvarint from b: its value and length, k <= 0 when invalid.
func uvarint(b []byte) (v uint64, k int) {
	var s uint
	for i := 0; i < len(b) && i < binary.MaxVarintLen64; i++ {
		c := b[i]
		if c < 0x80 {
			if (i > 0 && c == 0) || (i == binary.MaxVarintLen64-1 && c > 1) {
				return 0, -1 // a longer encoding than needed, or an overflow
			}
			return v | uint64(c)<<s, i + 1
		}
		v |= uint64(c&0x7f) << s
		s += 7
	}
	return 0, 0
}

// AppendResponse appends the frame of r (without its stream prefix) to dst.
func AppendResponse(dst []byte, r *Response) []byte {
	dst = AppendResponseHead(dst, r)
	if r.Status == StatusOK {
		dst = append(dst, r.Value.Data...)
	}
	return dst
}

// AppendResponseHead appends the frame of r up to the value bytes, so that a large value can be
// written from where it lies.
func AppendResponseHead(dst []byte, r *Response) []byte {
	var flags byte
	if r.Status == StatusOK {
		flags = valueFlags(&r.Value)
	}
	dst = appendTTL(append(dst, Version, byte(r.Status), flags), flags, r.Value.TTL)
	dst = appendField(dst, cutMessage(r.Msg))
	if r.Status == StatusOK {
		dst = binary.AppendUvarint(dst, uint64(len(r.Value.Data)))
	}
	return dst
}

// ResponseFrameLen returns the length of the frame of r whose head is headLen bytes long.
func ResponseFrameLen(headLen int, r *Response) int {
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

// ParseResponse parses a response frame (without its stream prefix), strictly as ParseRequest.
// Errors are *Error values: StatusBadVersion, StatusTooLarge for a value over lim (decoded, for a
// compressed one), errProtocol for anything else. It never panics. Value.Data aliases frame.
func ParseResponse(frame []byte, lim Limits) (Response, error) {
	maxValue := Resolve(lim).MaxValueBytes
	r, off, err := ParseResponseHead(frame, len(frame), maxValue)
	if err != nil {
		return Response{}, err
	}
	if r.Status == StatusOK {
		r.Value.Data = frame[off:len(frame):len(frame)]
		if err := CheckValue(&r.Value, maxValue, ProtocolError); err != nil {
			return Response{}, err
		}
	}
	return r, nil
}

// MaxResponseHead bounds the length of a response frame's head (everything before the value).
const MaxResponseHead = headerLen + 8 + binary.MaxVarintLen64 + MaxMessageBytes + binary.MaxVarintLen64

// ParseResponseHead parses the head of a response frame of n bytes (everything before the value)
// from b, which holds at least min(n, MaxResponseHead) of its bytes. It returns the response
// without its value's data, and the offset of the value, which runs to the end of the frame.
func ParseResponseHead(b []byte, n int, maxValue int) (r Response, off int, err error) {
	flags, rest, err := parseResponseHeader(b, &r)
	if err != nil {
		return Response{}, 0, err
	}
	msg, rest, problem := field(rest, MaxMessageBytes)
	if problem != "" {
		return Response{}, 0, ProtocolError("message: " + problem)
	}
	if len(msg) > 0 {
		r.Msg = string(msg)
	}
	off = len(b) - len(rest)
	if r.Status != StatusOK {
		if off != n {
			return Response{}, 0, ProtocolError("trailing bytes")
		}
		return r, off, nil
	}
	vlen, k := uvarint(rest)
	off += max(k, 0)
	switch {
	case k <= 0:
		return Response{}, 0, ProtocolError("value: bad length")
	case vlen > uint64(maxValue):
		return Response{}, 0, tooLarge(vlen, maxValue)
	case vlen > uint64(n-off):
		return Response{}, 0, ProtocolError("value: truncated")
	case vlen < uint64(n-off):
		return Response{}, 0, ProtocolError("trailing bytes")
	}
	r.Value.Compressed = flags&flagCompressed != 0
	return r, off, nil
}

// parseResponseHeader parses the header bytes of a response, and its TTL, into r.
func parseResponseHeader(b []byte, r *Response) (flags byte, rest []byte, err error) {
	if len(b) > 0 && b[0] != Version {
		return 0, nil, &Error{Status: StatusBadVersion,
			Msg: fmt.Sprintf("reply version %d, this client speaks %d", b[0], Version)}
	}
	if len(b) < headerLen {
		return 0, nil, ProtocolError("truncated header")
	}
	r.Status, flags = Status(b[1]), b[2]
	switch {
	case r.Status > MaxStatus:
		return 0, nil, ProtocolError(fmt.Sprintf("unknown status %d", b[1]))
	case flags&^knownFlags != 0:
		return 0, nil, ProtocolError("unknown flags")
	case r.Status != StatusOK && flags != 0:
		return 0, nil, ProtocolError("flags on a reply without value")
	}
	rest, err = parseTTL(b[headerLen:], flags, &r.Value, ProtocolError)
	return flags, rest, err
}

// CheckRequest refuses a request over lim (resolved), before anything is sent: the error a
// server would answer it with.
func CheckRequest(r *Request, lim *Limits) error {
	switch {
	case len(r.Cache) == 0 || len(r.Cache) > lim.MaxCacheName:
		return badRequest(fmt.Sprintf("cache name of %d bytes outside 1..%d", len(r.Cache), lim.MaxCacheName))
	case r.Op == OpGetMany || r.Op == OpPeekMany || r.Op == OpRemove:
		return checkKeys(r.Keys, lim)
	case r.Op == OpClear && r.Generation == 0:
		return badRequest("generation 0")
	case r.Op != OpClear && len(r.Key) > lim.MaxKeyBytes:
		return badRequest(fmt.Sprintf("key of %d bytes over the limit of %d", len(r.Key), lim.MaxKeyBytes))
	case r.Op.carriesValue() && len(r.Value.Data) > lim.MaxValueBytes:
		return tooLarge(len(r.Value.Data), lim.MaxValueBytes)
	case r.Op.carriesValue():
		return CheckValue(&r.Value, lim.MaxValueBytes, badRequest)
	}
	return nil
}

// checkKeys refuses the key list of a batch over lim.
func checkKeys(keys [][]byte, lim *Limits) error {
	if len(keys) == 0 || len(keys) > lim.MaxBatchKeys {
		return badRequest(fmt.Sprintf("%d keys outside 1..%d", len(keys), lim.MaxBatchKeys))
	}
	for i, k := range keys {
		if len(k) > lim.MaxKeyBytes {
			return badRequest(fmt.Sprintf("key %d of %d bytes over the limit of %d", i, len(k), lim.MaxKeyBytes))
		}
	}
	return nil
}

// CheckAck refuses an acknowledgment (the reply to a Set, Remove or Clear) with a value or flags:
// resp parsed from the head of a frame of n bytes, whose value starts at off.
func CheckAck(resp *Response, off, n int) error {
	if resp.Status == StatusOK && (off != n || resp.Value.Compressed || resp.Value.TTL != 0) {
		return ProtocolError("acknowledgment with a value or flags")
	}
	return nil
}
