package e2e

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/lvsd/lvsd/internal/lab"
)

// TestFragmentsLab sends a 4000-byte UDP datagram (its payload; 4028 bytes
// of IPv4, 4048 of IPv6), which the client's kernel cuts into 3 fragments,
// to a UDP echo service over IPv4 and IPv6, with a NAT, a DR and a TUN real
// server (decapsulated by `lvsd realserver`), one lab each. The real server,
// a real process, gets the whole datagram (its kernel reassembles what lvsd
// sends: fragments cut as received for NAT and DR, or, for TUN, the fragments
// of the outer packet) and answers 4004 bytes ("rs1 " and the datagram),
// which its kernel fragments: through lvsd for NAT (reassembled, rewritten,
// fragmented again), straight to the client for DR and TUN. The client gets
// the whole answer. The TAP's capture shows fragments going into lvsd and
// coming out of it; no fragment is dropped.
func TestFragmentsLab(t *testing.T) {
	t.Parallel() // see the package doc
	lab.Skip(t)
	bin := lab.BuildBinaries(t)
	for _, m := range []lab.RealMethod{lab.RealNAT, lab.RealDR, lab.RealTUNLvsd} {
		t.Run(string(m), func(t *testing.T) {
			l := lab.New(t)
			dt := l.DirectLab6(m)
			dt.StartUDP(bin, 5353)
			if m == lab.RealTUNLvsd {
				dt.StartRealservers(bin)
			}
			capture := l.Capture(dt.Director, lab.TAPName)
			svc := dt.Service(lab.Service{Protocol: "udp", Port: 5353, Scheduler: "rr"})
			svc6 := svc
			svc6.VIP = lab.VIP6
			dt.StartLvsd(bin, lab.LvsdOptions{}, svc, svc6)

			for _, vip := range []netip.Addr{lab.VIP, lab.VIP6} {
				payload := bytes.Repeat([]byte(fmt.Sprintf("%s-fragment-", vip)), 4000)[:4000]
				got, err := udpExchange(dt.Client, netip.AddrPortFrom(vip, 5353), payload)
				if err != nil {
					t.Fatalf("%v: %v", vip, err)
				}
				if want := append([]byte("rs1 "), payload...); !bytes.Equal(got, want) {
					t.Errorf("%v: answer of %d bytes, want %d (\"rs1 \" and the datagram)", vip, len(got), len(want))
				}
			}

			// In: the client's 3 fragments (and, NAT, the answer's).
			// Out: the request's 3 (NAT, DR) or the outer packet's (TUN);
			// for NAT the answer's as well. The capture may lag.
			wantIn := map[lab.RealMethod]int{lab.RealNAT: 6, lab.RealDR: 3, lab.RealTUNLvsd: 3}[m]
			wantOut := map[lab.RealMethod]int{lab.RealNAT: 6, lab.RealDR: 3, lab.RealTUNLvsd: 3}[m]
			var in, out map[bool]int
			for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(50 * time.Millisecond) {
				in, out = fragmentsSeen(capture.Frames())
				if min(in[false], in[true]) >= wantIn && min(out[false], out[true]) >= wantOut || time.Now().After(deadline) {
					break
				}
			}
			t.Logf("TAP: fragments into lvsd %v, out of lvsd %v (capture missed %d)", in, out, capture.Missed())
			for _, v6 := range []bool{false, true} {
				if in[v6] < wantIn || out[v6] < wantOut {
					t.Errorf("v6=%v: %d fragments into lvsd, %d out; want %d and %d at least", v6, in[v6], out[v6], wantIn, wantOut)
				}
			}
			st := dt.Status()
			// Each datagram went through the reassembly, the answers too
			// for NAT; the status shows it.
			wantReasm := map[lab.RealMethod]uint64{lab.RealNAT: 4, lab.RealDR: 2, lab.RealTUNLvsd: 2}[m]
			if i := st.Interfaces[0]; i.Reassembled < wantReasm || i.FragsHeld < 2*wantReasm {
				t.Errorf("status: %d datagrams reassembled from %d fragments, want at least %d from %d held (the last one completes each)", i.Reassembled, i.FragsHeld, wantReasm, 2*wantReasm)
			}
			for _, r := range []string{"frag-timeout", "frag-overlap", "frag-limit", "fragment"} {
				if n := st.Interfaces[0].Drops[r]; n != 0 {
					t.Errorf("lvsd dropped %d packets as %s", n, r)
				}
			}
			// The IPv6 tunnel carries 1460 bytes: the client's first
			// fragments (1496 bytes) get packet-too-big, as from IPVS,
			// and it sends the datagram again in smaller ones.
			wantTooBig := map[lab.RealMethod]uint64{lab.RealTUNLvsd: 1}[m]
			if n := st.Interfaces[0].Drops["too-big"]; n != wantTooBig {
				t.Errorf("lvsd answered %d packets with too-big, want %d", n, wantTooBig)
			}
		})
	}
}

// udpExchange sends payload from ns to ap and returns the answer, trying a
// few times: the first datagram may be lost while lvsd resolves the real
// server's MAC.
func udpExchange(ns lab.NS, ap netip.AddrPort, payload []byte) ([]byte, error) {
	var got []byte
	err := lab.Do(ns, func() error {
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(ap))
		if err != nil {
			return err
		}
		defer c.Close()
		buf := make([]byte, 65536)
		var last error
		for range 5 {
			if _, err := c.Write(payload); err != nil {
				return err
			}
			c.SetReadDeadline(time.Now().Add(2 * time.Second))
			n, err := c.Read(buf)
			if err == nil {
				got = append([]byte(nil), buf[:n]...)
				return nil
			}
			last = err
		}
		return fmt.Errorf("no answer from %v: %w", ap, last)
	})
	return got, err
}

// fragmentsSeen counts the IP fragments in a TAP's capture, by family:
// frames the kernel sent into lvsd (in) and frames lvsd wrote (out).
func fragmentsSeen(frames []lab.Frame) (in, out map[bool]int) {
	in, out = map[bool]int{}, map[bool]int{}
	for _, f := range frames {
		pk := gopacket.NewPacket(f.Data, layers.LayerTypeEthernet, gopacket.Lazy)
		frag := false
		v6 := false
		if ip, ok := pk.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ok {
			frag = ip.FragOffset != 0 || ip.Flags&layers.IPv4MoreFragments != 0
		} else if pk.Layer(layers.LayerTypeIPv6Fragment) != nil {
			frag, v6 = true, true
		}
		if !frag {
			continue
		}
		if f.Outgoing {
			in[v6]++
		} else {
			out[v6]++
		}
	}
	return in, out
}
