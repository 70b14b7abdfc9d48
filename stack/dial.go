package stack

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// This file holds the health checks' way out: TCP, UDP and ICMP echo from
// the netstack, with the director's address on the route as the source.

// ErrRefused is returned when the peer refused: a TCP RST to a SYN, or an
// ICMP port unreachable answering a UDP datagram.
var ErrRefused = errors.New("connection refused")

// Datagram is a connected datagram endpoint of the netstack (UDP, or an
// ICMP echo socket) for one probe. Its methods are not safe for concurrent
// use; Close releases it.
type Datagram struct {
	ep tcpip.Endpoint
	wq *waiter.Queue
}

// DialUDP opens a UDP endpoint connected to dst. An ICMP port unreachable
// answering what it sends makes its next Exchange fail with ErrRefused.
func (st *Stack) DialUDP(dst netip.AddrPort) (*Datagram, error) {
	return st.dialDatagram(udp.ProtocolNumber, dst.Addr(), dst.Port())
}

func (st *Stack) dialDatagram(tp tcpip.TransportProtocolNumber, dst netip.Addr, port uint16) (*Datagram, error) {
	wq := new(waiter.Queue)
	name := netip.AddrPortFrom(dst, port).String()
	fa := tcpip.FullAddress{Addr: tcpipAddr(dst), Port: port}
	ep, terr := st.s.NewEndpoint(tp, protoOf(dst), wq)
	if terr != nil {
		return nil, fmt.Errorf("dial %s: %w", name, convErr(terr))
	}
	if terr := ep.Connect(fa); terr != nil {
		ep.Close()
		return nil, fmt.Errorf("dial %s: %w", name, convErr(terr))
	}
	return &Datagram{ep: ep, wq: wq}, nil
}

// Exchange sends msg (unless it is empty) and then reads one datagram into
// buf, until ctx ends. It returns the datagram's length (a longer one is
// cut to len(buf)). keep, when not nil, says whether a datagram is the
// awaited reply; others are skipped.
func (d *Datagram) Exchange(ctx context.Context, msg, buf []byte, keep func([]byte) bool) (int, error) {
	entry, ch := waiter.NewChannelEntry(waiter.ReadableEvents | waiter.EventErr)
	d.wq.EventRegister(&entry)
	defer d.wq.EventUnregister(&entry)
	if len(msg) > 0 {
		var r bytesReader
		r.b = msg
		if _, terr := d.ep.Write(&r, tcpip.WriteOptions{}); terr != nil {
			return 0, fmt.Errorf("send: %w", convErr(terr))
		}
	}
	for {
		w := tcpip.SliceWriter(buf)
		res, terr := d.ep.Read(&w, tcpip.ReadOptions{})
		switch terr.(type) {
		case nil:
			n := min(res.Total, len(buf))
			if keep == nil || keep(buf[:n]) {
				return n, nil
			}
			continue
		case *tcpip.ErrWouldBlock:
		case *tcpip.ErrConnectionRefused:
			return 0, ErrRefused
		default:
			return 0, fmt.Errorf("receive: %w", convErr(terr))
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("receive: %w", ctx.Err())
		case <-ch:
		}
	}
}

// Close releases the endpoint.
func (d *Datagram) Close() { d.ep.Close() }

// bytesReader is a tcpip.Payloader over a byte slice.
type bytesReader struct {
	b []byte
	i int
}

func (r *bytesReader) Read(p []byte) (int, error) {
	if r.i >= len(r.b) {
		return 0, errEOF
	}
	n := copy(p, r.b[r.i:])
	r.i += n
	return n, nil
}

func (r *bytesReader) Len() int { return len(r.b) - r.i }

var errEOF = errors.New("EOF")

// pingSeq numbers echo requests, so that a late reply to an earlier probe
// is not taken for the answer to this one.
var pingSeq atomic.Uint32

// Ping sends one ICMP (IPv4) or ICMPv6 echo request with payload to dst
// from the netstack and waits for the matching reply until ctx ends. It
// returns the round-trip time.
func (st *Stack) Ping(ctx context.Context, dst netip.Addr, payload []byte) (time.Duration, error) {
	tp, hl := icmp.ProtocolNumber4, header.ICMPv4MinimumSize
	echo, reply := uint8(header.ICMPv4Echo), uint8(header.ICMPv4EchoReply)
	if !dst.Unmap().Is4() {
		tp, hl = icmp.ProtocolNumber6, header.ICMPv6EchoMinimumSize
		echo, reply = uint8(header.ICMPv6EchoRequest), uint8(header.ICMPv6EchoReply)
	}
	d, err := st.dialDatagram(tp, dst, 0)
	if err != nil {
		return 0, fmt.Errorf("ping: %w", err)
	}
	defer d.Close()
	seq := uint16(pingSeq.Add(1))
	msg := make([]byte, hl+len(payload))
	msg[0] = echo
	// Bytes 4..5 (the identifier) are the endpoint's; 6..7 the sequence.
	msg[6], msg[7] = byte(seq>>8), byte(seq)
	copy(msg[hl:], payload)
	buf := make([]byte, len(msg)+64)
	start := time.Now()
	_, err = d.Exchange(ctx, msg, buf, func(b []byte) bool {
		return len(b) >= hl && b[0] == reply && b[6] == byte(seq>>8) && b[7] == byte(seq)
	})
	if err != nil {
		return 0, fmt.Errorf("ping %s: %w", dst, err)
	}
	return time.Since(start), nil
}
