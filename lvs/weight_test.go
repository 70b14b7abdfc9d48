package lvs

import (
	"net/netip"
	"reflect"
	"testing"
	"time"
)

func TestRamp(t *testing.T) {
	const s = int64(time.Second)
	d := NewDest(netip.MustParseAddr("192.0.2.21"), 80, NAT, 3)
	if got := d.Ramp(0); got != RampSteps {
		t.Errorf("without slow start: ramp %d, want %d", got, RampSteps)
	}
	d.SlowStart.Store(63 * s)
	if d.Ramping(0) || d.Ramping(1<<61) {
		t.Errorf("a destination that never started a ramp is ramping")
	}
	d.StartRamp(100 * s)
	for _, tt := range []struct {
		at   int64
		want int64
	}{
		{at: 0, want: 1}, // before the start (clock skew): the lowest step
		{at: 100 * s, want: 1},
		{at: 100*s + s - 1, want: 1},
		{at: 101 * s, want: 2},
		{at: 131 * s, want: 32},
		{at: 162 * s, want: 63},
		{at: 163*s - 1, want: 63},
		{at: 163 * s, want: RampSteps},
		{at: 1 << 62, want: RampSteps},
	} {
		if got := d.Ramp(tt.at); got != tt.want {
			t.Errorf("ramp at %v: %d, want %d", time.Duration(tt.at), got, tt.want)
		}
	}
	// Changing the duration applies to the running ramp.
	d.SlowStart.Store(0)
	if d.Ramping(131 * s) {
		t.Errorf("still ramping after slow start was switched off")
	}
}

func TestSetWeightAndAvailable(t *testing.T) {
	const s = int64(time.Second)
	d := NewDest(netip.MustParseAddr("192.0.2.21"), 80, NAT, 0)
	d.SlowStart.Store(10 * s)
	if got := d.LastWeight.Load(); got != 0 {
		t.Errorf("LastWeight of a destination added with weight 0: %d, want 0", got)
	}
	d.SetWeight(5, 20*s) // back from quiescent: ramps
	if got := d.LastWeight.Load(); got != 5 {
		t.Errorf("LastWeight %d, want 5", got)
	}
	if !d.Ramping(20 * s) {
		t.Errorf("weight 0 -> 5 did not start slow start")
	}
	d.SetWeight(7, 40*s) // a change between positive weights: no new ramp
	if d.Ramping(40 * s) {
		t.Errorf("weight 5 -> 7 started slow start")
	}
	d.SetWeight(0, 50*s) // quiesced: LastWeight stays
	if got, last := d.Weight.Load(), d.LastWeight.Load(); got != 0 || last != 7 {
		t.Errorf("after quiescing: weight %d, LastWeight %d; want 0 and 7", got, last)
	}
	if d.Usable() {
		t.Errorf("a quiescent destination is usable")
	}
	d.SetWeight(7, 60*s)
	d.SetAvailable(false, 100*s)
	if d.Usable() {
		t.Errorf("an unavailable destination is usable")
	}
	d.SetAvailable(false, 101*s)
	if d.Ramping(101 * s) {
		t.Errorf("a destination going (or staying) down ramps")
	}
	d.SetAvailable(true, 200*s)
	if !d.Usable() || !d.Ramping(200*s) || d.Ramping(210*s) {
		t.Errorf("a recovered destination: usable %v, ramping at once %v, after 10 s %v; want true, true, false",
			d.Usable(), d.Ramping(200*s), d.Ramping(210*s))
	}
}

// TestDestLayout keeps what the schedulers' scans read of a Dest in one
// cache line: bytes 32..63 of a 128-byte object, which the allocator aligns
// to 128 bytes.
func TestDestLayout(t *testing.T) {
	typ := reflect.TypeFor[Dest]()
	if typ.Size() > 128 || typ.Size() <= 112 {
		t.Errorf("Dest is %d bytes; the layout below assumes the 128-byte size class", typ.Size())
	}
	for _, name := range []string{"Weight", "SlowStart", "Overloaded", "Available", "ActiveConns", "InactiveConns"} {
		f, _ := typ.FieldByName(name)
		if f.Offset < 32 || f.Offset+f.Type.Size() > 64 {
			t.Errorf("Dest.%s at bytes %d..%d, outside the scanned line 32..63", name, f.Offset, f.Offset+f.Type.Size()-1)
		}
	}
}
