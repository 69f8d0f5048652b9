package wire

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/klauspost/compress/s2"
)

// DefaultCompressThreshold is the length from which Compress compresses by default: a shorter
// value fits, with its frame, in one TCP segment (docs/benchmarks.md, "Compression").
const DefaultCompressThreshold = 1400

// Value is a value as it travels: encoded by the cache's codec and maybe compressed, as one S2
// block whose header states the decoded length, checked before anything is inflated.
type Value struct {
	Data       []byte // the encoded value, or its compressed form
	Compressed bool   // Data is an S2 block
	// TTL is the value's remaining lifetime when its frame was sent (the receiver counts it
	// from its own clock, so clocks need not agree): 0 never expires, negative has expired.
	TTL time.Duration
}

// Compress returns raw as a Value, compressed with S2 when len(raw) >= threshold (0 means
// DefaultCompressThreshold, a negative one never) and that makes it smaller. An uncompressed Value
// aliases raw. An owner compresses a value once and serves the result many times. A value that
// would compress over MaxInflation times (a long run of one byte) is sent raw.
func Compress(raw []byte, threshold int) Value {
	if threshold == 0 {
		threshold = DefaultCompressThreshold
	}
	bound := s2.MaxEncodedLen(len(raw))
	if threshold < 0 || len(raw) < threshold || bound < 0 {
		return Value{Data: raw}
	}
	enc := s2.EncodeBetter(make([]byte, bound), raw)
	if len(enc) >= len(raw) || (len(raw) > inflationFloor && len(raw)/MaxInflation > len(enc)) {
		return Value{Data: raw} // no gain, or more than a receiver inflates
	}
	if cap(enc)-len(enc) > len(enc)/8 {
		enc = append([]byte(nil), enc...) // a value may be kept long: not with the worst-case buffer
	}
	return Value{Data: enc, Compressed: true}
}

// Raw returns the decoded bytes of v (new memory, when compressed). A value over limit (0 means
// DefaultMaxValueBytes) is refused with StatusTooLarge before anything is inflated.
func (v Value) Raw(limit int) ([]byte, error) {
	return v.RawInto(nil, limit)
}

// RawInto is Raw, inflating a compressed value into dst's memory when it fits in cap(dst) (the
// result then shares dst's memory), into new memory otherwise.
func (v Value) RawInto(dst []byte, limit int) ([]byte, error) {
	if limit <= 0 {
		limit = DefaultMaxValueBytes
	}
	if !v.Compressed {
		if len(v.Data) > limit {
			return nil, tooLarge(len(v.Data), limit)
		}
		return v.Data, nil
	}
	if err := CheckValue(&v, limit, ProtocolError); err != nil {
		return nil, err
	}
	n, _ := s2.DecodedLen(v.Data)
	if cap(dst) < n {
		dst = make([]byte, n)
	}
	out, err := s2.Decode(dst[:n], v.Data)
	if err != nil {
		return nil, &Error{Err: errProtocol, Msg: "compressed value: " + err.Error()}
	}
	return out, nil
}

// Result is the answer for one key of a GetMany or PeekMany.
type Result struct {
	// Value is the value, when Err is nil.
	Value Value
	// Err is nil, or why there is no value: an *Error with the entry's Status (StatusTooLarge too
	// for a value over this side's limits). Results of a peer.Client have Peer and Op set.
	Err error
}

const (
	// maxEntryStatus is the highest status a batch entry may carry: a version is a property of
	// a frame, not of an entry.
	maxEntryStatus = StatusBadRequest
	// minEntryLen is the length of the shortest batch entry: status, flags, an empty message.
	minEntryLen = 3
	// batchFullMsg is the message of the entries a server could not fit in its reply frame.
	batchFullMsg = "batch reply full; ask again"
	fullLen      = 2 + 1 + len(batchFullMsg) // the length of such an entry
)

// AppendBatch appends the batch body of rs (the value of a GetMany or PeekMany reply) to dst,
// unchecked; an entry carries its Result's value, or the status and message of its Err.
func AppendBatch(dst []byte, rs []Result) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(rs)))
	for i := range rs {
		st, msg := errorEntry(rs[i].Err)
		dst = appendEntry(dst, st, &rs[i].Value, msg)
	}
	return dst
}

// errorEntry returns the status and message of a result's entry (see AppendBatch).
func errorEntry(err error) (Status, string) {
	if err == nil {
		return StatusOK, ""
	}
	if pe, ok := err.(*Error); ok && pe.Status != StatusOK && pe.Status <= maxEntryStatus && pe.Err == nil {
		return pe.Status, cutMessage(pe.Msg)
	}
	if st, msg := replyStatus(err); st != StatusNotFound {
		return st, msg
	}
	return StatusNotFound, "" // a batch of absent keys stays small
}

// appendEntry appends one batch entry: v when st is StatusOK, msg otherwise.
func appendEntry(dst []byte, st Status, v *Value, msg string) []byte {
	if st != StatusOK {
		return appendField(append(dst, byte(st), 0), msg)
	}
	flags := valueFlags(v)
	return appendField(appendTTL(append(dst, byte(StatusOK), flags), flags, v.TTL), v.Data)
}

// entryLen returns the length of the entry appendEntry appends.
func entryLen(st Status, v *Value, msg string) int {
	if st != StatusOK {
		return 2 + uvarintLen(uint64(len(msg))) + len(msg)
	}
	if v.TTL != 0 {
		return 10 + uvarintLen(uint64(len(v.Data))) + len(v.Data)
	}
	return 2 + uvarintLen(uint64(len(v.Data))) + len(v.Data)
}

// ParseBatch parses the batch body of a reply answering n keys, strictly as ParseResponse; a
// malformed one matches errProtocol. An entry over lim fails alone (StatusTooLarge).
func ParseBatch(b []byte, n int, lim Limits) ([]Result, error) {
	maxValue := Resolve(lim).MaxValueBytes
	count, k := uvarint(b)
	switch b = b[max(k, 0):]; {
	case k <= 0:
		return nil, ProtocolError("batch: bad entry count")
	case n < 0 || count != uint64(n):
		return nil, ProtocolError(fmt.Sprintf("batch of %d entries answering %d keys", count, n))
	case count > uint64(len(b)/minEntryLen):
		return nil, ProtocolError("batch: truncated")
	}
	rs := make([]Result, n)
	for i := range rs {
		var err error
		if b, err = parseEntry(b, &rs[i], maxValue); err != nil {
			pe := err.(*Error)
			pe.Msg = fmt.Sprintf("batch entry %d: %s", i, pe.Msg)
			return nil, pe
		}
	}
	if len(b) != 0 {
		return nil, ProtocolError("batch: trailing bytes")
	}
	return rs, nil
}

// parseEntry parses one batch entry from b into r and returns the bytes after it.
func parseEntry(b []byte, r *Result, maxValue int) ([]byte, error) {
	if len(b) < 2 {
		return nil, ProtocolError("truncated")
	}
	st, flags := Status(b[0]), b[1]
	switch {
	case st > maxEntryStatus:
		return nil, ProtocolError(fmt.Sprintf("unknown status %d", b[0]))
	case flags&^knownFlags != 0:
		return nil, ProtocolError("unknown flags")
	case st != StatusOK && flags != 0:
		return nil, ProtocolError("flags on an entry without value")
	case st != StatusOK:
		msg, rest, problem := field(b[2:], MaxMessageBytes)
		if problem != "" {
			return nil, ProtocolError("message: " + problem)
		}
		r.Err = &Error{Status: st, Msg: string(msg)}
		return rest, nil
	}
	b, err := parseTTL(b[2:], flags, &r.Value, ProtocolError)
	if err != nil {
		return nil, err
	}
	vlen, k := uvarint(b)
	switch b = b[max(k, 0):]; {
	case k <= 0:
		return nil, ProtocolError("value: bad length")
	case vlen > uint64(len(b)):
		return nil, ProtocolError("value: truncated")
	case vlen > uint64(maxValue):
		*r = Result{Err: tooLarge(vlen, maxValue)} // this entry alone
		return b[vlen:], nil
	}
	r.Value.Data, r.Value.Compressed = b[:vlen:vlen], flags&flagCompressed != 0
	if err := CheckValue(&r.Value, maxValue, ProtocolError); err != nil {
		if StatusOf(err) != StatusTooLarge {
			return nil, err
		}
		*r = Result{Err: err}
	}
	return b[vlen:], nil
}

// appendBatchReply appends the batch body a Server sends for rs, values checked, entries that do
// not fit in lim.MaxFrameBytes StatusOverloaded; ok is false when even those would not fit.
func appendBatchReply(dst []byte, rs []Result, lim Limits) (body []byte, ok bool) {
	// The reply frame is the header, an empty message, the body's length and the body.
	budget := lim.MaxFrameBytes - (headerLen + 1 + uvarintLen(uint64(lim.MaxFrameBytes)))
	n := len(rs)
	used := uvarintLen(uint64(n))
	if used+n*fullLen > budget {
		return dst, false
	}
	if size := BatchReplySize(rs, lim); size > cap(dst)-len(dst) {
		dst = append(make([]byte, 0, len(dst)+size), dst...)
	}
	dst = binary.AppendUvarint(dst, uint64(n))
	for i := range rs {
		r := &rs[i]
		st, msg := errorEntry(r.Err)
		if r.Err == nil {
			st, msg = checkOutgoing(&r.Value, lim)
		}
		if l := entryLen(st, &r.Value, msg); used+l+(n-i-1)*fullLen <= budget {
			dst = appendEntry(dst, st, &r.Value, msg)
			used += l
			continue
		}
		for range n - i { // the reply is full
			dst = appendEntry(dst, StatusOverloaded, nil, batchFullMsg)
		}
		break
	}
	return dst, true
}

// BatchReplySize returns about the length of the body of a reply with rs: enough but for long
// messages, and at most what fits in a frame.
func BatchReplySize(rs []Result, lim Limits) int {
	size := uvarintLen(uint64(len(rs)))
	for i := range rs {
		size += fullLen + 8 + len(rs[i].Value.Data)
	}
	return min(size, lim.MaxFrameBytes-(headerLen+1+uvarintLen(uint64(lim.MaxFrameBytes))))
}

// replyStatus returns the status and message a Server answers a Backend's error with: the status
// it maps to and its text (an *Error's without its status).
func replyStatus(err error) (Status, string) {
	st := statusOf(err)
	if pe, ok := err.(*Error); ok {
		return st, cutMessage(pe.detail())
	}
	return st, cutMessage(err.Error())
}

// checkOutgoing checks a value a Server is about to send against lim.
func checkOutgoing(v *Value, lim Limits) (Status, string) {
	n := len(v.Data)
	if v.Compressed {
		dlen, err := s2.DecodedLen(v.Data)
		if err != nil {
			return StatusInternal, "backend returned a malformed compressed value"
		}
		n = max(n, dlen)
	}
	if n > lim.MaxValueBytes {
		return StatusTooLarge, fmt.Sprintf("value of %d bytes over the limit of %d", n, lim.MaxValueBytes)
	}
	return StatusOK, ""
}

// ValueResponse is a server's reply carrying v, checked against lim (resolved).
func ValueResponse(v Value, lim Limits) Response {
	if st, msg := checkOutgoing(&v, lim); st != StatusOK {
		return Response{Status: st, Msg: msg}
	}
	if frameLen := headerLen + 8 + 1 + binary.MaxVarintLen64 + len(v.Data); frameLen > lim.MaxFrameBytes {
		return Response{Status: StatusTooLarge,
			Msg: fmt.Sprintf("reply frame of about %d bytes over the limit of %d", frameLen, lim.MaxFrameBytes)}
	}
	return Response{Value: v}
}

// ErrorResponse is a server's reply to a request its Backend answered with err.
func ErrorResponse(err error) Response {
	st, msg := replyStatus(err)
	return Response{Status: st, Msg: msg}
}

// BatchResponse is a server's reply to a GetMany or PeekMany its Backend answered with rs, under
// lim (resolved).
func BatchResponse(rs []Result, lim Limits) Response {
	body, ok := appendBatchReply(nil, rs, lim)
	if !ok {
		return Response{Status: StatusTooLarge,
			Msg: fmt.Sprintf("a reply to %d keys does not fit in the frame limit of %d bytes", len(rs), lim.MaxFrameBytes)}
	}
	return Response{Value: Value{Data: body}}
}
