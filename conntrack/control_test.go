package conntrack

import (
	"testing"
	"time"

	"github.com/lvsd/lvsd/lvs"
)

type countingController struct{ released int }

func (c *countingController) Release() { c.released++ }

// TestControlReleased checks that a controlled connection releases its
// controller exactly once, when it expires.
func TestControlReleased(t *testing.T) {
	tab, clk := newTestTable(t, 0)
	d := dest("192.0.2.21", 8080, lvs.NAT)
	in := tuple(lvs.UDP, "192.0.2.10", 1000, "192.0.2.100", 53)
	ctl := &countingController{}
	e, created, err := tab.InsertControlled(&in, d, nil, lvs.MAC{}, clk.now(), ctl)
	if err != nil || !created || e.Control != ctl {
		t.Fatalf("InsertControlled: created %v, err %v, control kept %v", created, err, e.Control == ctl)
	}
	again, created, _ := tab.InsertControlled(&in, d, nil, lvs.MAC{}, clk.now(), &countingController{})
	if created || !again.Same(e) || again.Control != ctl {
		t.Fatalf("a second insert of the tuple replaced the entry or its control")
	}
	clk.advance(time.Hour)
	if n := tab.Expire(clk.now()); n != 1 {
		t.Fatalf("expired %d, want 1", n)
	}
	tab.Expire(clk.now())
	if ctl.released != 1 {
		t.Errorf("released %d times, want 1", ctl.released)
	}
}

// TestPortZeroDest checks the reply tuple of a NAT connection to a
// destination of port 0: the real server answers from the port the client
// addressed.
func TestPortZeroDest(t *testing.T) {
	tab, clk := newTestTable(t, 0)
	d := dest("192.0.2.21", 0, lvs.NAT)
	in := tuple(lvs.TCP, "192.0.2.10", 40000, "192.0.2.100", 443)
	if _, _, err := tab.Insert(&in, d, nil, lvs.MAC{}, clk.now()); err != nil {
		t.Fatal(err)
	}
	reply := tuple(lvs.TCP, "192.0.2.21", 443, "192.0.2.10", 40000)
	if e, isReply := tab.Lookup(&reply); e == nil || !isReply {
		t.Errorf("the reply from 192.0.2.21:443 finds no connection")
	}
}
