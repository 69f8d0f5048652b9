package peer

import "github.com/typedcache/groupcache/internal/wire"

// The protocol's vocabulary, defined with the frames in an internal package and named here, as
// aliases, for the users of Client, Server and Backend (docs/protocol.md describes the bytes).

// Value is a value as it travels, maybe compressed; Result the answer for one key of a batch;
// Limits what one side accepts and sends (WithLimits).
type (
	Value  = wire.Value
	Result = wire.Result
	Limits = wire.Limits
)

// Op is the operation of a request; Status what a peer answered; Error the error type of this
// package (every error is one), read with StatusOf.
type (
	Op     = wire.Op
	Status = wire.Status
	Error  = wire.Error
)

// Operations (docs/protocol.md, "Operations").
const (
	OpGet      = wire.OpGet      // the value of a key, which the owner loads if it must
	OpRemove   = wire.OpRemove   // drop keys; an absent key is not an error
	OpSet      = wire.OpSet      // store a value
	OpGetMany  = wire.OpGetMany  // the values of several keys: one entry per key, in order
	OpPeek     = wire.OpPeek     // the value of a key only if the peer holds it; never a load
	OpClear    = wire.OpClear    // drop every entry of a cache, adopting a generation
	OpPeekMany = wire.OpPeekMany // the batch form of OpPeek
	OpOffer    = wire.OpOffer    // a value handed over to its next owner, which may decline it
)

// Statuses of a response or a batch entry; every status but StatusOK carries no value, only a
// message (docs/protocol.md, "Statuses").
const (
	StatusOK           = wire.StatusOK           // the response carries the value
	StatusNotFound     = wire.StatusNotFound     // the key does not exist (the owner's loader said so)
	StatusUnknownCache = wire.StatusUnknownCache // the owner has no cache of that name
	StatusTooLarge     = wire.StatusTooLarge     // the value exceeds the owner's (or this side's) limits
	StatusOverloaded   = wire.StatusOverloaded   // the owner serves as many requests as it allows
	StatusInternal     = wire.StatusInternal     // the owner failed to produce the value
	StatusBadRequest   = wire.StatusBadRequest   // the request was malformed or over the owner's limits
	StatusBadVersion   = wire.StatusBadVersion   // the frame's version is not the owner's
	StatusForbidden    = wire.StatusForbidden    // not authenticated, or not authorized
	StatusLeaving      = wire.StatusLeaving      // the peer is shutting down
)

// Sentinel errors, matched with errors.Is: failures of the exchange itself (what a peer answered
// is an *Error's Status). ErrProtocol: a peer sent malformed or unexpected bytes. ErrUnavailable:
// a network-level failure (could not connect, a broken connection, a timeout, the caller's
// context ended, a closed Client): the caller may fall back. ErrInvalidOption: NewServer or
// NewClient was given an invalid option or argument.
var (
	ErrProtocol      = wire.Sentinels.Protocol
	ErrUnavailable   = wire.Sentinels.Unavailable
	ErrInvalidOption = wire.Sentinels.InvalidOption
)

// StatusOf returns the Status of the first *Error in err's chain that has one, or StatusOK (for
// nil, ErrUnavailable, ErrProtocol and errors of other packages).
func StatusOf(err error) Status { return wire.StatusOf(err) }

// Compress returns raw as a Value, compressed with S2 when len(raw) >= threshold (0 means
// DefaultCompressThreshold, a negative one never) and that makes it smaller; an uncompressed
// Value aliases raw. An owner compresses a value once and serves the result many times.
func Compress(raw []byte, threshold int) Value { return wire.Compress(raw, threshold) }

// Constants of the protocol: its version and upgrade token, the requests in flight on one
// connection, the inflation bound of a compressed value, Compress's default threshold, and the
// longest trace context a request carries (WithTraceContext).
const (
	Version                  = wire.Version
	UpgradeToken             = wire.UpgradeToken
	MaxConnRequests          = wire.MaxConnRequests
	MaxInflation             = wire.MaxInflation
	DefaultCompressThreshold = wire.DefaultCompressThreshold
	MaxTraceBytes            = wire.MaxTraceBytes
)

// Default limits (see Limits): of a key, of a value (decoded), of a cache name, of the keys of a
// Remove, GetMany or PeekMany.
const (
	DefaultMaxKeyBytes   = wire.DefaultMaxKeyBytes
	DefaultMaxValueBytes = wire.DefaultMaxValueBytes
	DefaultMaxCacheName  = wire.DefaultMaxCacheName
	DefaultMaxBatchKeys  = wire.DefaultMaxBatchKeys
)
