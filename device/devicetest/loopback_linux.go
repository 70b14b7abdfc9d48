package devicetest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lvsd/lvsd/device"
)

// Loopback runs AFPacket devices on the loopback interface of a private
// network namespace: what one writes on lo, the kernel receives on lo. The
// namespace belongs to one OS thread, which exits when its goroutine ends;
// the namespace goes with the last socket made in it.
type Loopback struct {
	// Devs are the devices on lo, opened with the options given to
	// NewLoopback. The cleanup of the test closes them.
	Devs []*device.AFPacket
	// inject is a plain AF_PACKET socket on lo without qdisc bypass: what it
	// sends passes the taps as PACKET_OUTGOING first, then comes back in.
	inject int
}

// The MACs of a Loopback. LoMAC is the address lo gets in the private
// namespace: lo's own address is all zeros, which OpenAFPacket refuses (no
// Ethernet hardware address), and a non-zero one lets the kernel tell frames
// for this host from others. OtherMAC is another host's; PeerMAC is the
// source of the frames Frame builds.
var (
	LoMAC    = net.HardwareAddr{0x02, 0x6c, 0x76, 0x74, 0x00, 0x01}
	OtherMAC = net.HardwareAddr{0x02, 0x6c, 0x76, 0x74, 0x00, 0x99}
	PeerMAC  = net.HardwareAddr{0x02, 0x6c, 0x76, 0x74, 0x00, 0x02}
)

// NewLoopback makes the namespace, brings lo up with LoMAC and opens
// AFPacket devices with opts (Name "lo"). It skips unless root.
func NewLoopback(tb testing.TB, opts device.AFPacketOptions) *Loopback {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root: a private network namespace and AF_PACKET sockets")
	}
	opts.Name = "lo"
	type result struct {
		lab  *Loopback
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
		lab, err := setUp(opts)
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
		for _, d := range r.lab.Devs {
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

// setUp runs in the new namespace.
func setUp(opts device.AFPacketOptions) (*Loopback, error) {
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(s)
	// The address first: lo refuses a new one while up.
	if err := setLoopbackMAC(s, "lo", LoMAC); err != nil {
		return nil, fmt.Errorf("SIOCSIFHWADDR lo: %w", err)
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
	devs, err := device.OpenAFPacket(opts)
	if err != nil {
		unix.Close(inj)
		return nil, err
	}
	return &Loopback{Devs: devs, inject: inj}, nil
}

// Inject sends frames one by one through the lab's plain socket: each comes
// in on lo as if from the wire.
func (lab *Loopback) Inject(tb testing.TB, frames ...[]byte) {
	tb.Helper()
	for i, f := range frames {
		if n, err := unix.Write(lab.inject, f); err != nil || n != len(f) {
			tb.Fatalf("inject frame %d: wrote %d of %d: %v", i, n, len(f), err)
		}
	}
}

// Frame returns an Ethernet frame from PeerMAC to dst of n bytes (n >= 20)
// with the local experimental Ethertype and a payload telling frame seq
// apart.
func Frame(dst net.HardwareAddr, seq, n int) []byte {
	f := make([]byte, n)
	copy(f, dst)
	copy(f[6:], PeerMAC)
	f[12], f[13] = 0x88, 0xb5
	binary.BigEndian.PutUint32(f[14:], uint32(seq))
	for i := 18; i < n; i++ {
		f[i] = byte(seq + i)
	}
	return f
}
