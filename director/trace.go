package director

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/lvsd/lvsd/capture"
	"github.com/lvsd/lvsd/control"
	"github.com/lvsd/lvsd/forward"
	"github.com/lvsd/lvsd/lvs"
	"github.com/lvsd/lvsd/persist"
	"github.com/lvsd/lvsd/stack"
)

// tracer is a live trace: the next n frames that match its filter, as
// read, are explained. want and record run on reader goroutines; the
// explanation is written by the control plane (Trace.Next), not by them.
type tracer struct {
	f    capture.Filter
	left atomic.Int64   // frames still to take
	recs chan *traceRec // taken frames; buffered for all of them
}

// traceRec is what a reader keeps of a traced frame.
type traceRec struct {
	when          time.Time
	iface         string
	ethernet      bool
	before, after []byte
	verdict       forward.Verdict
	drop          forward.DropReason
}

// want reports whether a frame is to be traced, and takes its place.
func (t *tracer) want(frame []byte, ethernet bool) bool {
	if t.left.Load() <= 0 || !t.f.Match(frame, ethernet) {
		return false
	}
	return t.left.Add(-1) >= 0
}

// record keeps a traced frame's outcome; it never blocks (the channel
// has room for every frame the tracer takes).
func (t *tracer) record(iface string, ethernet bool, before, after []byte, v forward.Verdict, proc stack.Processor) {
	r := &traceRec{when: time.Now(), iface: iface, ethernet: ethernet, before: append([]byte(nil), before...), verdict: v}
	switch v {
	case forward.Transmit, forward.AwaitNeighbor:
		r.after = append([]byte(nil), after[:min(len(after), stack.TraceBytes)]...)
	case forward.Drop:
		if w, ok := proc.(interface{ LastDrop() forward.DropReason }); ok {
			r.drop = w.LastDrop()
		}
	}
	select {
	case t.recs <- r:
	default:
	}
}

// Trace is a live trace in progress (control.TraceSession).
type Trace struct {
	d    *Director
	t    *tracer
	stop func()
}

// Next waits for the next traced frame and returns its explanation.
func (tr *Trace) Next(ctx context.Context) (string, error) {
	select {
	case r := <-tr.t.recs:
		return tr.d.explain(r), nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// Stop disarms the trace; call it once.
func (tr *Trace) Stop() { tr.stop() }

// ErrTraceBusy is StartTrace's answer while another trace runs.
var ErrTraceBusy = errors.New("another trace is running")

// StartTrace arms a trace of the next n frames matching filter on every
// interface (control.Tracer). Until it is armed, and once it has taken n
// frames, a reader pays one atomic load per frame.
func (d *Director) StartTrace(filter string, n int) (control.TraceSession, error) {
	f, err := capture.ParseFilter(filter)
	if err != nil {
		return nil, err
	}
	if n < 1 || n > 1000 {
		return nil, fmt.Errorf("count %d: not in 1..1000", n)
	}
	d.obs.tapMu.Lock()
	defer d.obs.tapMu.Unlock()
	if d.obs.trace.Load() != nil {
		return nil, ErrTraceBusy
	}
	t := &tracer{f: f, recs: make(chan *traceRec, n)}
	t.left.Store(int64(n))
	d.obs.trace.Store(t)
	d.retap()
	return &Trace{d: d, t: t, stop: func() {
		d.obs.tapMu.Lock()
		defer d.obs.tapMu.Unlock()
		d.obs.trace.Store(nil)
		d.retap()
	}}, nil
}

// decoded is a frame's headers as a trace prints them.
type decoded struct {
	eth      *layers.Ethernet
	ip4      *layers.IPv4
	ip6      *layers.IPv6
	inner    *decoded // the packet inside IPIP
	proto    lvs.Proto
	src, dst netip.Addr
	sport    uint16
	dport    uint16
	flags    string
}

func decode(b []byte, ethernet bool) *decoded {
	first := layers.LayerTypeIPv4
	if ethernet {
		first = layers.LayerTypeEthernet
	} else if len(b) > 0 && b[0]>>4 == 6 {
		first = layers.LayerTypeIPv6
	}
	p := gopacket.NewPacket(b, first, gopacket.DecodeOptions{Lazy: false, NoCopy: true})
	d := &decoded{}
	d.eth, _ = p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	// The first IP header is the outer one; gopacket decodes IPIP's inner
	// header as a second IPv4 layer.
	var ips []gopacket.Layer
	for _, l := range p.Layers() {
		if l.LayerType() == layers.LayerTypeIPv4 || l.LayerType() == layers.LayerTypeIPv6 {
			ips = append(ips, l)
		}
	}
	if len(ips) == 0 {
		return d
	}
	setIP(d, ips[0])
	if len(ips) > 1 {
		d.inner = &decoded{}
		setIP(d.inner, ips[1])
		fillL4(d.inner, p)
		return d
	}
	fillL4(d, p)
	return d
}

func setIP(d *decoded, l gopacket.Layer) {
	switch ip := l.(type) {
	case *layers.IPv4:
		d.ip4 = ip
		d.src, _ = netip.AddrFromSlice(ip.SrcIP.To4())
		d.dst, _ = netip.AddrFromSlice(ip.DstIP.To4())
		d.proto = lvs.Proto(ip.Protocol)
	case *layers.IPv6:
		d.ip6 = ip
		d.src, _ = netip.AddrFromSlice(ip.SrcIP)
		d.dst, _ = netip.AddrFromSlice(ip.DstIP)
		d.proto = lvs.Proto(ip.NextHeader)
	}
}

func fillL4(d *decoded, p gopacket.Packet) {
	if tcp, ok := p.Layer(layers.LayerTypeTCP).(*layers.TCP); ok {
		d.sport, d.dport = uint16(tcp.SrcPort), uint16(tcp.DstPort)
		for _, f := range []struct {
			on bool
			c  string
		}{{tcp.SYN, "S"}, {tcp.FIN, "F"}, {tcp.RST, "R"}, {tcp.PSH, "P"}, {tcp.ACK, "."}} {
			if f.on {
				d.flags += f.c
			}
		}
		d.flags = " [" + d.flags + "]"
	}
	if udp, ok := p.Layer(layers.LayerTypeUDP).(*layers.UDP); ok {
		d.sport, d.dport = uint16(udp.SrcPort), uint16(udp.DstPort)
	}
}

func (d *decoded) String() string {
	var b strings.Builder
	if d.eth != nil {
		fmt.Fprintf(&b, "%v > %v, ", d.eth.SrcMAC, d.eth.DstMAC)
	}
	if !d.src.IsValid() {
		b.WriteString("not IP")
		return b.String()
	}
	if d.inner != nil {
		fmt.Fprintf(&b, "IPIP %v > %v: %v", d.src, d.dst, d.inner)
		return b.String()
	}
	proto := map[lvs.Proto]string{6: "TCP", 17: "UDP", 1: "ICMP", 58: "ICMPv6"}[d.proto]
	if proto == "" {
		proto = fmt.Sprintf("proto %d", d.proto)
	}
	if d.sport != 0 || d.dport != 0 {
		fmt.Fprintf(&b, "%s %v > %v%s", proto, netip.AddrPortFrom(d.src, d.sport), netip.AddrPortFrom(d.dst, d.dport), d.flags)
	} else {
		fmt.Fprintf(&b, "%s %v > %v", proto, d.src, d.dst)
	}
	return b.String()
}

// explain writes what happened to a traced frame: the service matched,
// the connection, the persistence template, the scheduler's inputs and
// decision, the rewrite, or the drop and its reason. The connection, the
// template and the inputs are read when explain runs, just after the
// frame was processed (the decision already counted in them).
func (d *Director) explain(r *traceRec) string {
	var b strings.Builder
	in := decode(r.before, r.ethernet)
	fmt.Fprintf(&b, "%s %s: %v\n", r.when.Format("15:04:05.000000"), r.iface, in)
	switch r.verdict {
	case forward.Drop:
		fmt.Fprintf(&b, "  verdict:    drop, reason %s\n", r.drop)
	case forward.ToStack:
		fmt.Fprintf(&b, "  verdict:    to lvsd's netstack (not a packet of a virtual service)\n")
	}
	if !in.src.IsValid() {
		return b.String()
	}
	tup := lvs.Tuple{Src: lvs.AddrFromNetip(in.src), Dst: lvs.AddrFromNetip(in.dst), SPort: in.sport, DPort: in.dport, Proto: in.proto}
	e, reply := d.table.Lookup(&tup)

	d.mu.Lock()
	rs := d.services[lvs.ServiceKey{Addr: tup.Dst, Port: tup.DPort, Proto: tup.Proto}]
	if rs == nil {
		rs = d.services[lvs.ServiceKey{Addr: tup.Dst, Port: 0, Proto: tup.Proto}]
	}
	if rs == nil && reply && e != nil {
		rs = d.services[lvs.ServiceKey{Addr: e.In.Dst, Port: e.In.DPort, Proto: e.In.Proto}]
		if rs == nil {
			rs = d.services[lvs.ServiceKey{Addr: e.In.Dst, Port: 0, Proto: e.In.Proto}]
		}
	}
	d.mu.Unlock()

	if rs != nil {
		writeServiceLine(&b, rs)
	} else if r.verdict != forward.ToStack {
		b.WriteString("  service:    none matches\n")
	}
	if e != nil {
		dir := "client to real server"
		if reply {
			dir = "reply, real server to client"
		}
		fmt.Fprintf(&b, "  connection: %s, %s, expires in %v, real server %v (%s)\n",
			e.State(), dir, e.Expires(d.table.Now()).Round(time.Second), e.Dest, e.Method)
	} else if rs != nil {
		b.WriteString("  connection: none (one-packet scheduling, or dropped before one was made)\n")
	}
	// A TCP segment other than a SYN follows its connection: the
	// scheduler is not asked.
	scheduled := rs != nil && !reply && (in.proto != 6 || in.flags == " [S]")
	if rs != nil && !reply && !scheduled && e != nil {
		fmt.Fprintf(&b, "  scheduler:  not asked: the packet follows its connection\n")
	}
	if scheduled {
		if p := rs.svc.Persist; p != nil {
			k := p.Key(&tup)
			found := false
			d.persist.Range(func(i persist.Info) bool {
				if lvs.AddrFromNetip(i.Client) == k.Client && lvs.AddrFromNetip(i.VAddr) == k.VAddr && i.VPort == k.VPort && i.Proto == k.Proto {
					fmt.Fprintf(&b, "  template:   client %v -> %v, %d connections, expires in %v\n",
						i.Client, i.Dest, i.Controlled, time.Duration(i.Expires).Round(time.Second))
					found = true
					return false
				}
				return true
			})
			if !found {
				b.WriteString("  template:   none\n")
			}
		}
		b.WriteString("  scheduler inputs (after the decision):\n")
		for _, dst := range rs.svc.Dests {
			fmt.Fprintf(&b, "    %-24v %-6s weight %d active %d inactive %d available %v overloaded %v\n",
				dst, dst.Method, dst.Weight.Load(), dst.ActiveConns.Load(), dst.InactiveConns.Load(),
				dst.Available.Load(), dst.Overloaded.Load())
		}
		if e != nil && (r.verdict == forward.Transmit || r.verdict == forward.AwaitNeighbor) {
			fmt.Fprintf(&b, "  decision:   %v (%s)\n", e.Dest, e.Method)
		}
	}
	if r.verdict == forward.Transmit {
		out := decode(r.after, r.ethernet)
		fmt.Fprintf(&b, "  rewrite:    before %v\n", in)
		fmt.Fprintf(&b, "              after  %v\n", out)
		b.WriteString("  verdict:    transmit\n")
	}
	if r.verdict == forward.AwaitNeighbor {
		fmt.Fprintf(&b, "  rewrite:    before %v\n", in)
		fmt.Fprintf(&b, "              after  %v\n", decode(r.after, r.ethernet))
		b.WriteString("  verdict:    wait for the real server's MAC, being resolved (sent when resolved, dropped as no-neighbor if resolution fails)\n")
	}
	return b.String()
}

// writeServiceLine writes the "service:" line of a trace for rs.
func writeServiceLine(b *strings.Builder, rs *runService) {
	sc := rs.conf
	fmt.Fprintf(b, "  service:    %s %v scheduler %s", strings.ToUpper(sc.Proto.String()), netip.AddrPortFrom(sc.Addr, sc.Port), sc.Scheduler)
	if p := rs.svc.Persist; p != nil {
		fmt.Fprintf(b, ", persistent %v", time.Duration(p.Timeout))
	}
	b.WriteString("\n")
}
