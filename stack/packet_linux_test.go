//go:build linux

package stack

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/lvsd/lvsd/forward"
)

// These tests run PacketDevices on the loopback interface of a private
// network namespace: what one writes on lo, the kernel receives on lo. The
// namespace belongs to one OS thread, which exits when its goroutine ends;
// the namespace goes with the last socket made in it.

// loMAC is the address lo gets in the private namespace. lo's own address is
// all zeros, which OpenPacket refuses (no Ethernet hardware address); and a
// non-zero one lets the kernel tell frames for this host from others.
var (
	loMAC    = net.HardwareAddr{0x02, 0x6c, 0x76, 0x74, 0x00, 0x01}
	otherMAC = net.HardwareAddr{0x02, 0x6c, 0x76, 0x74, 0x00, 0x99}
	peerMAC  = net.HardwareAddr{0x02, 0x6c, 0x76, 0x74, 0x00, 0x02}
)

// loopbackLab is a private namespace with lo up and PacketDevices on it.
type loopbackLab struct {
	devs []*PacketDevice
	// inject is a plain AF_PACKET socket on lo without qdisc bypass: what it
	// sends passes the taps as PACKET_OUTGOING first, then comes back in.
	inject int
}

// newLoopbackLab makes the namespace, brings lo up with loMAC and opens
// PacketDevices with opts (Name "lo"). It skips unless root.
func newLoopbackLab(tb testing.TB, opts PacketOptions) *loopbackLab {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root: a private network namespace and AF_PACKET sockets")
	}
	opts.Name = "lo"
	type result struct {
		lab  *loopbackLab
		err  error
		skip bool
	}
	ch := make(chan result, 1)
	go func() {
		// Never unlocked: the thread, in its own namespace, exits with
		// this goroutine. Every socket is made here, so it lives in the
		// new namespace; afterwards any goroutine may use it.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			ch <- result{err: fmt.Errorf("unshare(CLONE_NEWNET): %w", err), skip: errors.Is(err, unix.EPERM)}
			return
		}
		lab, err := setUpLoopback(opts)
		ch <- result{lab: lab, err: err}
	}()
	r := <-ch
	if r.skip {
		tb.Skip(r.err)
	}
	if r.err != nil {
		tb.Fatal(r.err)
	}
	tb.Cleanup(func() {
		// Close waits for the calls under way: bounded, so that a device
		// that fails to wake its reader fails the test instead of hanging
		// the whole run.
		var wg sync.WaitGroup
		for _, d := range r.lab.devs {
			wg.Go(func() { d.Close() })
		}
		closed := make(chan struct{})
		go func() { wg.Wait(); close(closed) }()
		select {
		case <-closed:
		case <-time.After(2 * time.Second):
			tb.Error("Close of the devices still blocked after 2 s")
		}
		unix.Close(r.lab.inject)
	})
	return r.lab
}

// setUpLoopback runs in the new namespace.
func setUpLoopback(opts PacketOptions) (*loopbackLab, error) {
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(s)
	// The address first: lo refuses a new one while up.
	var hw struct {
		name   [unix.IFNAMSIZ]byte
		family uint16
		data   [14]byte
		_      [8]byte // the rest of struct ifreq
	}
	copy(hw.name[:], "lo")
	hw.family = unix.ARPHRD_LOOPBACK // must match the device type
	copy(hw.data[:], loMAC)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(s), unix.SIOCSIFHWADDR, uintptr(unsafe.Pointer(&hw))); errno != 0 {
		return nil, fmt.Errorf("SIOCSIFHWADDR lo: %w", errno)
	}
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return nil, err
	}
	if err := unix.IoctlIfreq(s, unix.SIOCGIFFLAGS, ifr); err != nil {
		return nil, fmt.Errorf("SIOCGIFFLAGS lo: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(s, unix.SIOCSIFFLAGS, ifr); err != nil {
		return nil, fmt.Errorf("SIOCSIFFLAGS lo: %w", err)
	}
	ifi, err := net.InterfaceByName("lo")
	if err != nil {
		return nil, err
	}
	inj, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket(AF_PACKET): %w", err)
	}
	if err := unix.Bind(inj, &unix.SockaddrLinklayer{Ifindex: ifi.Index}); err != nil {
		unix.Close(inj)
		return nil, fmt.Errorf("bind: %w", err)
	}
	devs, err := OpenPacket(opts)
	if err != nil {
		unix.Close(inj)
		return nil, err
	}
	return &loopbackLab{devs: devs, inject: inj}, nil
}

// injectFrames sends frames one by one through the lab's plain socket.
func (lab *loopbackLab) injectFrames(tb testing.TB, frames ...[]byte) {
	tb.Helper()
	for i, f := range frames {
		if n, err := unix.Write(lab.inject, f); err != nil || n != len(f) {
			tb.Fatalf("inject frame %d: wrote %d of %d: %v", i, n, len(f), err)
		}
	}
}

// pktFrame returns an Ethernet frame to dst of n bytes (n >= 20) with the
// local experimental Ethertype and a payload telling frame seq apart.
func pktFrame(dst net.HardwareAddr, seq, n int) []byte {
	f := make([]byte, n)
	copy(f, dst)
	copy(f[6:], peerMAC)
	f[12], f[13] = 0x88, 0xb5
	binary.BigEndian.PutUint32(f[14:], uint32(seq))
	for i := 18; i < n; i++ {
		f[i] = byte(seq + i)
	}
	return f
}

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
func readFrames(tb testing.TB, d *PacketDevice, n int, timeout time.Duration) [][]byte {
	tb.Helper()
	watchdog := time.AfterFunc(timeout, func() { d.Close() })
	defer watchdog.Stop()
	bufs, sizes := newBufs(PacketBatch, 2048)
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
func expectNoMore(t *testing.T, d *PacketDevice, wait time.Duration) {
	t.Helper()
	type result struct {
		frames [][]byte
		err    error
	}
	ch := make(chan result, 1)
	go func() {
		bufs, sizes := newBufs(PacketBatch, 2048)
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
func closeWithin(t *testing.T, d *PacketDevice, limit time.Duration) {
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
	lab := newLoopbackLab(t, PacketOptions{})
	d := lab.devs[0]
	var frames [][]byte
	for i := range 8 {
		frames = append(frames, pktFrame(loMAC, i, 60+7*i))
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
	lab := newLoopbackLab(t, PacketOptions{})
	d := lab.devs[0]
	f := pktFrame(loMAC, 1, 100)
	if n, err := d.Write(f); n != len(f) || err != nil {
		t.Fatalf("Write: %d of %d, err %v", n, len(f), err)
	}
	b := make([]byte, 2048)
	n, err := d.Read(b)
	if err != nil || !bytes.Equal(b[:n], f) {
		t.Fatalf("Read: err %v\n got % x\nwant % x", err, b[:n], f)
	}
	// A frame larger than the buffer is an error, not a cut frame.
	if _, err := d.Write(pktFrame(loMAC, 2, 200)); err != nil {
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
	lab := newLoopbackLab(t, PacketOptions{})
	d := lab.devs[0]
	host1 := pktFrame(loMAC, 1, 60)
	other := pktFrame(otherMAC, 2, 60)
	bcast := pktFrame(net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 3, 60)
	mcast := pktFrame(net.HardwareAddr{0x01, 0x00, 0x5e, 0x00, 0x00, 0x01}, 4, 60)
	host2 := pktFrame(loMAC, 5, 60)
	lab.injectFrames(t, host1, other, bcast, mcast, host2)
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
	lab := newLoopbackLab(t, PacketOptions{})
	d := lab.devs[0]
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
		if !errors.Is(err, os.ErrClosed) || !isClosed(err) {
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
	if _, err := d.WriteBatch([][]byte{pktFrame(loMAC, 1, 60)}); !errors.Is(err, os.ErrClosed) {
		t.Errorf("WriteBatch after Close: %v, want os.ErrClosed", err)
	}
	if _, err := d.Write(pktFrame(loMAC, 1, 60)); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Write after Close: %v, want os.ErrClosed", err)
	}
}

// TestPacketFanout: the devices of one fanout group share the frames: each
// frame reaches exactly one of them (without the group, every socket would
// get every frame), and frames of different flows spread over them.
func TestPacketFanout(t *testing.T) {
	const queues, flows = 2, 32
	lab := newLoopbackLab(t, PacketOptions{Queues: queues})
	if len(lab.devs) != queues {
		t.Fatalf("%d devices, want %d", len(lab.devs), queues)
	}
	// IPv4/UDP frames, one flow each, so that the flow hash differs. No
	// address in the namespace is theirs: the kernel drops them silently.
	var frames [][]byte
	for i := range flows {
		frames = append(frames, udpFrame(loMAC, 1000+i))
	}
	type rx struct {
		q     int
		frame []byte
	}
	ch := make(chan rx, 2*flows)
	var wg sync.WaitGroup
	for q, d := range lab.devs {
		wg.Go(func() {
			bufs, sizes := newBufs(PacketBatch, 2048)
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
	if n, err := lab.devs[0].WriteBatch(frames); n != flows || err != nil {
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
	for _, d := range lab.devs {
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

// udpFrame returns an IPv4/UDP frame from 192.0.2.2 to 198.51.100.1 with the
// source port sport.
func udpFrame(dst net.HardwareAddr, sport int) []byte {
	f := make([]byte, 14+20+8+4)
	copy(f, dst)
	copy(f[6:], peerMAC)
	f[12], f[13] = 0x08, 0x00
	ip := f[14:34]
	ip[0], ip[8], ip[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(ip[2:], uint16(len(f)-14))
	copy(ip[12:], []byte{192, 0, 2, 2})
	copy(ip[16:], []byte{198, 51, 100, 1})
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
	udp := f[34:]
	binary.BigEndian.PutUint16(udp[0:], uint16(sport))
	binary.BigEndian.PutUint16(udp[2:], 9)
	binary.BigEndian.PutUint16(udp[4:], 12)
	copy(udp[8:], "lvt!")
	return f
}

// TestPacketNoAllocs: a WriteBatch and a ReadBatch allocate nothing.
func TestPacketNoAllocs(t *testing.T) {
	lab := newLoopbackLab(t, PacketOptions{})
	d := lab.devs[0]
	var frames [][]byte
	for i := range 8 {
		frames = append(frames, pktFrame(loMAC, i, 64))
	}
	bufs, sizes := newBufs(PacketBatch, 2048)
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

// loopProc forwards each frame once: it marks a frame it has not seen
// (frame[14] == 'T') as forwarded and transmits it; on lo the frame comes
// back, and the forwarded copy is reported and dropped.
type loopProc struct{ back chan<- []byte }

func (p loopProc) Process(pk *forward.Packet) forward.Verdict {
	f := pk.Frame()
	if len(f) < 16 || f[12] != 0x88 || f[13] != 0xb5 {
		return forward.Drop
	}
	switch f[14] {
	case 'T':
		f[14] = 'F'
		return forward.Transmit
	case 'F':
		p.back <- bytes.Clone(f)
	}
	return forward.Drop
}

// TestPacketLink runs a Link over a PacketDevice: what the fast path
// forwards leaves on lo and comes back in order, and Close stops the reader.
func TestPacketLink(t *testing.T) {
	lab := newLoopbackLab(t, PacketOptions{})
	d := lab.devs[0]
	back := make(chan []byte, 64)
	l := NewLink(LinkOptions{
		Devices: []Device{d}, Ethernet: true, MTU: 1500, MAC: [6]byte(loMAC),
		NewProcessor: func() Processor { return loopProc{back} },
	})
	l.Attach(nopDispatcher{})
	var want [][]byte
	for i := range 16 {
		f := pktFrame(loMAC, i, 64)
		f[14] = 'T'
		lab.injectFrames(t, f)
		f = bytes.Clone(f)
		f[14] = 'F'
		want = append(want, f)
	}
	timeout := time.After(5 * time.Second)
	for i := range want {
		select {
		case f := <-back:
			if !bytes.Equal(f, want[i]) {
				t.Errorf("forwarded frame %d:\n got % x\nwant % x", i, f, want[i])
			}
		case <-timeout:
			t.Fatalf("%d of %d forwarded frames came back", i, len(want))
		}
	}
	stopped := make(chan struct{})
	go func() { l.Close(); l.Wait(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(time.Second):
		t.Fatal("Link reader still running 1 s after Close")
	}
	s := l.Stats()
	if s.TxFrames != 16 || s.TxErrors != 0 || s.RxErrors != 0 || s.RxFrames != 32 {
		t.Errorf("stats %+v; want RxFrames=32 TxFrames=16 and no errors", s)
	}
	select {
	case f := <-back:
		t.Errorf("a frame came back twice: % x", f)
	default:
	}
}

// BenchmarkPacketLoopback writes batches of 32 64-byte frames and reads them
// back: the system call cost of a PacketDevice per frame, both ways.
func BenchmarkPacketLoopback(b *testing.B) {
	lab := newLoopbackLab(b, PacketOptions{})
	d := lab.devs[0]
	var frames [][]byte
	for i := range PacketBatch {
		frames = append(frames, pktFrame(loMAC, i, 64))
	}
	bufs, sizes := newBufs(PacketBatch, 2048)
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
