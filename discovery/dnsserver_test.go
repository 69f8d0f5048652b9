package discovery_test

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// dnsServer is a small authoritative DNS server on 127.0.0.1, over UDP and TCP, that answers A,
// AAAA and SRV questions from a table the test changes at will. It speaks the wire protocol of
// RFC 1035 (and RFC 2782 for SRV) with nothing but the standard library: one question per
// message, answers pointing back to the question's name.
type dnsServer struct {
	udp net.PacketConn
	tcp net.Listener
	wg  sync.WaitGroup

	mu      sync.Mutex
	records map[string][]dnsRecord // by lower-case name with its trailing dot
	rcode   uint16                 // non-zero: replies carry this code and no answer
	rcodeOf uint16                 // non-zero: only replies to questions of this type do
	conns   map[net.Conn]struct{}

	queries atomic.Int64 // questions received
}

// DNS types and codes used here.
const (
	typeA         = 1
	typeAAAA      = 28
	typeSRV       = 33
	classIN       = 1
	rcodeNXDomain = 3
	rcodeServFail = 2
)

type dnsRecord struct {
	typ    uint16
	addr   netip.Addr // A and AAAA
	port   uint16     // SRV
	target string     // SRV, with its trailing dot
}

func recA(ip string) dnsRecord    { return dnsRecord{typ: typeA, addr: netip.MustParseAddr(ip)} }
func recAAAA(ip string) dnsRecord { return dnsRecord{typ: typeAAAA, addr: netip.MustParseAddr(ip)} }
func recSRV(target string, port uint16) dnsRecord {
	return dnsRecord{typ: typeSRV, target: target, port: port}
}

// startDNSServer starts a server that the test's cleanup stops.
func startDNSServer(t *testing.T) *dnsServer {
	t.Helper()
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		udp.Close()
		t.Fatal(err)
	}
	s := &dnsServer{udp: udp, tcp: tcp, records: map[string][]dnsRecord{}, conns: map[net.Conn]struct{}{}}
	s.wg.Add(2)
	go s.serveUDP()
	go s.serveTCP()
	t.Cleanup(s.close)
	return s
}

// set replaces the records of name (a fully qualified name, with its trailing dot); none removes
// the name, whose questions are then answered NXDOMAIN.
func (s *dnsServer) set(name string, recs ...dnsRecord) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(recs) == 0 {
		delete(s.records, strings.ToLower(name))
		return
	}
	s.records[strings.ToLower(name)] = recs
}

// fail makes every reply carry rcode (rcodeServFail...), or answer normally again with 0.
func (s *dnsServer) fail(rcode uint16) { s.failType(0, rcode) }

// failType makes the replies to questions of type qtype (0: all) carry rcode.
func (s *dnsServer) failType(qtype, rcode uint16) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rcode, s.rcodeOf = rcode, qtype
}

// resolver returns a Go resolver that asks this server, over TCP only if tcp is set.
func (s *dnsServer) resolver(tcp bool) *net.Resolver {
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			if tcp || strings.HasPrefix(network, "tcp") {
				return d.DialContext(ctx, "tcp", s.tcp.Addr().String())
			}
			return d.DialContext(ctx, "udp", s.udp.LocalAddr().String())
		},
	}
}

func (s *dnsServer) close() {
	s.udp.Close()
	s.tcp.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *dnsServer) serveUDP() {
	defer s.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		n, from, err := s.udp.ReadFrom(buf)
		if err != nil {
			return // closed
		}
		if reply := s.reply(buf[:n]); reply != nil {
			s.udp.WriteTo(reply, from)
		}
	}
}

func (s *dnsServer) serveTCP() {
	defer s.wg.Done()
	for {
		c, err := s.tcp.Accept()
		if err != nil {
			return // closed
		}
		s.mu.Lock()
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				c.Close()
			}()
			// Each message is preceded by its length on two bytes (RFC 1035 4.2.2).
			var head [2]byte
			for {
				if _, err := io.ReadFull(c, head[:]); err != nil {
					return
				}
				msg := make([]byte, binary.BigEndian.Uint16(head[:]))
				if _, err := io.ReadFull(c, msg); err != nil {
					return
				}
				reply := s.reply(msg)
				if reply == nil {
					return
				}
				out := binary.BigEndian.AppendUint16(nil, uint16(len(reply)))
				if _, err := c.Write(append(out, reply...)); err != nil {
					return
				}
			}
		}()
	}
}

// reply answers the query msg, or returns nil for a message it cannot parse.
func (s *dnsServer) reply(msg []byte) []byte {
	s.queries.Add(1)
	name, qtype, qclass, end, err := parseQuestion(msg)
	if err != nil {
		return nil
	}
	s.mu.Lock()
	rcode := s.rcode
	if s.rcodeOf != 0 && s.rcodeOf != qtype {
		rcode = 0
	}
	recs, found := s.records[name]
	s.mu.Unlock()
	if rcode == 0 && !found {
		rcode = rcodeNXDomain
	}
	var answers []byte
	count := uint16(0)
	if rcode == 0 && qclass == classIN {
		for _, r := range recs {
			if r.typ != qtype {
				continue
			}
			count++
			answers = appendRecord(answers, r)
		}
	}
	flags := binary.BigEndian.Uint16(msg[2:])
	// QR, the query's opcode, AA, the query's RD, RA, rcode.
	flags = 1<<15 | flags&(0xf<<11) | 1<<10 | flags&(1<<8) | 1<<7 | rcode
	out := make([]byte, 0, end+len(answers))
	out = append(out, msg[0], msg[1])               // ID
	out = binary.BigEndian.AppendUint16(out, flags) // flags
	out = binary.BigEndian.AppendUint16(out, 1)     // QDCOUNT
	out = binary.BigEndian.AppendUint16(out, count) // ANCOUNT
	out = binary.BigEndian.AppendUint16(out, 0)     // NSCOUNT
	out = binary.BigEndian.AppendUint16(out, 0)     // ARCOUNT
	out = append(out, msg[12:end]...)               // the question as asked
	return append(out, answers...)
}

// parseQuestion returns the question of a query: its name (lower case, with the trailing dot),
// type and class, and the offset of the end of the question section.
func parseQuestion(msg []byte) (name string, qtype, qclass uint16, end int, err error) {
	if len(msg) < 12 || msg[2]&0x80 != 0 || binary.BigEndian.Uint16(msg[4:]) != 1 {
		return "", 0, 0, 0, errors.New("not a query with one question")
	}
	var b strings.Builder
	off := 12
	for {
		if off >= len(msg) {
			return "", 0, 0, 0, errors.New("truncated name")
		}
		n := int(msg[off])
		off++
		if n == 0 {
			break
		}
		if n&0xc0 != 0 || off+n > len(msg) {
			return "", 0, 0, 0, errors.New("compressed or truncated label")
		}
		b.WriteString(strings.ToLower(string(msg[off : off+n])))
		b.WriteByte('.')
		off += n
	}
	if off+4 > len(msg) {
		return "", 0, 0, 0, errors.New("truncated question")
	}
	name = b.String()
	if name == "" {
		name = "."
	}
	return name, binary.BigEndian.Uint16(msg[off:]), binary.BigEndian.Uint16(msg[off+2:]), off + 4, nil
}

// appendRecord appends r as an answer whose name points to the question's (offset 12).
func appendRecord(b []byte, r dnsRecord) []byte {
	b = append(b, 0xc0, 12)
	b = binary.BigEndian.AppendUint16(b, r.typ)
	b = binary.BigEndian.AppendUint16(b, classIN)
	b = binary.BigEndian.AppendUint32(b, 0) // TTL
	var data []byte
	switch r.typ {
	case typeA, typeAAAA:
		data = r.addr.AsSlice()
	case typeSRV:
		data = binary.BigEndian.AppendUint16(data, 10) // priority
		data = binary.BigEndian.AppendUint16(data, 5)  // weight
		data = binary.BigEndian.AppendUint16(data, r.port)
		for _, label := range strings.Split(strings.TrimSuffix(r.target, "."), ".") {
			if label != "" {
				data = append(data, byte(len(label)))
				data = append(data, label...)
			}
		}
		data = append(data, 0)
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(data)))
	return append(b, data...)
}
