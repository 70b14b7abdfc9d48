package e2e

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"

	"github.com/lvsd/lvsd/internal/lab"
)

// tunTypeCounts sorts what a capture on a real server's link saw from the
// DIP: tunnelled frames of the expected format, frames of another, frames
// whose whole bytes were captured and whose tunnel checksum verified, and
// gue frames with the remote checksum option.
type tunTypeCounts struct {
	ok, wrong, verified, remcsum int
	firstWrong                   string
}

// TestTUNTypes balances HTTP over two TUN real servers of the other tunnel
// types, both decapsulated by `lvsd realserver` (this kernel has no fou or
// gre module): rs1 with gue (port 6080, remote checksum offload), rs2 with
// gre and its checksum. GETs and two 1 MiB uploads (TCP super-frames
// segmented into the tunnels) are answered by both; a capture on each real
// server's link sees only outer IPv4 packets from the DIP of its tunnel's
// format (UDP to 6080 from a port of the local range, GUE version 0 with
// IPv4 inside; GRE with the C bit and protocol 0x0800), whose UDP or GRE
// checksums verify over the frames captured whole; `lvsd adm -L --tun-info`
// lists both as ipvsadm does; the real servers dropped nothing.
func TestTUNTypes(t *testing.T) {
	t.Parallel() // see the package doc
	bin, l := lab.NewTest(t)
	dt := l.DirectLab(lab.RealTUNLvsd, lab.RealTUNLvsd)
	dt.StartHTTP(bin, 80)
	rsProcs := dt.StartRealservers(bin, "-gue-port", "6080")
	caps := map[string]*lab.Capture{}
	for _, r := range dt.Reals {
		caps[r.Name] = l.Capture(r.NS, lab.GuestLink)
	}
	svc := dt.Service(lab.Service{Protocol: "tcp", Port: 80, Scheduler: "rr", RealExtra: [][]string{
		{`tun_type = "gue"`, `tun_port = 6080`, `tun_csum = "remcsum"`},
		{`tun_type = "gre"`, `tun_csum = "csum"`},
	}})
	dt.StartLvsd(bin, lab.LvsdOptions{}, svc)
	url := "http://" + lab.VIP.String() + "/"

	res := dt.Get(bin, url, 20)
	if res.OK != 20 || res.Servers["rs1"] != 10 || res.Servers["rs2"] != 10 {
		t.Fatalf("GET through gue and gre: %d of 20 ok, servers %v: %v\n%s", res.OK, res.Servers, res.Err, res.Output)
	}
	up := dt.Get(bin, url+"upload", 2, "-upload", "1048576")
	if up.OK != 2 || up.Servers["rs1"] != 1 || up.Servers["rs2"] != 1 {
		t.Fatalf("1 MiB uploads through gue and gre: %d of 2 ok, servers %v: %v\n%s", up.OK, up.Servers, up.Err, up.Output)
	}

	out, err := exec.Command(bin.Lvsd, "adm", "--control", dt.Control, "-Ln", "--tun-info").CombinedOutput()
	if err != nil {
		t.Fatalf("lvsd adm -Ln --tun-info: %v\n%s", err, out)
	}
	for _, want := range []string{
		fmt.Sprintf("  -> %-28s %-7s %-13s ", dt.Reals[0].Addr.String()+":80", "Tunnel", "gue:6080:remcsum"),
		fmt.Sprintf("  -> %-28s %-7s %-13s ", dt.Reals[1].Addr.String()+":80", "Tunnel", "gre:csum"),
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("lvsd adm -Ln --tun-info shows no %q:\n%s", want, out)
		}
	}

	for i, r := range dt.Reals {
		settle(t, caps[r.Name])
		frames := caps[r.Name].Stop()
		c := sortTunTypes(frames, r.Addr, i == 0)
		t.Logf("%s: %d frames: %+v", r.Name, len(frames), c)
		if c.ok == 0 || c.wrong != 0 {
			t.Errorf("%s: %d tunnelled frames of the right format, %d of another (first: %s)", r.Name, c.ok, c.wrong, c.firstWrong)
		}
		if c.verified == 0 {
			t.Errorf("%s: no frame captured whole with a checksum that verifies", r.Name)
		}
		if i == 0 && c.remcsum == 0 {
			t.Errorf("%s: no gue frame with the remote checksum option (the client's partial checksums)", r.Name)
		}
		counts := lab.RealserverCounts(t, rsProcs[r.Name])
		t.Logf("%s: realserver %v", r.Name, counts)
		if counts["injected"] == 0 || counts["malformed"]+counts["not-vip"]+counts["not-director"]+counts["write-failed"]+counts["bad-checksum"] != 0 {
			t.Errorf("%s: realserver counters %v; want injected > 0 and no drop", r.Name, counts)
		}
	}
}

// sortTunTypes checks the frames from the DIP to rip: gue (rs1) or gre.
func sortTunTypes(frames []lab.Frame, rip netip.Addr, gue bool) tunTypeCounts {
	var c tunTypeCounts
	wrong := func(why string) {
		c.wrong++
		if c.firstWrong == "" {
			c.firstWrong = why
		}
	}
	for _, f := range frames {
		b := f.Data
		if f.Outgoing || len(b) < 14+20 || binary.BigEndian.Uint16(b[12:14]) != 0x0800 {
			continue
		}
		ip := b[14:]
		if netip.AddrFrom4([4]byte(ip[12:16])) != lab.DIP || netip.AddrFrom4([4]byte(ip[16:20])) != rip {
			continue
		}
		ihl := int(ip[0]&0xf) * 4
		whole := f.Len == len(b) && int(binary.BigEndian.Uint16(ip[2:4])) == len(ip)
		if binary.BigEndian.Uint16(ip[6:8])&0x3fff != 0 {
			wrong("a fragment")
			continue
		}
		p := ip[ihl:]
		if gue {
			if ip[9] != 17 || len(p) < 12 {
				wrong("not UDP")
				continue
			}
			sport, dport := binary.BigEndian.Uint16(p[0:2]), binary.BigEndian.Uint16(p[2:4])
			g := p[8:]
			if dport != 6080 || sport < 32768 || sport >= 60999 || g[0]&0xe0 != 0 || g[1] != 4 {
				wrong("UDP or GUE header")
				continue
			}
			if g[0]&0x1f == 2 && binary.BigEndian.Uint16(g[2:4]) == 1 && binary.BigEndian.Uint32(g[4:8]) == 0x80000000 {
				c.remcsum++
			} else if g[0]&0x1f != 0 || binary.BigEndian.Uint16(g[2:4]) != 0 {
				wrong("GUE options")
				continue
			}
			if whole {
				pseudo := checksum.Combine(checksum.Checksum(ip[12:20], 0), checksum.Combine(17, uint16(len(p))))
				if binary.BigEndian.Uint16(p[6:8]) == 0 || checksum.Checksum(p, pseudo) != 0xffff {
					wrong("UDP checksum")
					continue
				}
				c.verified++
			}
		} else {
			if ip[9] != 47 || len(p) < 8 || binary.BigEndian.Uint16(p[0:2]) != 0x8000 || binary.BigEndian.Uint16(p[2:4]) != 0x0800 {
				wrong("GRE header")
				continue
			}
			if whole {
				if checksum.Checksum(p, 0) != 0xffff {
					wrong("GRE checksum")
					continue
				}
				c.verified++
			}
		}
		c.ok++
	}
	return c
}
