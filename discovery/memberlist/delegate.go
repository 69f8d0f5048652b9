package memberlist

import (
	"log/slog"

	"github.com/hashicorp/memberlist"
)

// delegate advertises the peer address as node metadata and passes every other call on to the
// Delegate of the base configuration, if any.
type delegate struct {
	meta []byte
	next memberlist.Delegate
}

func (d *delegate) NodeMeta(limit int) []byte {
	if len(d.meta) > limit { // New checked against MetaMaxSize; memberlist passes that limit
		return nil
	}
	return d.meta
}

func (d *delegate) NotifyMsg(msg []byte) {
	if d.next != nil {
		d.next.NotifyMsg(msg)
	}
}

func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	if d.next != nil {
		return d.next.GetBroadcasts(overhead, limit)
	}
	return nil
}

func (d *delegate) LocalState(join bool) []byte {
	if d.next != nil {
		return d.next.LocalState(join)
	}
	return nil
}

func (d *delegate) MergeRemoteState(buf []byte, join bool) {
	if d.next != nil {
		d.next.MergeRemoteState(buf, join)
	}
}

// events keeps the Source's member table up to date. memberlist calls it with its node lock held,
// so it only updates the table and wakes the watchers, and never blocks.
type events struct {
	s    *Source
	next memberlist.EventDelegate
}

func (e *events) NotifyJoin(n *memberlist.Node) {
	addr := e.peerAddr(n)
	e.s.log.Debug("member joined", slog.String("member", n.Name), slog.String("gossip", n.Address()), slog.String("peer", addr))
	e.s.set(n.Name, addr)
	if e.next != nil {
		e.next.NotifyJoin(n)
	}
}

func (e *events) NotifyUpdate(n *memberlist.Node) {
	addr := e.peerAddr(n)
	e.s.log.Debug("member updated", slog.String("member", n.Name), slog.String("gossip", n.Address()), slog.String("peer", addr))
	e.s.set(n.Name, addr)
	if e.next != nil {
		e.next.NotifyUpdate(n)
	}
}

func (e *events) NotifyLeave(n *memberlist.Node) {
	e.s.log.Debug("member left", slog.String("member", n.Name), slog.String("gossip", n.Address()))
	e.s.set(n.Name, "")
	if e.next != nil {
		e.next.NotifyLeave(n)
	}
}

// peerAddr returns the groupcache address in n's metadata, or "" (and a warning) if there is none.
func (e *events) peerAddr(n *memberlist.Node) string {
	addr := string(n.Meta)
	if err := checkPeerAddr(addr); err != nil {
		e.s.log.Warn("member without a valid peer address in its metadata: left out",
			slog.String("member", n.Name), slog.String("gossip", n.Address()), slog.String("meta", truncate(addr, 64)), slog.Any("err", err))
		return ""
	}
	return addr
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
