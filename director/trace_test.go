package director

import (
	"testing"

	"github.com/lvsd/lvsd/capture"
)

// TestTraceWantAllocs: an armed trace that does not want a frame costs
// its reader no allocation, nor does one whose count is used up.
func TestTraceWantAllocs(t *testing.T) {
	f, err := capture.ParseFilter("udp port 53")
	if err != nil {
		t.Fatal(err)
	}
	tr := &tracer{f: f, recs: make(chan *traceRec, 1)}
	tr.left.Store(1)
	// An Ethernet frame of a TCP SYN from 192.0.2.10:40000 to 192.0.2.100:80.
	frame := []byte{
		2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00,
		0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0, 192, 0, 2, 10, 192, 0, 2, 100,
		0x9c, 0x40, 0, 80, 0, 0, 0, 0, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0,
	}
	if n := testing.AllocsPerRun(1000, func() {
		if tr.want(frame, true) {
			t.Fatal("a TCP frame wanted by udp port 53")
		}
	}); n != 0 {
		t.Errorf("want allocates %v times per frame", n)
	}
	tr.f = capture.Filter{}
	if !tr.want(frame, true) {
		t.Fatal("the empty filter does not want a frame")
	}
	if n := testing.AllocsPerRun(1000, func() {
		if tr.want(frame, true) {
			t.Fatal("a trace of 1 frame took a second")
		}
	}); n != 0 {
		t.Errorf("want allocates %v times per frame once used up", n)
	}
}

// BenchmarkTraceWant is what an armed trace that matches nothing costs a
// reader per frame.
func BenchmarkTraceWant(b *testing.B) {
	f, _ := capture.ParseFilter("udp port 53")
	tr := &tracer{f: f, recs: make(chan *traceRec, 1)}
	tr.left.Store(1)
	frame := make([]byte, 54)
	copy(frame[12:], []byte{0x08, 0x00, 0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6})
	b.ReportAllocs()
	for b.Loop() {
		tr.want(frame, true)
	}
}
