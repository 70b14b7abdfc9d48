package stack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	tcpipstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
)

// This file holds whole TCP connections through the forwarding path, for
// http and https checks with through_vip: where ProbeThrough sends one SYN
// it builds itself, an HTTP request needs a TCP client (retransmissions,
// windows, FIN). That client is a second, private netstack (the "through
// stack") that holds the DIPs but not the VIPs, so that a connection to a
// VIP leaves it instead of looping back. Its one NIC is an IP link
// (throughLink) that hands each packet to the device the way the fast path
// forwards a client's: to the real server's MAC (DR) or inside IPIP or
// IPv6-in-IPv6 to its RIP (TUN). Each connection binds a probe port, which
// names its path; the answers, from VIP:port to DIP:probe port, are taken
// off the director's link by the prober (through.go) and handed to the
// through stack instead of the director's netstack.
//
// The through stack is made at the first such connection and closed with
// the Stack. None of this is on the fast path.

// throughStack is the private netstack of connections through the
// forwarding path.
type throughStack struct {
	s    *tcpipstack.Stack
	link *throughLink

	mu sync.Mutex
	// addrs are the DIPs added to the NIC so far. Guarded by mu.
	addrs map[netip.Addr]bool
}

const throughNIC = 1

var errStackClosed = errors.New("the director's netstack is closed")

// through returns the Stack's through stack, making it at the first call;
// nil once the Stack is closed.
func (st *Stack) through() *throughStack {
	st.throughOnce.Do(func() {
		st.mu.Lock()
		closed := st.throughClosed
		st.mu.Unlock()
		if closed {
			return
		}
		ts := &throughStack{link: &throughLink{probes: &st.probes}, addrs: make(map[netip.Addr]bool)}
		ts.s = tcpipstack.New(tcpipstack.Options{
			NetworkProtocols:   []tcpipstack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol},
			TransportProtocols: []tcpipstack.TransportProtocolFactory{tcp.NewProtocol},
		})
		if err := ts.s.CreateNIC(throughNIC, ts.link); err != nil {
			panic(fmt.Sprintf("through stack: create nic: %v", err)) // a new stack has no NIC 1
		}
		ts.s.SetRouteTable([]tcpip.Route{
			{Destination: subnet(netip.MustParsePrefix("0.0.0.0/0")), NIC: throughNIC},
			{Destination: subnet(netip.MustParsePrefix("::/0")), NIC: throughNIC},
		})
		// Connections are closed with a RST; their ports are lvsd's
		// probe ports, bound one by one.
		tw := tcpip.TCPTimeWaitTimeoutOption(time.Second)
		ts.s.SetTransportProtocolOption(tcp.ProtocolNumber, &tw)
		st.mu.Lock()
		if st.throughClosed {
			// Closed meanwhile: Close did not see it.
			st.mu.Unlock()
			ts.close()
			return
		}
		st.throughS = ts
		st.mu.Unlock()
	})
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.throughS
}

// addDIP makes dip an address of the through stack.
func (ts *throughStack) addDIP(dip netip.Addr) error {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.addrs[dip] {
		return nil
	}
	pa := tcpip.ProtocolAddress{Protocol: protoOf(dip),
		AddressWithPrefix: tcpip.AddressWithPrefix{Address: tcpipAddr(dip), PrefixLen: dip.BitLen()}}
	if err := ts.s.AddProtocolAddress(throughNIC, pa, tcpipstack.AddressProperties{}); err != nil {
		return fmt.Errorf("through stack: add %s: %w", dip, convErr(err))
	}
	ts.addrs[dip] = true
	return nil
}

func (ts *throughStack) close() {
	ts.s.Close()
	ts.s.Wait()
}

// DialThrough opens a TCP connection to vip through the forwarding path to
// the real server rip (tunnel false: DR, to its MAC; true: TUN, inside
// IPIP or IPv6-in-IPv6), from the DIP on the route to rip. The connection
// is closed with a RST. A real server that does not hold the VIP drops the
// SYN (the dial ends with ctx); one without a listener refuses it
// (ErrRefused).
func (st *Stack) DialThrough(ctx context.Context, rip netip.Addr, vip netip.AddrPort, tunnel bool) (net.Conn, error) {
	pf, err := st.pathTo(ctx, rip, vip, tunnel)
	if err != nil {
		return nil, fmt.Errorf("dial %s via %s: %w", vip, rip, err)
	}
	ts := st.through()
	if ts == nil {
		return nil, fmt.Errorf("dial %s via %s: %w", vip, rip, errStackClosed)
	}
	if err := ts.addDIP(pf.src.Addr()); err != nil {
		return nil, fmt.Errorf("dial %s via %s: %w", vip, rip, err)
	}
	port, err := st.probes.openConn(pf, ts.link.deliver)
	if err != nil {
		return nil, fmt.Errorf("dial %s via %s: %w", vip, rip, err)
	}
	pf.src = netip.AddrPortFrom(pf.src.Addr(), port)
	c, err := ts.dial(ctx, pf.src, vip)
	if err != nil {
		st.probes.close(port)
		return nil, fmt.Errorf("dial %s via %s: %w", vip, rip, err)
	}
	return &throughConn{ProbeConn: c, release: func() { st.probes.close(port) }}, nil
}

// dial connects from src (a DIP and a probe port) to dst in the through
// stack, as DialTCPReset does in the director's: a ProbeConn bound to ctx.
func (ts *throughStack) dial(ctx context.Context, src, dst netip.AddrPort) (*ProbeConn, error) {
	return dialProbe(ctx, ts.s, &tcpip.FullAddress{NIC: throughNIC, Addr: tcpipAddr(src.Addr()), Port: src.Port()},
		tcpip.FullAddress{NIC: throughNIC, Addr: tcpipAddr(dst.Addr()), Port: dst.Port()}, protoOf(dst.Addr()))
}

// throughConn releases its probe port when closed.
type throughConn struct {
	*ProbeConn
	once    sync.Once
	release func()
}

func (c *throughConn) Close() error {
	err := c.ProbeConn.Close()
	c.once.Do(c.release)
	return err
}

// throughLink is the through stack's NIC: an IP link (no MAC, no
// resolution) whose packets go out through the director's link along the
// path their source port names, and which receives what the prober hands
// it.
type throughLink struct {
	probes *prober

	mu sync.Mutex
	// disp is the netstack's dispatcher, nil while detached. Guarded by mu.
	disp tcpipstack.NetworkDispatcher
}

var _ tcpipstack.LinkEndpoint = (*throughLink)(nil)

// throughMTU leaves room for the outer header of TUN's encapsulation on a
// 1500-byte link.
const throughMTU = 1500 - header.IPv6MinimumSize

func (l *throughLink) MTU() uint32                                       { return throughMTU }
func (l *throughLink) SetMTU(uint32)                                     {}
func (l *throughLink) MaxHeaderLength() uint16                           { return 0 }
func (l *throughLink) LinkAddress() tcpip.LinkAddress                    { return "" }
func (l *throughLink) SetLinkAddress(tcpip.LinkAddress)                  {}
func (l *throughLink) Capabilities() tcpipstack.LinkEndpointCapabilities { return 0 }
func (l *throughLink) ARPHardwareType() header.ARPHardwareType           { return header.ARPHardwareNone }
func (l *throughLink) AddHeader(*tcpipstack.PacketBuffer)                {}
func (l *throughLink) ParseHeader(*tcpipstack.PacketBuffer) bool         { return true }
func (l *throughLink) SetOnCloseAction(func())                           {}
func (l *throughLink) Wait()                                             {}
func (l *throughLink) Close()                                            {}

func (l *throughLink) Attach(d tcpipstack.NetworkDispatcher) {
	l.mu.Lock()
	l.disp = d
	l.mu.Unlock()
}

func (l *throughLink) IsAttached() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.disp != nil
}

// WritePackets sends each packet along the path of its TCP source port; a
// packet of no open connection (a late RST) is dropped.
func (l *throughLink) WritePackets(pkts tcpipstack.PacketBufferList) (int, tcpip.Error) {
	n := 0
	for _, pkt := range pkts.AsSlice() {
		v := pkt.ToView()
		ip := v.AsSlice()
		if port, ok := tcpSourcePort(ip); ok {
			if pf, ok := l.probes.path(port); ok {
				if pf.link.writeFrame(pf.wrap(ip)) == nil {
					n++
				}
			}
		}
		v.Release()
	}
	return n, nil
}

// deliver hands ip, an IP packet from a real server to a connection of
// the through stack, to it. It does not retain ip.
func (l *throughLink) deliver(ip []byte) {
	l.mu.Lock()
	d := l.disp
	l.mu.Unlock()
	if d == nil {
		return
	}
	proto := header.IPv4ProtocolNumber
	if header.IPVersion(ip) == header.IPv6Version {
		proto = header.IPv6ProtocolNumber
	}
	pkt := tcpipstack.NewPacketBuffer(tcpipstack.PacketBufferOptions{Payload: buffer.MakeWithData(ip)})
	defer pkt.DecRef()
	d.DeliverNetworkPacket(proto, pkt)
}

// tcpSourcePort returns the source port of ip when it is an unfragmented
// TCP segment.
func tcpSourcePort(ip []byte) (uint16, bool) {
	var l4 []byte
	switch header.IPVersion(ip) {
	case header.IPv4Version:
		h := header.IPv4(ip)
		if !h.IsValid(len(ip)) || h.TransportProtocol() != header.TCPProtocolNumber || h.FragmentOffset() != 0 {
			return 0, false
		}
		l4 = ip[h.HeaderLength():]
	case header.IPv6Version:
		h := header.IPv6(ip)
		if !h.IsValid(len(ip)) || tcpip.TransportProtocolNumber(h.NextHeader()) != header.TCPProtocolNumber {
			return 0, false
		}
		l4 = ip[header.IPv6MinimumSize:]
	default:
		return 0, false
	}
	if len(l4) < header.TCPMinimumSize {
		return 0, false
	}
	return header.TCP(l4).SourcePort(), true
}

// wrap returns the frame that carries ip along f's path: behind an
// Ethernet header to f.mac on a TAP, inside an outer IP header to f.rip
// for a TUN real server.
func (f *probeFrame) wrap(ip []byte) []byte {
	b, off := f.outer(len(ip))
	copy(b[off:], ip)
	return b
}
