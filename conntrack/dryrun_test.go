package conntrack

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/lvsd/lvsd/lvs"
)

// TestCheckDry: CheckDry answers as Check does and removes nothing.
func TestCheckDry(t *testing.T) {
	for _, tt := range []struct {
		name    string
		flags   []uint8
		syn     uint8
		removed bool
		nodest  bool // expire_nodest_conn
		want    CheckResult
	}{
		{"close", []uint8{FlagSYN, FlagACK, FlagRST}, FlagSYN, false, false, Reschedule},
		{"established", []uint8{FlagSYN, FlagACK}, FlagSYN, false, false, Use},
		{"removed, expire_nodest_conn", []uint8{FlagSYN, FlagACK}, FlagACK, true, true, Reschedule},
		{"removed", []uint8{FlagSYN, FlagACK}, FlagACK, true, false, DropPacket},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tab, clk := newTestTable(t, 0)
			tab.SetExpireNodestConn(tt.nodest)
			d := dest("192.0.2.21", 80, lvs.DR)
			e, _ := open(t, tab, clk, d, 1000, tt.flags...)
			d.Removed.Store(tt.removed)
			st := e.State()
			for range 3 {
				if v := tab.CheckDry(e, tt.syn); v != tt.want {
					t.Fatalf("CheckDry = %v, want %v", v, tt.want)
				}
			}
			if !e.Live() || tab.Len() != 1 || e.State() != st {
				t.Fatalf("after CheckDry: live %v, len %d, state %v (was %v)", e.Live(), tab.Len(), e.State(), st)
			}
			if s := tab.Stats(); s.NodestExpired != 0 || s.Reused != 0 {
				t.Errorf("CheckDry counted: nodest %d reused %d", s.NodestExpired, s.Reused)
			}
			if v := tab.Check(e, tt.syn); v != tt.want {
				t.Errorf("Check = %v after CheckDry said %v", v, tt.want)
			}
		})
	}
}

// TestAdmitDry: AdmitDry answers as Admit would and counts nothing.
func TestAdmitDry(t *testing.T) {
	tab, clk := newTestTable(t, 0)
	src := lvs.AddrFromNetip(netip.MustParseAddr("192.0.2.10"))
	tab.SetSourceLimits(SourceLimits{NewPerSec: 2})
	for range 10 {
		if err := tab.AdmitDry(&src, clk.now()); err != nil {
			t.Fatalf("AdmitDry before any connection: %v", err)
		}
	}
	for i := range 2 {
		if err := tab.Admit(&src, clk.now()); err != nil {
			t.Fatalf("Admit %d after the dry runs: %v (they counted)", i, err)
		}
	}
	if err := tab.AdmitDry(&src, clk.now()); !errors.Is(err, ErrSourceRate) {
		t.Errorf("AdmitDry over the rate: %v", err)
	}
	if err := tab.Admit(&src, clk.now()); !errors.Is(err, ErrSourceRate) {
		t.Errorf("Admit over the rate: %v", err)
	}
	clk.advance(time.Second)
	if err := tab.AdmitDry(&src, clk.now()); err != nil {
		t.Errorf("AdmitDry in the next second: %v", err)
	}

	tab.SetSourceLimits(SourceLimits{Conns: 1})
	d := dest("192.0.2.21", 80, lvs.DR)
	if _, err := open(t, tab, clk, d, 1000, FlagSYN); err != nil {
		t.Fatal(err)
	}
	if err := tab.AdmitDry(&src, clk.now()); !errors.Is(err, ErrSourceLimit) {
		t.Errorf("AdmitDry at the connection limit: %v", err)
	}
	if s := tab.Stats(); s.SourceLimited != 0 {
		t.Errorf("AdmitDry counted %d refusals", s.SourceLimited)
	}
}

// TestScratchEntry: what is counted on a scratch entry, found in the table
// or unlinked, reaches no statistics; an unlinked entry is out of the
// table.
func TestScratchEntry(t *testing.T) {
	tab, clk := newTestTable(t, 0)
	d := dest("192.0.2.21", 80, lvs.NAT)
	in := tuple(lvs.TCP, "192.0.2.10", 1000, "192.0.2.100", 80)
	if _, err := open(t, tab, clk, d, 1000, FlagSYN); err != nil {
		t.Fatal(err)
	}
	before := tab.Stats().Total
	e := tab.NewScratchEntry()
	if found, _ := tab.LookupInto(&in, e); !found {
		t.Fatal("the connection is not found")
	}
	e.CountIn(100)
	e.CountOut(100)
	e.CountFailure()
	e.Unlink()
	if e.State() != StateNone {
		t.Errorf("unlinked entry in state %v", e.State())
	}
	tab.Update(e, FlagACK, true, clk.now())
	e.CountIn(100)
	if after := tab.Stats().Total; after != before {
		t.Errorf("counts on a scratch entry reached the statistics: %+v, then %+v", before, after)
	}
	if d.Stats.InPkts.Load() != 0 || d.Stats.OutPkts.Load() != 0 {
		t.Errorf("counts on a scratch entry reached the real server: in %d out %d", d.Stats.InPkts.Load(), d.Stats.OutPkts.Load())
	}
	if got, _ := tab.Lookup(&in); got == nil || got.State() != StateSynRecv {
		t.Errorf("the connection after an Update of its unlinked copy: %+v", got)
	}
}
