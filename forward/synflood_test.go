package forward_test

import (
	"encoding/binary"
	"testing"

	"github.com/lvsd/lvsd/conntrack"
	"github.com/lvsd/lvsd/forward"
	"github.com/lvsd/lvsd/lvs"
)

// TestSYNFlood sends millions of SYNs from spoofed sources (every address
// of 192.0.2.0/24, every port) through Worker.Process into a table of
// 10,000 connections, while an established connection keeps exchanging
// data. The table must stay within its limit by evicting the flood's own
// half-open entries, and the established connection must never miss a
// packet.
func TestSYNFlood(t *testing.T) {
	const max = 10_000
	flood := 2_000_000
	switch {
	case raceEnabled:
		flood = 100_000
	case testing.Short():
		flood = 200_000
	}
	d := rs(rip4, 8080, lvs.NAT)
	e := newEnv(t, envOpts{max: max}, svcSpec{vip: vip4, port: 80, proto: lvs.TCP, dest: d})

	// The established connection: handshake, then data both ways.
	for _, p := range []pkt{
		{src: ap(cli4, 40000), dst: ap(vip4, 80), flags: syn},
		{srcMAC: rsMAC, src: ap(rip4, 8080), dst: ap(cli4, 40000), flags: syn | ack},
		{src: ap(cli4, 40000), dst: ap(vip4, 80), flags: ack},
	} {
		if v, _ := e.process(p.build(t), forward.VNetHdr{}); v != forward.Transmit {
			t.Fatalf("handshake: %v", v)
		}
	}
	data := runner(t, e.w, pkt{src: ap(cli4, 40000), dst: ap(vip4, 80), flags: ack, payload: "data"}.build(t), forward.VNetHdr{}, forward.Transmit, nil)
	reply := runner(t, e.w, pkt{srcMAC: rsMAC, src: ap(rip4, 8080), dst: ap(cli4, 40000), flags: ack, payload: "reply"}.build(t), forward.VNetHdr{}, forward.Transmit, nil)

	// The flood: one frame rewritten in place (source address and port,
	// IPv4 header checksum) for every SYN.
	frame := pkt{src: ap(cli4, 1), dst: ap(vip4, 80), flags: syn}.build(t)
	buf := make([]byte, headroom+len(frame))
	p := new(forward.Packet)
	const ip, tcp = 14, 34
	transmitted := 0
	for i := range flood {
		copy(buf[headroom:], frame)
		f := buf[headroom:]
		f[ip+15] = byte(i)                                         // 192.0.2.x
		binary.BigEndian.PutUint16(f[tcp:], uint16(1+i/256%60000)) // source port
		if f[ip+15] == 10 && i/256%60000 == 39999 {
			continue // the established connection's own tuple
		}
		fixIPv4(f[ip:])
		*p = forward.Packet{Buf: buf, Off: headroom, Len: len(frame)}
		if e.w.Process(p) == forward.Transmit {
			transmitted++
		}
		if i%1000 == 0 {
			data()
			reply()
			if n := e.tab.Len(); n > max {
				t.Fatalf("after %d SYNs the table holds %d connections, over its limit %d", i, n, max)
			}
		}
	}
	s := e.tab.Stats()
	t.Logf("%d SYNs: %d forwarded, %d evicted, %d refused; table %d/%d", flood, transmitted, s.Evicted, s.Refused, s.Conns, s.Max)
	if s.Conns > max {
		t.Errorf("table holds %d connections, limit %d", s.Conns, max)
	}
	// Every SYN found room by evicting an older half-open entry.
	if transmitted < flood-2 || s.Refused != 0 {
		t.Errorf("%d of %d SYNs forwarded, %d refused; want all forwarded", transmitted, flood, s.Refused)
	}
	if d.ActiveConns.Load() != 1 {
		t.Errorf("active connections %d, want 1 (the established one)", d.ActiveConns.Load())
	}
	in := lvs.Tuple{Src: lvs.AddrFromNetip(cli4), Dst: lvs.AddrFromNetip(vip4), SPort: 40000, DPort: 80, Proto: lvs.TCP}
	if ent, _ := e.tab.Lookup(&in); ent == nil || ent.State() != conntrack.StateEstablished {
		t.Fatalf("the established connection is gone")
	}
	if c := e.f.Counters(); c.ToStack != 0 || c.Drops[forward.DropTableFull] != 0 {
		t.Errorf("%d frames to the netstack (a lost connection), drops %v", c.ToStack, c.Drops)
	}
}
