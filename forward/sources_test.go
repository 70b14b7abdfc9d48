package forward_test

import (
	"testing"
	"time"

	"github.com/lvsd/lvsd/conntrack"
	"github.com/lvsd/lvsd/forward"
	"github.com/lvsd/lvsd/lvs"
)

// TestSourceLimits: new connections of a client prefix over the table's
// per-source limits are dropped before scheduling, counted by reason, and
// other clients are unaffected.
func TestSourceLimits(t *testing.T) {
	d := rs(rip4, 8080, lvs.NAT)
	e := newEnv(t, envOpts{}, svcSpec{vip: vip4, port: 80, proto: lvs.TCP, dest: d})
	e.tab.SetSourceLimits(conntrack.SourceLimits{Conns: 2, PrefixV4: 24})
	synFrom := func(port uint16) forward.Verdict {
		v, _ := e.process(pkt{src: ap(cli4, port), dst: ap(vip4, 80), flags: syn}.build(t), forward.VNetHdr{})
		return v
	}
	for port := uint16(1000); port < 1002; port++ {
		if v := synFrom(port); v != forward.Transmit {
			t.Fatalf("SYN %d: %v", port, v)
		}
	}
	before := e.f.Counters()
	if v := synFrom(1002); v != forward.Drop {
		t.Fatalf("third connection of the /24: %v, want Drop", v)
	}
	if r := e.dropReason(before); r != forward.DropSourceLimit {
		t.Errorf("drop reason %v, want source-limit", r)
	}
	// A retransmitted SYN of a connection in the table is not a new one.
	if v := synFrom(1000); v != forward.Transmit {
		t.Errorf("SYN of an existing connection: %v", v)
	}

	e.tab.SetSourceLimits(conntrack.SourceLimits{NewPerSec: 3})
	e.clk.advance(time.Second)
	for port := uint16(2000); port < 2003; port++ {
		if v := synFrom(port); v != forward.Transmit {
			t.Fatalf("SYN %d: %v", port, v)
		}
	}
	before = e.f.Counters()
	if v := synFrom(2003); v != forward.Drop {
		t.Fatalf("fourth new connection in the second: %v, want Drop", v)
	}
	if r := e.dropReason(before); r != forward.DropSourceRate {
		t.Errorf("drop reason %v, want source-rate", r)
	}
	e.clk.advance(time.Second)
	if v := synFrom(2003); v != forward.Transmit {
		t.Errorf("the next second: %v", v)
	}
}
