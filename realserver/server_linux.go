package realserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lvsd/lvsd/device"
)

// Options configure a Server. Defaults:
//
//	TUN        none (required)
//	VIPs       none (required)
//	Directors  any source
//	MTU        the device's (1500 for a new one)
//	GUEPort    0: no gue
//	Logger     none
type Options struct {
	// TUN names the TUN device the inner packets are written to. A device
	// that exists (`ip tuntap add NAME mode tun`, persistent) is attached
	// to and left in place; a missing one is created, which needs
	// CAP_NET_ADMIN, and vanishes when the Server stops, with any address
	// on it. The Server brings it up.
	TUN string
	// VIPs are the virtual addresses of the services this real server
	// answers for; only inner packets to them are written to the TUN. The
	// host must hold them (on lo, or on the TUN when it is persistent).
	VIPs []netip.Addr
	// Directors, when not empty, are the only outer source addresses
	// accepted: the directors' addresses (DIPs) toward this host.
	Directors []netip.Addr
	// MTU, when not 0, is set on the TUN device. It limits only the
	// packets the kernel would send into it, which the Server discards.
	MTU int
	// GUEPort, when not 0, is the UDP port on which GUE packets are
	// received (the director's real server has tun_type gue with this
	// tun_port), over IPv4 and IPv6; 0 receives no GUE.
	GUEPort int
	// Logger receives start-up warnings about the host's configuration,
	// rate-limited drop reports and the counters at stop.
	Logger *slog.Logger
}

// Counters are a Server's packet counts by Reason.
type Counters [NumReasons]uint64

// Server decapsulates IPIP for the local kernel. Create it with New and run
// it with Run.
type Server struct {
	opts Options
	f    filter
	log  *slog.Logger

	socks []rawSocket // see rawSockets
	tun   device.Device

	counts  [NumReasons]atomic.Uint64
	writes  atomic.Uint64 // frames written into the TUN (a super-frame counts once)
	lastLog atomic.Int64
	// closing is set before the sockets close: a read through a raw
	// connection then fails with the poller's own "use of closed file",
	// which is no os.ErrClosed.
	closing atomic.Bool
}

// rawSockets are the raw sockets a Server reads: IPv4 and IPv6 outer
// packets (ip_vs_tunnel_xmit, ip_vs_tunnel_xmit_v6), each with IPv4 (4) or
// IPv6 (41) inside, or GRE (47, the gre tunnel type) with either inside.
var rawSockets = []struct {
	family int
	proto  uint8
}{
	{unix.AF_INET, protoIPIP}, {unix.AF_INET, protoIPv6}, {unix.AF_INET6, protoIPIP}, {unix.AF_INET6, protoIPv6},
	{unix.AF_INET, protoGRE}, {unix.AF_INET6, protoGRE},
}

// rawSocket is one open socket: a raw one, or the GUE UDP socket.
type rawSocket struct {
	*os.File
	v6    bool  // AF_INET6: a read returns the outer packet's payload, recvfrom its source
	proto uint8 // the outer packet's next header (protoUDP: the GUE socket)
}

// protoUDP marks the GUE socket (rawSocket.proto).
const protoUDP = 17

// recvBuf is the raw sockets' receive buffer: a burst of full-size packets
// from a fast director must not overflow it.
const recvBuf = 4 << 20

// New opens the raw IPIP sockets and the TUN device and checks the host's
// configuration (each problem found is logged as a warning: a VIP that is not
// a local address, strict reverse-path filtering on the TUN). It needs
// CAP_NET_RAW, and CAP_NET_ADMIN to create or bring up the TUN.
func New(o Options) (*Server, error) {
	if o.TUN == "" {
		return nil, errors.New("realserver: no TUN device named")
	}
	if len(o.VIPs) == 0 {
		return nil, errors.New("realserver: no VIP: name the virtual addresses this server answers for")
	}
	s := &Server{opts: o, log: o.Logger}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	for _, a := range o.VIPs {
		s.f.vips = append(s.f.vips, a.Unmap())
	}
	for _, a := range o.Directors {
		s.f.directors = append(s.f.directors, a.Unmap())
	}
	ok := false
	defer func() {
		if !ok {
			s.close()
		}
	}()
	for _, sk := range rawSockets {
		fd, err := unix.Socket(sk.family, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, int(sk.proto))
		if err != nil {
			if sk.family == unix.AF_INET6 && errors.Is(err, unix.EAFNOSUPPORT) {
				s.log.Warn("no IPv6 on this host: only IPv4 outer packets are received")
				continue
			}
			return nil, fmt.Errorf("realserver: raw socket for IP protocol %d: %w", sk.proto, err)
		}
		if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, recvBuf) != nil {
			unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, recvBuf) // capped by rmem_max
		}
		// Non-blocking and registered with the runtime's poller: Close
		// wakes a goroutine blocked in Read.
		name := fmt.Sprintf("raw-ip-proto-%d", sk.proto)
		if sk.family == unix.AF_INET6 {
			name = fmt.Sprintf("raw-ipv6-proto-%d", sk.proto)
		}
		s.socks = append(s.socks, rawSocket{File: os.NewFile(uintptr(fd), name), v6: sk.family == unix.AF_INET6, proto: sk.proto})
	}
	if o.GUEPort != 0 {
		sock, err := openGUE(o.GUEPort)
		if err != nil {
			return nil, err
		}
		s.socks = append(s.socks, sock)
	}
	tun, _, err := device.Open(device.Spec{Name: o.TUN, Kind: device.TUN, MTU: o.MTU, Create: true, VNetHdr: true, Logger: s.log})
	if err != nil {
		return nil, fmt.Errorf("realserver: %w", err)
	}
	s.tun = tun[0]
	s.checkHost()
	ok = true
	return s, nil
}

// openGUE opens the GUE socket: UDP on port, IPv6 and IPv4 (a dual-stack
// socket: IPv4 sources come IPv4-mapped), accepting the zero UDP checksum
// that IPVS's gue with nocsum sends over IPv6 too (UDP_NO_CHECK6_RX), with
// the raw sockets' receive buffer.
func openGUE(port int) (rawSocket, error) {
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return rawSocket{}, fmt.Errorf("realserver: gue socket: %w", err)
	}
	for _, o := range []struct{ level, name, v int }{
		{unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0},
		{unix.IPPROTO_UDP, unix.UDP_NO_CHECK6_RX, 1},
		{unix.SOL_SOCKET, unix.SO_REUSEADDR, 1},
	} {
		if err := unix.SetsockoptInt(fd, o.level, o.name, o.v); err != nil {
			unix.Close(fd)
			return rawSocket{}, fmt.Errorf("realserver: gue socket option %d: %w", o.name, err)
		}
	}
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, recvBuf) != nil {
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, recvBuf) // capped by rmem_max
	}
	if err := unix.Bind(fd, &unix.SockaddrInet6{Port: port}); err != nil {
		unix.Close(fd)
		return rawSocket{}, fmt.Errorf("realserver: gue socket: bind udp port %d: %w", port, err)
	}
	return rawSocket{File: os.NewFile(uintptr(fd), fmt.Sprintf("udp-gue-%d", port)), v6: true, proto: protoUDP}, nil
}

// checkHost logs what would keep the kernel from answering injected packets.
func (s *Server) checkHost() {
	local := map[netip.Addr]bool{}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil {
				local[p.Addr().Unmap()] = true
			}
		}
	}
	for _, v := range s.f.vips {
		if !local[v] {
			s.log.Warn("VIP is not a local address: the kernel will drop the packets written to the TUN",
				"vip", v, "fix", fmt.Sprintf("ip addr add %s dev lo", netip.PrefixFrom(v, v.BitLen())))
		}
	}
	rp := max(readSysctl("net/ipv4/conf/all/rp_filter"), readSysctl("net/ipv4/conf/"+s.opts.TUN+"/rp_filter"))
	if rp == 1 {
		s.log.Warn("strict reverse-path filtering on the TUN: the kernel will drop packets from clients it routes elsewhere",
			"fix", fmt.Sprintf("sysctl -w net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.%s.rp_filter=0", s.opts.TUN))
	}
}

// readSysctl returns the integer in /proc/sys/NAME, or -1.
func readSysctl(name string) int {
	b, err := os.ReadFile("/proc/sys/" + name)
	if err != nil {
		return -1
	}
	var v int
	if _, err := fmt.Sscan(strings.TrimSpace(string(b)), &v); err != nil {
		return -1
	}
	return v
}

// Run decapsulates until ctx ends, then closes the sockets and the TUN, waits
// for its goroutines and logs the counters. It returns nil after a normal
// stop, or the error that stopped a socket.
func (s *Server) Run(ctx context.Context) error {
	s.log.Info("realserver running", "tun", s.opts.TUN, "vips", fmt.Sprint(s.f.vips),
		"directors", fmt.Sprint(s.opts.Directors), "gue_port", s.opts.GUEPort)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		ferr error
	)
	fail := func(err error) {
		mu.Lock()
		if ferr == nil {
			ferr = err
		}
		mu.Unlock()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for _, sock := range s.socks {
		wg.Go(func() {
			if err := s.receive(sock); err != nil {
				fail(err)
				cancel()
			}
		})
	}
	wg.Go(s.drain)
	<-ctx.Done()
	s.close()
	wg.Wait()
	c := s.Counters()
	args := []any{}
	for r := range NumReasons {
		args = append(args, r.String(), c[r])
	}
	args = append(args, "tun_writes", s.writes.Load())
	s.log.Info("realserver stopped", args...)
	return ferr
}

// receive reads one raw socket until it is closed: a batch of packets per
// system call (recvmmsg), each decapsulated in its receive slot, the inner
// TCP segments of a flow that follow each other joined into one super-frame
// (coalescer), and one TUN write per frame.
func (s *Server) receive(sock rawSocket) error {
	rc, err := sock.SyscallConn()
	if err != nil {
		return fmt.Errorf("realserver: %s: %w", sock.Name(), err)
	}
	b := newRxBatch(sock.v6)
	c := newCoalescer(rxBatchSize)
	var closed bool
	write := func(frame []byte, segs int) {
		r := Injected
		if _, err := s.tun.Write(frame); err != nil {
			if errors.Is(err, os.ErrClosed) {
				closed = true
				if s.closing.Load() {
					// Stopping: close shut the sockets, then the TUN,
					// while this loop still held a batch read before.
					// Its frames are lost to the stop, not refused by
					// the device: no write-failed drop.
					return
				}
			}
			r = WriteFailed
			s.logDrop(r, "err", err)
		}
		s.counts[r].Add(uint64(segs))
		s.writes.Add(1)
	}
	for !closed {
		n, err := b.recv(rc)
		if err != nil {
			if errors.Is(err, os.ErrClosed) || s.closing.Load() {
				return nil
			}
			if errors.Is(err, unix.EINTR) || errors.Is(err, unix.ENOBUFS) {
				continue
			}
			return fmt.Errorf("realserver: read %s: %w", sock.Name(), err)
		}
		s.decapBatch(b, n, sock, c)
		c.flush(write)
	}
	return nil
}

// decapBatch decapsulates the n packets of b, received on sock, and hands
// the inner ones that pass to c; the others are counted by reason. It does
// not allocate.
func (s *Server) decapBatch(b *rxBatch, n int, sock rawSocket, c *coalescer) {
	for i := range n {
		slot, data, trunc, from := b.packet(i)
		var (
			inner []byte
			r     Reason
		)
		switch {
		case trunc:
			r = Malformed
		case sock.proto == protoUDP:
			inner, r = s.f.decapGUE(data, from)
		case sock.v6 && sock.proto == protoGRE:
			inner, r = s.f.decapGRE(data, from)
		case sock.v6:
			// An IPv6 raw socket returns the payload after the outer
			// header and its extension headers, reassembled.
			inner, r = s.f.decapInner(data, sock.proto, from)
		default:
			inner, r = s.f.decap(data)
		}
		if r != Injected {
			s.counts[r].Add(1)
			s.logDrop(r)
			continue
		}
		start := cap(slot) - cap(inner) // inner is slot[start:start+len(inner)]
		c.add(slot, start, start+len(inner))
	}
}

// drain reads and discards what the kernel routes into the TUN: nothing,
// when the host is set up as docs/modes.md says.
func (s *Server) drain() {
	buf := make([]byte, vnetHdrLen+1<<16) // a GSO frame with its virtio-net header
	for {
		if _, err := s.tun.Read(buf); err != nil {
			if errors.Is(err, os.ErrClosed) || errors.Is(err, io.EOF) {
				return
			}
			continue
		}
		// The kernel's own IPv6 traffic on a new link (router
		// solicitations, MLD) lands here too: counted, not reported.
		s.counts[RoutedIntoTUN].Add(1)
	}
}

// logDrop reports a drop at most once per second.
func (s *Server) logDrop(r Reason, args ...any) {
	now := time.Now().UnixNano()
	last := s.lastLog.Load()
	if now-last < int64(time.Second) || !s.lastLog.CompareAndSwap(last, now) {
		return
	}
	s.log.Warn("dropping packets", append([]any{"reason", r.String(), "rate_limit", time.Second.String()}, args...)...)
}

// Counters returns the packet counts so far. It may run concurrently with Run.
func (s *Server) Counters() Counters {
	var c Counters
	for i := range c {
		c[i] = s.counts[i].Load()
	}
	return c
}

// close closes the sockets and the TUN; blocked reads return.
func (s *Server) close() {
	s.closing.Store(true)
	for _, sock := range s.socks {
		sock.Close()
	}
	if s.tun != nil {
		s.tun.Close()
	}
}
