//go:build linux

package device_test

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lvsd/lvsd/device"
	"github.com/lvsd/lvsd/device/devicetest"
	"github.com/lvsd/lvsd/internal/pkttest"
	"golang.org/x/sys/unix"
)

func newBufs(n, size int) ([][]byte, []int) {
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, size)
	}
	return bufs, make([]int, n)
}

// readFrames reads exactly n frames from d, in as many ReadBatch calls as it
// takes, and returns copies. After timeout it closes d, which ends a
// ReadBatch waiting for frames that never come.
func readFrames(tb testing.TB, d *device.AFPacket, n int, timeout time.Duration) [][]byte {
	tb.Helper()
	watchdog := time.AfterFunc(timeout, func() { d.Close() })
	defer watchdog.Stop()
	bufs, sizes := newBufs(device.AFPacketBatch, 2048)
	var got [][]byte
	calls := 0
	for len(got) < n {
		m, err := d.ReadBatch(bufs, sizes)
		calls++
		if err != nil {
			tb.Fatalf("ReadBatch after %d of %d frames: %v", len(got), n, err)
		}
		for i := range m {
			if sizes[i] < 0 {
				tb.Fatalf("frame %d truncated", len(got))
			}
			got = append(got, bytes.Clone(bufs[i][:sizes[i]]))
		}
	}
	tb.Logf("%d frames in %d ReadBatch calls", len(got), calls)
	return got
}

// expectNoMore checks that nothing more arrives on d within wait: a
// ReadBatch waits that long, then Close ends it. d is closed afterwards.
func expectNoMore(t *testing.T, d *device.AFPacket, wait time.Duration) {
	t.Helper()
	type result struct {
		frames [][]byte
		err    error
	}
	ch := make(chan result, 1)
	go func() {
		bufs, sizes := newBufs(device.AFPacketBatch, 2048)
		n, err := d.ReadBatch(bufs, sizes)
		var r result
		for i := range n {
			r.frames = append(r.frames, bytes.Clone(bufs[i][:max(sizes[i], 0)]))
		}
		r.err = err
		ch <- r
	}()
	time.Sleep(wait)
	closeWithin(t, d, time.Second)
	select {
	case r := <-ch:
		for i, f := range r.frames {
			t.Errorf("unexpected frame %d after the expected ones: % x", i, f)
		}
		if len(r.frames) == 0 && !errors.Is(r.err, os.ErrClosed) {
			t.Errorf("ReadBatch ended by Close: err %v, want os.ErrClosed", r.err)
		}
	case <-time.After(time.Second):
		t.Fatal("ReadBatch still blocked 1 s after Close")
	}
}

// closeWithin closes d and fails the test if Close takes longer than limit
// (it waits for the calls under way, so a reader it failed to wake hangs it).
func closeWithin(t *testing.T, d *device.AFPacket, limit time.Duration) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- d.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(limit):
		t.Fatalf("Close still blocked after %v", limit)
	}
}

// TestPacketLoopbackBatch: a batch written with WriteBatch comes back whole,
// in order, each frame with its size, once: the device does not read its
// own output.
func TestPacketLoopbackBatch(t *testing.T) {
	lab := devicetest.NewLoopback(t, device.AFPacketOptions{})
	d := lab.Devs[0]
	var frames [][]byte
	for i := range 8 {
		frames = append(frames, devicetest.Frame(devicetest.LoMAC, i, 60+7*i))
	}
	n, err := d.WriteBatch(frames)
	if n != len(frames) || err != nil {
		t.Fatalf("WriteBatch: %d of %d sent, err %v", n, len(frames), err)
	}
	got := readFrames(t, d, len(frames), 5*time.Second)
	for i := range frames {
		if !bytes.Equal(got[i], frames[i]) {
			t.Errorf("frame %d (%d bytes):\n got % x\nwant % x", i, len(got[i]), got[i], frames[i])
		}
	}
	expectNoMore(t, d, 200*time.Millisecond)
}

// TestPacketLoopbackWrite: Write sends one frame, Read receives one.
func TestPacketLoopbackWrite(t *testing.T) {
	lab := devicetest.NewLoopback(t, device.AFPacketOptions{})
	d := lab.Devs[0]
	f := devicetest.Frame(devicetest.LoMAC, 1, 100)
	if n, err := d.Write(f); n != len(f) || err != nil {
		t.Fatalf("Write: %d of %d, err %v", n, len(f), err)
	}
	b := make([]byte, 2048)
	n, err := d.Read(b)
	if err != nil || !bytes.Equal(b[:n], f) {
		t.Fatalf("Read: err %v\n got % x\nwant % x", err, b[:n], f)
	}
	// A frame larger than the buffer is an error, not a cut frame.
	if _, err := d.Write(devicetest.Frame(devicetest.LoMAC, 2, 200)); err != nil {
		t.Fatal(err)
	}
	if n, err := d.Read(b[:100]); err == nil {
		t.Errorf("Read of a 200-byte frame into 100 bytes: %d bytes, no error", n)
	}
	expectNoMore(t, d, 100*time.Millisecond)
}

// TestPacketFilter: of frames sent on lo by another socket, the device sees
// those for lo's MAC, broadcast and multicast, each once (not also as the
// sender's output, which the taps see first), and none for another host.
func TestPacketFilter(t *testing.T) {
	lab := devicetest.NewLoopback(t, device.AFPacketOptions{})
	d := lab.Devs[0]
	host1 := devicetest.Frame(devicetest.LoMAC, 1, 60)
	other := devicetest.Frame(devicetest.OtherMAC, 2, 60)
	bcast := devicetest.Frame(net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 3, 60)
	mcast := devicetest.Frame(net.HardwareAddr{0x01, 0x00, 0x5e, 0x00, 0x00, 0x01}, 4, 60)
	host2 := devicetest.Frame(devicetest.LoMAC, 5, 60)
	lab.Inject(t, host1, other, bcast, mcast, host2)
	want := [][]byte{host1, bcast, mcast, host2}
	got := readFrames(t, d, len(want), 5*time.Second)
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Errorf("frame %d:\n got % x\nwant % x", i, got[i], want[i])
		}
	}
	expectNoMore(t, d, 200*time.Millisecond)
}

// TestPacketCloseWakesReadBatch: Close ends a ReadBatch that waits with no
// traffic, and every call after Close fails with os.ErrClosed.
func TestPacketCloseWakesReadBatch(t *testing.T) {
	lab := devicetest.NewLoopback(t, device.AFPacketOptions{})
	d := lab.Devs[0]
	done := make(chan error, 1)
	go func() {
		bufs, sizes := newBufs(4, 2048)
		n, err := d.ReadBatch(bufs, sizes)
		if n != 0 {
			err = fmt.Errorf("read %d frames with no traffic (err %v)", n, err)
		}
		done <- err
	}()
	time.Sleep(100 * time.Millisecond) // let it block
	start := time.Now()
	closeWithin(t, d, time.Second)
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrClosed) || !device.IsClosed(err) {
			t.Errorf("ReadBatch woken by Close: %v, want os.ErrClosed", err)
		}
		t.Logf("ReadBatch returned %v after Close", time.Since(start))
	case <-time.After(time.Second):
		t.Fatal("ReadBatch still blocked 1 s after Close")
	}
	if err := d.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	bufs, sizes := newBufs(1, 2048)
	if _, err := d.ReadBatch(bufs, sizes); !errors.Is(err, os.ErrClosed) {
		t.Errorf("ReadBatch after Close: %v, want os.ErrClosed", err)
	}
	if _, err := d.WriteBatch([][]byte{devicetest.Frame(devicetest.LoMAC, 1, 60)}); !errors.Is(err, os.ErrClosed) {
		t.Errorf("WriteBatch after Close: %v, want os.ErrClosed", err)
	}
	if _, err := d.Write(devicetest.Frame(devicetest.LoMAC, 1, 60)); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Write after Close: %v, want os.ErrClosed", err)
	}
}

// TestPacketFanout: the devices of one fanout group share the frames: each
// frame reaches exactly one of them (without the group, every socket would
// get every frame), and frames of different flows spread over them.
func TestPacketFanout(t *testing.T) {
	const queues, flows = 2, 32
	lab := devicetest.NewLoopback(t, device.AFPacketOptions{Queues: queues})
	if len(lab.Devs) != queues {
		t.Fatalf("%d devices, want %d", len(lab.Devs), queues)
	}
	// IPv4/UDP frames, one flow each, so that the flow hash differs. No
	// address in the namespace is theirs: the kernel drops them silently.
	var frames [][]byte
	for i := range flows {
		frames = append(frames, udpFrame(t, devicetest.LoMAC, 1000+i))
	}
	type rx struct {
		q     int
		frame []byte
	}
	ch := make(chan rx, 2*flows)
	var wg sync.WaitGroup
	for q, d := range lab.Devs {
		wg.Go(func() {
			bufs, sizes := newBufs(device.AFPacketBatch, 2048)
			for {
				n, err := d.ReadBatch(bufs, sizes)
				if err != nil {
					return
				}
				for i := range n {
					ch <- rx{q, bytes.Clone(bufs[i][:max(sizes[i], 0)])}
				}
			}
		})
	}
	if n, err := lab.Devs[0].WriteBatch(frames); n != flows || err != nil {
		t.Fatalf("WriteBatch: %d of %d, err %v", n, flows, err)
	}
	seen := make(map[string]int)
	perQueue := make([]int, queues)
	timeout := time.After(5 * time.Second)
	collect := func(r rx) {
		seen[string(r.frame)]++
		perQueue[r.q]++
	}
wait:
	for total := 0; total < flows; total++ {
		select {
		case r := <-ch:
			collect(r)
		case <-timeout:
			break wait
		}
	}
	time.Sleep(200 * time.Millisecond) // any extra copies
	for _, d := range lab.Devs {
		closeWithin(t, d, time.Second)
	}
	wg.Wait()
	close(ch)
	for r := range ch {
		collect(r)
	}
	for i, f := range frames {
		if n := seen[string(f)]; n != 1 {
			t.Errorf("frame of flow %d received %d times, want once", i, n)
		}
		delete(seen, string(f))
	}
	for f := range seen {
		t.Errorf("unexpected frame: % x", []byte(f))
	}
	t.Logf("frames per queue: %v", perQueue)
	for q, n := range perQueue {
		if n == 0 {
			t.Errorf("queue %d got no frame of %d flows: no load sharing", q, flows)
		}
	}
}

// udpFrame returns an IPv4/UDP frame to dst from the kit's client to its
// VIP, with the source port sport.
func udpFrame(tb testing.TB, dst net.HardwareAddr, sport int) []byte {
	return pkttest.Frame{
		DstMAC: [6]byte(dst), SrcMAC: [6]byte(devicetest.PeerMAC), Proto: pkttest.UDP,
		Src: pkttest.AP(pkttest.Cli4, uint16(sport)), Dst: pkttest.AP(pkttest.VIP4, 9), Payload: "lvt!",
	}.Build(tb)
}

// TestPacketNoAllocs: a WriteBatch and a ReadBatch allocate nothing.
func TestPacketNoAllocs(t *testing.T) {
	lab := devicetest.NewLoopback(t, device.AFPacketOptions{})
	d := lab.Devs[0]
	var frames [][]byte
	for i := range 8 {
		frames = append(frames, devicetest.Frame(devicetest.LoMAC, i, 64))
	}
	bufs, sizes := newBufs(device.AFPacketBatch, 2048)
	// Reads never wait for frames that will not come (sent > read before
	// each), unless the kernel drops some; then the watchdog ends them.
	watchdog := time.AfterFunc(30*time.Second, func() { d.Close() })
	defer watchdog.Stop()
	var sent, read int
	var fail error
	round := func() {
		n, err := d.WriteBatch(frames)
		sent += n
		if err != nil && fail == nil {
			fail = err
		}
		m, err := d.ReadBatch(bufs, sizes)
		read += m
		if err != nil && fail == nil {
			fail = err
		}
	}
	for range 10 {
		round()
	}
	allocs := testing.AllocsPerRun(100, round)
	if fail != nil {
		t.Fatal(fail)
	}
	if allocs != 0 {
		t.Errorf("%v allocations per WriteBatch+ReadBatch, want 0", allocs)
	}
	for read < sent {
		m, err := d.ReadBatch(bufs, sizes)
		if err != nil {
			t.Fatalf("%d of %d frames read: %v", read, sent, err)
		}
		read += m
	}
	if read != sent {
		t.Errorf("read %d frames, sent %d", read, sent)
	}
}

// BenchmarkPacketLoopback writes batches of 32 64-byte frames and reads them
// back: the system call cost of an AFPacket per frame, both ways.
func BenchmarkPacketLoopback(b *testing.B) {
	lab := devicetest.NewLoopback(b, device.AFPacketOptions{})
	d := lab.Devs[0]
	var frames [][]byte
	for i := range device.AFPacketBatch {
		frames = append(frames, devicetest.Frame(devicetest.LoMAC, i, 64))
	}
	bufs, sizes := newBufs(device.AFPacketBatch, 2048)
	// A lost frame would leave ReadBatch waiting: the watchdog ends it.
	watchdog := time.AfterFunc(5*time.Minute, func() { d.Close() })
	defer watchdog.Stop()
	b.ReportAllocs()
	total := 0
	for b.Loop() {
		for sent := 0; sent < len(frames); {
			n, err := d.WriteBatch(frames[sent:])
			if err != nil {
				b.Fatal(err)
			}
			sent += n
		}
		for got := 0; got < len(frames); {
			n, err := d.ReadBatch(bufs, sizes)
			if err != nil {
				b.Fatal(err)
			}
			got += n
		}
		total += len(frames)
	}
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "frames/s")
}

// TestPacketReaderSleepFreesProcessor: a reader asleep between frames gives
// up its processor (fdGuard.wait), so the Go runtime's sysmon thread need
// not watch it. Asleep in an ordinary blocking system call, the reader's
// processor stays in the system-call state, and while the other processor
// is busy (here a goroutine that spins; in lvsd the netstack and the
// health checks) sysmon takes it away at each of its rounds, which it then
// makes every 20 µs: tens of thread wake-ups for each frame of a device
// that gets one every 2 ms, against a few with the processor given up.
func TestPacketReaderSleepFreesProcessor(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	lab := devicetest.NewLoopback(t, device.AFPacketOptions{})
	d := lab.Devs[0]
	got := make(chan error, 1)
	const frames = 150
	go func() {
		bufs, sizes := newBufs(device.AFPacketBatch, 2048)
		for read := 0; read < frames; {
			n, err := d.ReadBatch(bufs, sizes)
			if err != nil {
				got <- err
				return
			}
			read += n
		}
		got <- nil
	}()
	var stop atomic.Bool
	spun := make(chan struct{})
	go func() {
		defer close(spun)
		for !stop.Load() {
		}
	}()
	defer func() { stop.Store(true); <-spun }()
	time.Sleep(20 * time.Millisecond) // the reader asleep
	before := switches(t)
	for i := range frames {
		lab.Inject(t, devicetest.Frame(devicetest.LoMAC, i, 60))
		time.Sleep(2 * time.Millisecond)
	}
	after := switches(t)
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("read: %v", err)
		}
	case <-time.After(5 * time.Second):
		d.Close()
		t.Fatal("the reader did not get every frame")
	}
	perFrame := float64(after-before) / frames
	t.Logf("%.1f context switches of the process per frame", perFrame)
	if perFrame > 8 {
		t.Errorf("%.1f context switches per frame, want at most 8 (sysmon kept awake by a sleeping reader?)", perFrame)
	}
}

// switches returns the voluntary context switches of the process's threads.
func switches(t *testing.T) int64 {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return ru.Nvcsw
}
