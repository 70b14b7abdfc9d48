package pkttest

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Scenario is one file of testdata/packets: a virtual service, a frame that
// arrives for it, the verdict the fast path must give and, for a Transmit,
// the frame lvsd must write. In and Expect are written by hand; InFrame,
// Out and the drop reason are the frames as bytes (hex), which `go test
// ./forward/ -run TestScenarios -update` regenerates from In and from
// forward's result. Both Expect (hand-written) and the exact bytes are
// checked, so that an update cannot quietly accept a wrong frame.
type Scenario struct {
	Name    string      `json:"-"` // the file name without .json
	Doc     string      `json:"doc"`
	Service ScenService `json:"service"`
	In      ScenFrame   `json:"in"`
	// Verdict is "transmit", "to-stack", "drop" or "held" (a fragment kept
	// for reassembly); Drop names the reason counted (forward.DropReason's
	// String) when it is "drop".
	Verdict string `json:"verdict"`
	Drop    string `json:"drop,omitempty"`
	// Expect is checked on Out: the fields that the mode must set.
	Expect *ScenExpect `json:"expect,omitempty"`
	// InFrame and Out are hex; Out only for "transmit".
	InFrame string `json:"in_frame"`
	Out     string `json:"out,omitempty"`
}

// ScenService is the virtual service with its one real server.
type ScenService struct {
	Proto  string `json:"proto"`  // "tcp" or "udp"
	VIP    string `json:"vip"`    // address
	Port   uint16 `json:"port"`   // virtual port
	Method string `json:"method"` // "nat", "dr" or "tun"
	Real   string `json:"real"`   // address:port
}

// ScenFrame describes the input frame (see Frame): addresses as text.
type ScenFrame struct {
	Src     string `json:"src"` // address:port
	Dst     string `json:"dst"`
	Proto   string `json:"proto"`           // "tcp" (default) or "udp"
	Flags   string `json:"flags,omitempty"` // TCP flags among "SAFR"
	TTL     uint8  `json:"ttl,omitempty"`
	DF      bool   `json:"df,omitempty"`
	FragOff uint16 `json:"frag_off,omitempty"`
	MF      bool   `json:"mf,omitempty"`
	Payload string `json:"payload,omitempty"`
	DstMAC  string `json:"dst_mac,omitempty"` // default the director's
	// ZeroUDPCsum sends a UDP datagram without checksum (0).
	ZeroUDPCsum bool `json:"zero_udp_csum,omitempty"`
	// BadIPCsum flips the IPv4 header checksum; Truncate cuts that many
	// bytes off the end of the frame.
	BadIPCsum bool `json:"bad_ip_csum,omitempty"`
	Truncate  int  `json:"truncate,omitempty"`
}

// ScenExpect are fields of the output frame (Summary's names); empty ones
// are not checked. Inner is the encapsulated packet of an IPIP frame.
type ScenExpect struct {
	DstMAC string       `json:"dst_mac,omitempty"`
	SrcMAC string       `json:"src_mac,omitempty"`
	Src    string       `json:"src,omitempty"`
	Dst    string       `json:"dst,omitempty"`
	TTL    uint8        `json:"ttl,omitempty"`
	IPIP   *ScenOuterIP `json:"ipip,omitempty"`
}

// ScenOuterIP is the outer header of an IPIP frame.
type ScenOuterIP struct {
	Src string `json:"src"`
	Dst string `json:"dst"`
}

// Build returns the frame f describes.
func (f ScenFrame) Build(tb testing.TB) []byte {
	tb.Helper()
	fr := Frame{TTL: f.TTL, DF: f.DF, FragOff: f.FragOff, MF: f.MF, Payload: f.Payload, ZeroUDPCsum: f.ZeroUDPCsum}
	var err error
	if fr.Src, err = netip.ParseAddrPort(f.Src); err != nil {
		tb.Fatalf("in.src: %v", err)
	}
	if fr.Dst, err = netip.ParseAddrPort(f.Dst); err != nil {
		tb.Fatalf("in.dst: %v", err)
	}
	switch f.Proto {
	case "", "tcp":
		fr.Proto = TCP
	case "udp":
		fr.Proto = UDP
	default:
		tb.Fatalf("in.proto %q: want tcp or udp", f.Proto)
	}
	for _, c := range f.Flags {
		i := strings.IndexRune("FSR.A", c) // bit positions of FIN, SYN, RST, ACK
		if i < 0 || c == '.' {
			tb.Fatalf("in.flags %q: want letters of SAFR", f.Flags)
		}
		fr.Flags |= 1 << i
	}
	if f.DstMAC != "" {
		m, err := net.ParseMAC(f.DstMAC)
		if err != nil || len(m) != 6 {
			tb.Fatalf("in.dst_mac %q: %v", f.DstMAC, err)
		}
		fr.DstMAC = [6]byte(m)
	}
	b := fr.Build(tb)
	if f.BadIPCsum {
		b[L3Off(false)+10] ^= 0xff
	}
	return b[:len(b)-f.Truncate]
}

// Frames returns the scenario's input and expected output as bytes.
func (s *Scenario) Frames(tb testing.TB) (in, out []byte) {
	tb.Helper()
	in, err := hex.DecodeString(s.InFrame)
	if err != nil {
		tb.Fatalf("%s: in_frame: %v", s.Name, err)
	}
	if out, err = hex.DecodeString(s.Out); err != nil {
		tb.Fatalf("%s: out: %v", s.Name, err)
	}
	return in, out
}

// Comparable returns a copy of a frame with the bytes that vary from run to
// run zeroed: the outer IPv4 identification and header checksum of an IPIP
// frame (without DF, each forwarding worker numbers its tunnel packets from
// its own counter). CheckExpect verifies that checksum.
func (s *Scenario) Comparable(frame []byte) []byte {
	c := append([]byte{}, frame...)
	if s.Expect != nil && s.Expect.IPIP != nil && len(c) >= 14+20 {
		ip := c[14:]
		ip[4], ip[5], ip[10], ip[11] = 0, 0, 0, 0
	}
	return c
}

// CheckExpect checks out, a frame of an Ethernet link, against s.Expect.
func (s *Scenario) CheckExpect(tb testing.TB, out []byte) {
	tb.Helper()
	e := s.Expect
	if e == nil {
		return
	}
	frame := out
	if e.IPIP != nil {
		ip := IPOf(false, out)
		if ip[0]>>4 != 4 || ip[9] != 4 {
			tb.Fatalf("%s: want an IPIP packet, got IP version %d protocol %d", s.Name, ip[0]>>4, ip[9])
		}
		if sum := Fold(OnesSum(ip[:int(ip[0]&0xf)*4], 0)); sum != 0xffff {
			tb.Errorf("%s: outer IPv4 header checksum invalid (sum %#04x)", s.Name, sum)
		}
		src, dst := netip.AddrFrom4([4]byte(ip[12:16])), netip.AddrFrom4([4]byte(ip[16:20]))
		if src.String() != e.IPIP.Src || dst.String() != e.IPIP.Dst {
			tb.Errorf("%s: outer IP %v -> %v, want %s -> %s", s.Name, src, dst, e.IPIP.Src, e.IPIP.Dst)
		}
		// The inner packet, behind the outer link and IP headers.
		inner := append(append([]byte(nil), out[:14]...), ip[int(ip[0]&0xf)*4:]...)
		frame = inner
	}
	got := Summarize(tb, false, frame)
	CheckSums(tb, IPOf(false, frame))
	for _, c := range []struct{ name, got, want string }{
		{"dst_mac", got.DstMAC, e.DstMAC}, {"src_mac", got.SrcMAC, e.SrcMAC},
		{"src", got.Src, e.Src}, {"dst", got.Dst, e.Dst},
	} {
		if c.want != "" && c.got != c.want {
			tb.Errorf("%s: %s %s, want %s", s.Name, c.name, c.got, c.want)
		}
	}
	if e.TTL != 0 && got.TTL != e.TTL {
		tb.Errorf("%s: ttl %d, want %d", s.Name, got.TTL, e.TTL)
	}
}

// ScenarioDir is the directory of the scenarios: testdata/packets at the
// module root, found from the test's working directory.
func ScenarioDir(tb testing.TB) string {
	tb.Helper()
	dir, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "testdata", "packets")
		}
		up := filepath.Dir(dir)
		if up == dir {
			tb.Fatal("no go.mod above the working directory")
		}
		dir = up
	}
}

// Scenarios reads every scenario, in file name order.
func Scenarios(tb testing.TB) []*Scenario {
	tb.Helper()
	files, err := filepath.Glob(filepath.Join(ScenarioDir(tb), "*.json"))
	if err != nil || len(files) == 0 {
		tb.Fatalf("no scenarios in %s (%v)", ScenarioDir(tb), err)
	}
	var out []*Scenario
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		s := new(Scenario)
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(s); err != nil {
			tb.Fatalf("%s: %v", f, err)
		}
		s.Name = strings.TrimSuffix(filepath.Base(f), ".json")
		out = append(out, s)
	}
	return out
}

// Write stores the scenario back into its file (for -update).
func (s *Scenario) Write(tb testing.TB) {
	tb.Helper()
	b, err := json.MarshalIndent(s, "", "\t")
	if err != nil {
		tb.Fatal(err)
	}
	p := filepath.Join(ScenarioDir(tb), s.Name+".json")
	if err := os.WriteFile(p, append(b, '\n'), 0o644); err != nil {
		tb.Fatal(err)
	}
}

// TOML returns a configuration of lvsd with the director's interface lvt0
// (DirMAC, 192.0.2.1/24) and the scenario's service, scheduled rr.
func (s *Scenario) TOML() string {
	rip, _ := netip.ParseAddrPort(s.Service.Real)
	return fmt.Sprintf(`[[interface]]
name = "lvt0"
mac = %q
addresses = ["%s/24"]

[[virtual_server]]
protocol = %q
address = %q
port = %d
scheduler = "rr"
method = %q
  [[virtual_server.real_server]]
  address = %q
  port = %d
`, HW(DirMAC).String(), DIP4, s.Service.Proto, s.Service.VIP, s.Service.Port, s.Service.Method, rip.Addr(), rip.Port())
}
