package lvs

import (
	"bytes"
	"testing"
)

// heldFrame returns a frame of size bytes: a 2-byte prefix (the virtio-net
// header's place, macAt 2), a zero destination MAC, then id in every byte.
func heldFrame(size int, id byte) []byte {
	f := bytes.Repeat([]byte{id}, size)
	copy(f[2:8], make([]byte, 6))
	return f
}

type sentFrame struct {
	frame []byte
	tag   int
}

func resolveAll(t *testing.T, n *Neighbor, m MAC) []sentFrame {
	t.Helper()
	var got []sentFrame
	n.Resolve(m, func(f []byte, tag int) { got = append(got, sentFrame{bytes.Clone(f), tag}) })
	return got
}

// TestHoldResolve: frames held while the MAC is unknown leave in order, with
// the MAC written in, when it is published; later ones are not queued.
func TestHoldResolve(t *testing.T) {
	var n Neighbor
	m := MAC{2, 0, 0, 0, 0, 9}
	for i := range 3 {
		r := n.Hold(heldFrame(60+i, byte(i+1)), 2, i, int64(i))
		if !r.Queued || r.Known || r.Dropped != 0 || r.First != (i == 0) {
			t.Fatalf("hold %d: %+v", i, r)
		}
	}
	if f, b := n.Held(); f != 3 || b != 60+61+62+3*HoldOverhead {
		t.Errorf("held %d frames, %d bytes", f, b)
	}
	got := resolveAll(t, &n, m)
	if len(got) != 3 {
		t.Fatalf("sent %d frames, want 3", len(got))
	}
	for i, s := range got {
		want := heldFrame(60+i, byte(i+1))
		copy(want[2:8], m[:])
		if !bytes.Equal(s.frame, want) || s.tag != i {
			t.Errorf("frame %d: tag %d\n%x\nwant\n%x", i, s.tag, s.frame, want)
		}
	}
	if mac, ok := n.Load(); !ok || mac != m {
		t.Errorf("slot after Resolve: %v %v", mac, ok)
	}
	if r := n.Hold(heldFrame(60, 7), 2, 0, 9); !r.Known || r.MAC != m || r.Queued {
		t.Errorf("hold with the MAC known: %+v", r)
	}
	if f, _ := n.Held(); f != 0 {
		t.Errorf("%d frames held after Resolve", f)
	}
}

// TestHoldOverflow: a full queue drops its oldest frames first, and counts
// bytes as the kernel's unres_qlen_bytes does (101 full-size frames).
func TestHoldOverflow(t *testing.T) {
	var n Neighbor
	const size = 1514
	for i := range 101 {
		if r := n.Hold(heldFrame(size, byte(i)), 2, 0, 0); !r.Queued || r.Dropped != 0 {
			t.Fatalf("frame %d: %+v", i, r)
		}
	}
	r := n.Hold(heldFrame(size, 101), 2, 0, 0)
	if !r.Queued || r.Dropped != 1 {
		t.Fatalf("frame 101: %+v, want queued with the oldest dropped", r)
	}
	// A super-frame needs the room of many.
	big := heldFrame(65000, 200)
	r = n.Hold(big, 2, 0, 0)
	if !r.Queued || r.Dropped < 31 {
		t.Fatalf("64 KB frame: %+v", r)
	}
	frames, charged := n.Held()
	if charged > HoldBytes {
		t.Errorf("%d bytes held, over %d", charged, HoldBytes)
	}
	got := resolveAll(t, &n, MAC{1})
	if len(got) != frames {
		t.Fatalf("sent %d, held %d", len(got), frames)
	}
	// The survivors are the newest, in order, ending with the big one.
	first := int(got[0].frame[10])
	for i, s := range got[:len(got)-1] {
		if int(s.frame[10]) != first+i {
			t.Fatalf("frame %d is #%d, want #%d", i, s.frame[10], first+i)
		}
	}
	if first != 102-(len(got)-1) {
		t.Errorf("oldest survivor #%d, want #%d", first, 102-(len(got)-1))
	}
	if last := got[len(got)-1].frame; len(last) != len(big) || last[10] != 200 {
		t.Errorf("last frame %d bytes, #%d", len(last), last[10])
	}
	n.Clear()
	if r := n.Hold(heldFrame(HoldBytes, 1), 2, 0, 0); r.Queued || r.Dropped != 1 {
		t.Errorf("frame larger than the queue: %+v", r)
	}
}

// TestHoldRing: frames of mixed sizes wrap around the arena many times and
// come out intact and in order.
func TestHoldRing(t *testing.T) {
	var n Neighbor
	var want [][]byte
	id := 0
	for round := range 40 {
		for range 1 + round%5 {
			f := heldFrame(100+(id*7919)%9000, byte(id))
			r := n.Hold(f, 2, 0, 0)
			if !r.Queued {
				t.Fatalf("frame %d not queued: %+v", id, r)
			}
			want = append(want[r.Dropped:], f)
			id++
		}
		if round%7 == 6 {
			got := resolveAll(t, &n, MAC{})
			n.Clear()
			if len(got) != len(want) {
				t.Fatalf("round %d: sent %d, want %d", round, len(got), len(want))
			}
			for i := range got {
				if !bytes.Equal(got[i].frame, want[i]) {
					t.Fatalf("round %d frame %d differs", round, i)
				}
			}
			want = want[:0]
		}
	}
}

// TestHoldFailExpire: a failed resolution drops every held frame; Expire
// drops those held before a time, oldest first.
func TestHoldFailExpire(t *testing.T) {
	var n Neighbor
	for i := range 4 {
		n.Hold(heldFrame(80, byte(i)), 2, 0, int64(10*i))
	}
	if d := n.Expire(15); d != 2 {
		t.Errorf("Expire(15) dropped %d, want 2", d)
	}
	if d := n.Fail(); d != 2 {
		t.Errorf("Fail dropped %d, want 2", d)
	}
	if f, b := n.Held(); f != 0 || b != 0 {
		t.Errorf("after Fail: %d frames, %d bytes", f, b)
	}
	if _, ok := n.Load(); ok {
		t.Error("Fail published a MAC")
	}
	if r := n.Hold(heldFrame(80, 9), 2, 0, 0); !r.First {
		t.Errorf("first frame after Fail: %+v", r)
	}
}

// TestHoldAllocs: once a queue's arena has been used and given back, a
// neighbour that holds frames and resolves takes it from the pool again:
// no allocation per held frame.
func TestHoldAllocs(t *testing.T) {
	var n Neighbor
	f := heldFrame(80, 1)
	send := func([]byte, int) {}
	cycle := func() {
		n.Clear()
		for range 4 {
			n.Hold(f, 2, 0, 0)
		}
		n.Resolve(MAC{1}, send)
	}
	cycle()
	if a := testing.AllocsPerRun(100, cycle); a != 0 {
		t.Errorf("%v allocations per hold-and-resolve cycle, want 0", a)
	}
}

func BenchmarkHoldResolve(b *testing.B) {
	var n Neighbor
	f := heldFrame(1514, 1)
	send := func([]byte, int) {}
	b.ReportAllocs()
	for b.Loop() {
		n.Clear()
		n.Hold(f, 2, 0, 0)
		n.Resolve(MAC{1}, send)
	}
}
