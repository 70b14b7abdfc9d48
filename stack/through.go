package stack

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// This file holds the health checks through the forwarding path (DR and
// TUN real servers, as Seesaw's DSR and TUN check modes): a TCP half-open
// probe that lvsd builds itself. The VIP is an address of the netstack, so
// a netstack socket to it would loop back; instead a SYN from a DIP and a
// probe port to VIP:port is written to the device as the fast path would
// forward a client's SYN: to the real server's MAC (DR) or inside IPIP or
// IPv6-in-IPv6 to its RIP (TUN). The real server answers as it answers
// clients, straight to the "client" (here the DIP): a SYN-ACK passes (lvsd
// then sends a RST), a RST or nothing fails. So a DR server that lost the
// VIP on its loopback fails, where a check of its RIP would pass.
//
// The answer, from VIP:port to DIP:probe port, reaches the netstack's side
// of the link (it is for a DIP, not a VIP); the link hands frames to the
// probe ports to the prober instead of the netstack, which would drop them
// (their source is one of its own addresses). That test is on the
// netstack's path, which copies every frame anyway, never on the fast path.

// Probe ports: the netstack's ephemeral ports stop below them (New), so
// that no connection of the netstack uses one.
const (
	ProbePortFirst = 64512
	ProbePortCount = 1024
)

// ErrNoNeighbor is returned when the MAC of the real server (or of the
// gateway toward it) was not resolved before the probe's deadline.
var ErrNoNeighbor = errors.New("neighbour not resolved yet")

// probeReply is the TCP answer to a probe: its source, flags and
// acknowledgement number.
type probeReply struct {
	src   netip.AddrPort
	flags header.TCPFlags
	seq   uint32
	ack   uint32
}

// prober matches answers to the probes waiting for them.
type prober struct {
	mu   sync.Mutex
	next uint16                     // guarded by mu: the next probe port to try, as an offset
	wait map[uint16]chan probeReply // guarded by mu: by probe port
	// conns are the probe ports of connections through the forwarding
	// path (through_conn.go): their path, and where their answers go.
	// Guarded by mu.
	conns map[uint16]*connPath
}

// connPath is the path of one connection through the forwarding path and
// the receiver of its answers (the through stack).
type connPath struct {
	pf      probeFrame
	deliver func(ip []byte)
}

// openConn reserves a probe port for a connection along pf.
func (p *prober) openConn(pf probeFrame, deliver func([]byte)) (uint16, error) {
	port, _, err := p.open()
	if err != nil {
		return 0, err
	}
	p.mu.Lock()
	if p.conns == nil {
		p.conns = make(map[uint16]*connPath)
	}
	pf.src = netip.AddrPortFrom(pf.src.Addr(), port)
	p.conns[port] = &connPath{pf: pf, deliver: deliver}
	p.mu.Unlock()
	return port, nil
}

// path returns the path of the connection on probe port port.
func (p *prober) path(port uint16) (probeFrame, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.conns[port]
	if c == nil {
		return probeFrame{}, false
	}
	return c.pf, true
}

// open reserves a probe port and the channel its answers arrive on.
func (p *prober) open() (uint16, chan probeReply, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.wait == nil {
		p.wait = make(map[uint16]chan probeReply)
	}
	for range ProbePortCount {
		port := ProbePortFirst + p.next
		p.next = (p.next + 1) % ProbePortCount
		if _, busy := p.wait[port]; !busy {
			ch := make(chan probeReply, 4)
			p.wait[port] = ch
			return port, ch, nil
		}
	}
	return 0, nil, errors.New("every probe port is in use")
}

func (p *prober) close(port uint16) {
	p.mu.Lock()
	delete(p.wait, port)
	delete(p.conns, port)
	p.mu.Unlock()
}

// take hands frame (Ethernet when ethernet) to the probe waiting for it
// when it is TCP to a probe port, and reports whether it did so: the frame
// is then the prober's, not the netstack's. An answer nobody waits for
// (late, or forged) is dropped. It does not retain frame.
func (p *prober) take(frame []byte, ethernet bool) bool {
	b := frame
	if ethernet {
		if len(b) < header.EthernetMinimumSize {
			return false
		}
		switch header.Ethernet(b).Type() {
		case header.IPv4ProtocolNumber, header.IPv6ProtocolNumber:
		default:
			return false
		}
		b = b[header.EthernetMinimumSize:]
	}
	var (
		src netip.Addr
		l4  []byte
	)
	switch header.IPVersion(b) {
	case header.IPv4Version:
		ip := header.IPv4(b)
		if !ip.IsValid(len(b)) || ip.TransportProtocol() != header.TCPProtocolNumber || ip.FragmentOffset() != 0 || ip.More() {
			return false
		}
		src = netip.AddrFrom4([4]byte(ip[12:16]))
		b = b[:ip.TotalLength()]
		l4 = b[ip.HeaderLength():]
	case header.IPv6Version:
		ip := header.IPv6(b)
		if !ip.IsValid(len(b)) || tcpip.TransportProtocolNumber(ip.NextHeader()) != header.TCPProtocolNumber {
			return false
		}
		src = netip.AddrFrom16([16]byte(ip[8:24]))
		b = b[:header.IPv6MinimumSize+int(ip.PayloadLength())]
		l4 = b[header.IPv6MinimumSize:]
	default:
		return false
	}
	if len(l4) < header.TCPMinimumSize {
		return false
	}
	t := header.TCP(l4)
	port := t.DestinationPort()
	if port < ProbePortFirst || port-ProbePortFirst >= ProbePortCount {
		return false
	}
	r := probeReply{src: netip.AddrPortFrom(src, t.SourcePort()), flags: t.Flags(), seq: t.SequenceNumber(), ack: t.AckNumber()}
	p.mu.Lock()
	ch := p.wait[port]
	conn := p.conns[port]
	p.mu.Unlock()
	if conn != nil {
		// A segment of a whole connection: the IP packet to its netstack
		// (which checks it), on this goroutine as the director's link
		// delivers to the director's.
		conn.deliver(b)
		return true
	}
	if ch != nil {
		select {
		case ch <- r:
		default: // the probe has its answer already
		}
	}
	return true
}

// ProbeThrough checks vip through the forwarding path to the real server
// rip: a SYN from the DIP on the route to rip, to vip, sent to rip's MAC
// (tunnel false: DR) or inside an IPIP or IPv6-in-IPv6 packet to rip
// (tunnel true). It returns nil when vip answers with a SYN-ACK (and then
// resets the half-open connection), ErrRefused for a RST, and ctx's error
// when nothing came back. The SYN is sent again every second while ctx
// lasts, as a TCP client would.
func (st *Stack) ProbeThrough(ctx context.Context, rip netip.Addr, vip netip.AddrPort, tunnel bool) error {
	pb, err := st.pathTo(ctx, rip, vip, tunnel)
	if err != nil {
		return fmt.Errorf("probe %s via %s: %w", vip, rip, err)
	}
	port, ch, err := st.probes.open()
	if err != nil {
		return fmt.Errorf("probe %s via %s: %w", vip, rip, err)
	}
	defer st.probes.close(port)
	pb.src = netip.AddrPortFrom(pb.src.Addr(), port)
	seq := rand.Uint32()
	if err := pb.send(header.TCPFlagSyn, seq, 0); err != nil {
		return fmt.Errorf("probe %s via %s: %w", vip, rip, err)
	}
	resend := time.NewTicker(time.Second)
	defer resend.Stop()
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("probe %s via %s: %w", vip, rip, ctx.Err())
		case <-resend.C:
			if err := pb.send(header.TCPFlagSyn, seq, 0); err != nil {
				return fmt.Errorf("probe %s via %s: %w", vip, rip, err)
			}
		case a := <-ch:
			if a.src != vip || a.ack != seq+1 {
				continue // not the answer to this SYN
			}
			switch {
			case a.flags&header.TCPFlagRst != 0:
				return fmt.Errorf("probe %s via %s: %w", vip, rip, ErrRefused)
			case a.flags&(header.TCPFlagSyn|header.TCPFlagAck) == header.TCPFlagSyn|header.TCPFlagAck:
				// Half-open: the server forgets it at once.
				pb.send(header.TCPFlagRst, seq+1, 0)
				return nil
			}
		}
	}
}

// pathTo returns the frame builder of a probe to vip through the forwarding
// path to rip (its source port left 0): the link and DIP of the route to
// rip, and on a TAP the MAC of rip's next hop, waited for within ctx.
func (st *Stack) pathTo(ctx context.Context, rip netip.Addr, vip netip.AddrPort, tunnel bool) (probeFrame, error) {
	r, terr := st.s.FindRoute(0, tcpip.Address{}, tcpipAddr(rip), protoOf(rip), false)
	if terr != nil {
		return probeFrame{}, fmt.Errorf("no route: %w", convErr(terr))
	}
	nic := NICID(r.NICID())
	la := r.LocalAddress()
	dip, ok := netip.AddrFromSlice(la.AsSlice())
	r.Release()
	if !ok {
		return probeFrame{}, errors.New("no local address")
	}
	st.mu.Lock()
	info := st.nics[nic]
	st.mu.Unlock()
	if info == nil {
		return probeFrame{}, fmt.Errorf("unknown NIC %d", nic)
	}
	var mac [6]byte
	if info.ethernet {
		m, err := st.waitNeighbor(ctx, nic, rip)
		if err != nil {
			return probeFrame{}, err
		}
		mac = m
	}
	if tunnel && dip.Is4() != vip.Addr().Is4() {
		return probeFrame{}, errors.New("the inner packet needs a DIP of the VIP's family")
	}
	return probeFrame{
		link: info.link, ethernet: info.ethernet, mac: mac, tunnel: tunnel, rip: rip,
		src: netip.AddrPortFrom(dip, 0), dst: vip,
	}, nil
}

// waitNeighbor returns the MAC of rip's next hop on NIC nic, waiting while
// it is being resolved (as a netstack connection waits for ARP or NDP) until
// ctx ends: ErrNoNeighbor then.
func (st *Stack) waitNeighbor(ctx context.Context, nic NICID, rip netip.Addr) ([6]byte, error) {
	slot := st.Neighbor(nic, rip)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if m, ok := slot.Load(); ok {
			return m, nil
		}
		select {
		case <-ctx.Done():
			return [6]byte{}, ErrNoNeighbor
		case <-tick.C:
		}
	}
}

// probeFrame builds and writes the frames of one probe.
type probeFrame struct {
	link     *Link
	ethernet bool
	mac      [6]byte
	tunnel   bool
	rip      netip.Addr
	src, dst netip.AddrPort
}

// tcpProbeLen is the TCP header of a probe: 20 bytes and an MSS option.
const tcpProbeLen = header.TCPMinimumSize + 4

func ipHeaderLen(a netip.Addr) int {
	if a.Is4() {
		return header.IPv4MinimumSize
	}
	return header.IPv6MinimumSize
}

// send writes one TCP segment with flags, seq and ack.
func (f *probeFrame) send(flags header.TCPFlags, seq, ack uint32) error {
	return f.link.writeFrame(f.build(flags, seq, ack))
}

// build returns the frame of one TCP segment with flags, seq and ack.
func (f *probeFrame) build(flags header.TCPFlags, seq, ack uint32) []byte {
	b, off := f.outer(ipHeaderLen(f.dst.Addr()) + tcpProbeLen)
	off += putIP(b[off:], f.src.Addr(), f.dst.Addr(), header.TCPProtocolNumber, tcpProbeLen)
	t := header.TCP(b[off:])
	t.Encode(&header.TCPFields{
		SrcPort: f.src.Port(), DstPort: f.dst.Port(), SeqNum: seq, AckNum: ack,
		DataOffset: tcpProbeLen, Flags: flags, WindowSize: 65535,
	})
	// MSS option: the smallest every path carries.
	t[20], t[21] = 2, 4
	binary.BigEndian.PutUint16(t[22:], 536)
	sum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, tcpipAddr(f.src.Addr()), tcpipAddr(f.dst.Addr()), tcpProbeLen)
	t.SetChecksum(^t.CalculateChecksum(sum))
	return b
}

// outer returns a frame with room for an inner IP packet of inner bytes
// after the headers of f's path, which it writes: an Ethernet header to
// f.mac on a TAP, an outer IP header to f.rip for a TUN real server. off
// is where the inner packet goes.
func (f *probeFrame) outer(inner int) (b []byte, off int) {
	n := 0
	if f.ethernet {
		n += header.EthernetMinimumSize
	}
	if f.tunnel {
		n += ipHeaderLen(f.rip)
	}
	b = make([]byte, n+inner)
	if f.ethernet {
		typ := header.IPv4ProtocolNumber
		if !f.tunnel && !f.dst.Addr().Is4() || f.tunnel && !f.rip.Is4() {
			typ = header.IPv6ProtocolNumber
		}
		header.Ethernet(b).Encode(&header.EthernetFields{
			SrcAddr: f.link.LinkAddress(), DstAddr: tcpip.LinkAddress(f.mac[:]), Type: typ,
		})
		off += header.EthernetMinimumSize
	}
	if f.tunnel {
		proto := tcpip.TransportProtocolNumber(4) // IPIP
		if !f.dst.Addr().Is4() {
			proto = 41 // IPv6 inside
		}
		off += putIP(b[off:], f.src.Addr(), f.rip, proto, inner)
	}
	return b, off
}

// putIP writes an IPv4 or IPv6 header from src to dst carrying payload
// bytes of proto, and returns its length.
func putIP(b []byte, src, dst netip.Addr, proto tcpip.TransportProtocolNumber, payload int) int {
	if dst.Is4() {
		ip := header.IPv4(b)
		ip.Encode(&header.IPv4Fields{
			TotalLength: uint16(header.IPv4MinimumSize + payload), TTL: 64, Protocol: uint8(proto),
			SrcAddr: tcpipAddr(src), DstAddr: tcpipAddr(dst), Flags: header.IPv4FlagDontFragment,
		})
		ip.SetChecksum(^ip.CalculateChecksum())
		return header.IPv4MinimumSize
	}
	header.IPv6(b).Encode(&header.IPv6Fields{
		PayloadLength: uint16(payload), TransportProtocol: proto, HopLimit: 64,
		SrcAddr: tcpipAddr(src), DstAddr: tcpipAddr(dst),
	})
	return header.IPv6MinimumSize
}
