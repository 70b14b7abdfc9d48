package director

import (
	"fmt"
	"strings"
	"time"

	"github.com/lvsd/lvsd/conntrack"
	"github.com/lvsd/lvsd/control"
	"github.com/lvsd/lvsd/forward"
	"github.com/lvsd/lvsd/lvs"
)

// TracePacket explains the packet p describes (control.PacketTracer): it
// builds the frame as p's interface would carry it, runs it through that
// interface's fast path in a dry run (forward.Forwarder.Explain: the same
// decisions as for a real frame, none committed) and writes the service,
// the connection, the template, the scheduler's inputs and choice, the
// rewrite or the drop. Nothing is sent.
func (d *Director) TracePacket(p control.PacketDesc) (string, error) {
	proto := lvs.TCP
	if p.Proto == "udp" {
		proto = lvs.UDP
	}
	name := p.Iface
	if name == "" {
		name = d.packetIface(lvs.ServiceKey{Addr: lvs.AddrFromNetip(p.Dst.Addr()), Port: p.Dst.Port(), Proto: proto})
	}
	ifc := d.ifaces[name]
	if ifc == nil {
		return "", &control.PacketError{Token: name, Msg: "no such interface"}
	}
	frame, err := ifc.fw.BuildFrame(&forward.Described{Proto: proto, Src: p.Src, Dst: p.Dst, Flags: p.Flags})
	if err != nil {
		return "", &control.PacketError{Msg: err.Error()}
	}
	x := ifc.fw.Explain(frame)
	return d.explainDry(name, ifc.cfg.Type.Ethernet(), x), nil
}

// packetIface is the interface a described packet to k arrives on when
// the operator named none: its service's, else the first.
func (d *Director) packetIface(k lvs.ServiceKey) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	rs := d.services[k]
	if rs == nil {
		k.Port = 0
		rs = d.services[k]
	}
	if rs == nil {
		for _, s := range d.services {
			if s.svc != nil && s.svc.Key.Addr == k.Addr && s.svc.Key.Proto == k.Proto && s.svc.Key.Port == 0 {
				rs = s
				break
			}
		}
	}
	if rs != nil && rs.conf.Interface != "" {
		return rs.conf.Interface
	}
	if len(d.running) > 0 {
		return d.running[0].Name
	}
	return ""
}

// explainDry writes a dry run's explanation, in the shape of a live
// trace's (explain).
func (d *Director) explainDry(iface string, ethernet bool, x *forward.Explanation) string {
	var b strings.Builder
	in := decode(x.Before, ethernet)
	fmt.Fprintf(&b, "described packet on %s: %v\n", iface, in)
	if x.Unsupported {
		b.WriteString("  verdict:    not explained: only TCP and UDP packets are\n")
		return b.String()
	}

	var rs *runService
	d.mu.Lock()
	for _, s := range d.services {
		if x.Service != nil && s.svc == x.Service {
			rs = s
			break
		}
	}
	d.mu.Unlock()
	if rs != nil {
		writeServiceLine(&b, rs)
	} else {
		b.WriteString("  service:    none matches\n")
	}

	switch {
	case x.Found:
		e := &x.Conn
		dir := "client to real server"
		if x.Reply {
			dir = "reply, real server to client"
		}
		fmt.Fprintf(&b, "  connection: %s, %s, expires in %v, real server %v (%s)\n",
			x.ConnState, dir, x.ConnLeft.Round(time.Second), e.Dest, e.Method)
		switch x.Check {
		case conntrack.Reschedule:
			b.WriteString("              would be removed (its real server was removed, or a SYN reuses its closed port) and the packet scheduled again\n")
		case conntrack.DropPacket:
			b.WriteString("              its real server was removed (expire_nodest_conn off): the packet is dropped\n")
		}
	case rs != nil:
		b.WriteString("  connection: none\n")
	}
	if x.Found && !x.Reply && x.Check == conntrack.Use {
		b.WriteString("  scheduler:  not asked: the packet follows its connection\n")
	}
	if tp := x.Template; tp != nil {
		fmt.Fprintf(&b, "  template:   %v -> %v, %d connections, expires in %v; the scheduler is not asked\n",
			tp.Key.Client, tp.Dest, tp.Controlled(), time.Duration(tp.Deadline()-d.table.Now()).Round(time.Second))
	} else if rs != nil && rs.svc.Persist != nil && x.Scheduled {
		b.WriteString("  template:   none")
		if x.NewTemplate {
			b.WriteString("; a new one would bind the scheduler's choice")
		}
		b.WriteString("\n")
	}
	if x.Scheduled && rs != nil {
		b.WriteString("  scheduler inputs:\n")
		for _, dst := range rs.sched.Dests() {
			hs := "unchecked"
			if h := d.checkStatus(RealKey{Service: serviceKey(rs.conf), Addr: dst.Addr.Netip(), Port: dst.Port}); h != nil {
				hs = h.State
			}
			fmt.Fprintf(&b, "    %-24v %-4s weight %d active %d inactive %d overloaded %v available %v health %s\n",
				dst, dst.Method, dst.Weight.Load(), dst.ActiveConns.Load(), dst.InactiveConns.Load(),
				dst.Overloaded.Load(), dst.Available.Load(), hs)
		}
		switch {
		case x.NoPreview:
			b.WriteString("  decision:   unknown: the scheduler has no dry run\n")
		case x.Choice == nil:
			b.WriteString("  decision:   none: no real server may take a new connection\n")
		default:
			fmt.Fprintf(&b, "  decision:   %v (%s)\n", x.Choice, x.Choice.Method)
		}
	}
	switch {
	case x.OnePacket:
		b.WriteString("  new:        no connection entry (one-packet scheduling)\n")
	case x.NewConn:
		b.WriteString("  new:        a connection would be created\n")
	}
	switch x.Verdict {
	case forward.Transmit:
		fmt.Fprintf(&b, "  rewrite:    before %v\n", in)
		fmt.Fprintf(&b, "              after  %v\n", decode(x.After, ethernet))
		if x.Drop != forward.DropNone {
			fmt.Fprintf(&b, "  verdict:    drop, reason %s, answered with the ICMP error above (dry run: nothing sent)\n", x.Drop)
		} else {
			b.WriteString("  verdict:    transmit (dry run: nothing sent, nothing changed)\n")
		}
	case forward.AwaitNeighbor:
		fmt.Fprintf(&b, "  rewrite:    before %v\n", in)
		fmt.Fprintf(&b, "              after  %v\n", decode(x.After, ethernet))
		b.WriteString("  verdict:    wait for the real server's MAC, being resolved; sent when resolved, dropped (no-neighbor) if resolution fails (dry run: nothing sent, nothing changed)\n")
	case forward.Drop:
		fmt.Fprintf(&b, "  verdict:    drop, reason %s\n", x.Drop)
	case forward.ToStack:
		b.WriteString("  verdict:    to lvsd's netstack (not for a virtual service, or a TCP segment other than a SYN without a connection)\n")
	default:
		fmt.Fprintf(&b, "  verdict:    %v\n", x.Verdict)
	}
	return b.String()
}

var _ control.PacketTracer = (*Director)(nil)
