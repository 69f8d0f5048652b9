package peer

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/klauspost/compress/s2"
)

// Result is the answer for one key of a GetMany or PeekMany.
type Result struct {
	// Value is the value, when Err is nil.
	Value Value
	// Err is nil, or why there is no value: an *Error whose Status is the entry's status (it
	// has StatusNotFound, StatusUnknownCache, StatusTooLarge, StatusOverloaded, StatusInternal or
	// StatusBadRequest), or, for a value over this side's limits, an *Error with StatusTooLarge with
	// Status StatusOK. Results returned by Client.GetMany and Client.PeekMany have Peer and Op set.
	Err error
}

// maxEntryStatus is the highest status a batch entry may carry: a version is a property of a
// frame, not of an entry.
const maxEntryStatus = StatusBadRequest

// minEntryLen is the length of the shortest batch entry: status, flags and an empty message (or
// an empty value).
const minEntryLen = 3

// batchFullMsg is the message of the entries a server could not fit in its reply frame.
const batchFullMsg = "batch reply full; ask again"

// AppendBatch appends the batch body of rs (the value field of a successful GetMany or PeekMany
// reply: the entry count, then one entry per result) to dst. A Result with a nil Err is encoded as
// an entry with StatusOK and its value; otherwise the entry carries the status and message of Err:
// those of an *Error with a status other than StatusOK (as ParseBatch returns them), or else the
// status Err maps to (as a Server maps a Backend's errors: StatusNotFound, StatusUnknownCache,
// StatusTooLarge, StatusOverloaded, StatusBadRequest, anything else StatusInternal) with Err's text as the
// message, except for StatusNotFound, which carries none. Messages are cut to MaxMessageBytes. Like
// AppendRequest, it does not check limits.
func AppendBatch(dst []byte, rs []Result) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(rs)))
	for i := range rs {
		r := &rs[i]
		if r.Err == nil {
			dst = appendEntry(dst, StatusOK, &r.Value, "")
			continue
		}
		st, msg := errorEntry(r.Err)
		dst = appendEntry(dst, st, nil, msg)
	}
	return dst
}

// errorEntry returns the status and message of the entry for a result's error.
func errorEntry(err error) (Status, string) {
	var pe *Error
	if errors.As(err, &pe) && pe.Status != StatusOK && pe.Status <= maxEntryStatus {
		return pe.Status, cutMessage(pe.Msg)
	}
	st := statusOf(err)
	if st == StatusNotFound {
		return st, ""
	}
	return st, cutMessage(err.Error())
}

// appendEntry appends one batch entry: a value when st is StatusOK, a message otherwise.
func appendEntry(dst []byte, st Status, v *Value, msg string) []byte {
	if st != StatusOK {
		dst = append(dst, byte(st), 0)
		return appendField(dst, msg)
	}
	var flags byte
	if v.Compressed {
		flags |= flagCompressed
	}
	if v.Expires != 0 {
		flags |= flagExpires
	}
	dst = append(dst, byte(StatusOK), flags)
	if flags&flagExpires != 0 {
		dst = binary.BigEndian.AppendUint64(dst, uint64(v.Expires))
	}
	return appendField(dst, v.Data)
}

// entryLen returns the length of the entry appendEntry appends.
func entryLen(st Status, v *Value, msg string) int {
	if st != StatusOK {
		return 2 + uvarintLen(uint64(len(msg))) + len(msg)
	}
	n := 2 + uvarintLen(uint64(len(v.Data))) + len(v.Data)
	if v.Expires != 0 {
		n += 8
	}
	return n
}

// ParseBatch parses the batch body of a GetMany or PeekMany reply (the value field of a response
// frame with StatusOK) that answers a request for n keys. It is strict like ParseResponse, so a
// body whose results all carry the peer's answers (no local StatusTooLarge, below) re-encodes
// (AppendBatch) to the same bytes. The frame is refused with an *Error matching ErrProtocol when it
// is truncated, has trailing bytes, states an entry count other than n, or holds an entry with an
// unknown status (or StatusBadVersion), unknown flags, flags with a status other than StatusOK, a
// zero expiry with the expiry flag, a message over MaxMessageBytes, or a compressed value whose S2
// header is malformed. An entry whose value is over lim.MaxValueBytes (for a compressed value, its
// decoded length as stated in its header) fails alone: its Result's Err has StatusTooLarge, since
// the frame itself is well formed. It never panics. The returned values' Data alias body.
func ParseBatch(body []byte, n int, lim Limits) ([]Result, error) {
	return parseBatch(body, n, lim.withDefaults().MaxValueBytes)
}

func parseBatch(b []byte, n int, maxValue int) ([]Result, error) {
	count, k := uvarint(b)
	if k <= 0 {
		return nil, protocolError("batch: bad entry count")
	}
	b = b[k:]
	if n < 0 || count != uint64(n) {
		return nil, protocolError(fmt.Sprintf("batch of %d entries answering %d keys", count, n))
	}
	if count > uint64(len(b)/minEntryLen) {
		return nil, protocolError("batch: truncated")
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
		return nil, protocolError("batch: trailing bytes")
	}
	return rs, nil
}

// parseEntry parses one batch entry from b into r and returns the bytes after it.
func parseEntry(b []byte, r *Result, maxValue int) ([]byte, error) {
	if len(b) < 2 {
		return nil, protocolError("truncated")
	}
	st, flags := Status(b[0]), b[1]
	if st > maxEntryStatus {
		return nil, protocolError(fmt.Sprintf("unknown status %d", b[0]))
	}
	if flags&^knownFlags != 0 {
		return nil, protocolError("unknown flags")
	}
	if st != StatusOK && flags != 0 {
		return nil, protocolError("flags on an entry without value")
	}
	b = b[2:]
	if st != StatusOK {
		msg, rest, problem := field(b, MaxMessageBytes)
		if problem != "" {
			return nil, protocolError("message: " + problem)
		}
		r.Err = &Error{Status: st, Msg: string(msg)}
		return rest, nil
	}
	v := &r.Value
	if flags&flagExpires != 0 {
		if len(b) < 8 {
			return nil, protocolError("truncated expiry")
		}
		v.Expires = int64(binary.BigEndian.Uint64(b))
		if v.Expires == 0 {
			return nil, protocolError("zero expiry with the expiry flag")
		}
		b = b[8:]
	}
	vlen, k := uvarint(b)
	if k <= 0 {
		return nil, protocolError("value: bad length")
	}
	b = b[k:]
	if vlen > uint64(len(b)) {
		return nil, protocolError("value: truncated")
	}
	data, rest := b[:vlen:vlen], b[vlen:]
	if vlen > uint64(maxValue) {
		*r = Result{Err: &Error{Status: StatusTooLarge,
			Msg: fmt.Sprintf("value of %d bytes over the limit of %d", vlen, maxValue)}}
		return rest, nil
	}
	v.Data = data
	if flags&flagCompressed != 0 {
		v.Compressed = true
		if err := checkValue(v, maxValue); err != nil {
			if StatusOf(err) != StatusTooLarge {
				return nil, err
			}
			*r = Result{Err: err}
		}
	}
	return rest, nil
}

// appendBatchReply appends the batch body a Server sends for rs to dst: each result checked as a
// Get reply is (a value over lim.MaxValueBytes becomes StatusTooLarge, a malformed compressed one
// StatusInternal), and, from the first entry that would take the reply frame over
// lim.MaxFrameBytes on, StatusOverloaded entries with batchFullMsg. ok is false when even a reply
// of such entries only would be over the limit.
func appendBatchReply(dst []byte, rs []Result, lim Limits) (body []byte, ok bool) {
	// The reply frame is the header, an empty message, the body's length and the body.
	budget := lim.MaxFrameBytes - (headerLen + 1 + uvarintLen(uint64(lim.MaxFrameBytes)))
	const fullLen = 2 + 1 + len(batchFullMsg)
	n := len(rs)
	used := uvarintLen(uint64(n))
	if used+n*fullLen > budget {
		return dst, false
	}
	if size := batchReplyHint(rs, lim); size > cap(dst)-len(dst) {
		dst = append(make([]byte, 0, len(dst)+size), dst...)
	}
	dst = binary.AppendUvarint(dst, uint64(n))
	full := false
	for i := range rs {
		r := &rs[i]
		if !full {
			st, msg := StatusOK, ""
			if r.Err != nil {
				st, msg = replyStatus(r.Err)
			} else {
				st, msg = checkOutgoing(&r.Value, lim)
			}
			if l := entryLen(st, &r.Value, msg); used+l+(n-i-1)*fullLen <= budget {
				dst = appendEntry(dst, st, &r.Value, msg)
				used += l
				continue
			}
			full = true
		}
		dst = appendEntry(dst, StatusOverloaded, nil, batchFullMsg)
		used += fullLen
	}
	return dst, true
}

// batchReplyHint estimates the length of the batch body appendBatchReply appends for rs: exact
// when every value fits, less when errors carry long messages.
func batchReplyHint(rs []Result, lim Limits) int {
	const fullLen = 2 + 1 + len(batchFullMsg)
	size := binary.MaxVarintLen32
	for i := range rs {
		if rs[i].Err == nil {
			size += 2 + 8 + binary.MaxVarintLen32 + len(rs[i].Value.Data)
		} else {
			size += fullLen
		}
	}
	return min(size, lim.MaxFrameBytes)
}

// replyStatus returns the status and message a Server answers a Backend's error with: the
// status the error maps to, and its text (cut to MaxMessageBytes) except for StatusNotFound.
func replyStatus(err error) (Status, string) {
	st := statusOf(err)
	if st == StatusNotFound {
		return st, ""
	}
	return st, cutMessage(err.Error())
}

// checkOutgoing checks a value a Server is about to send: StatusTooLarge when it (or, for a
// compressed value, its decoded length) is over lim.MaxValueBytes, StatusInternal when it is
// compressed with a malformed S2 header.
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
