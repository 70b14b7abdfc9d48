package pkttest

import (
	"fmt"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// recorder is a testing.TB that records failures instead of failing.
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

// TestCheckSums: a built frame passes; one flipped bit in the IPv4 header,
// in the TCP segment or in a UDP/IPv6 datagram is found.
func TestCheckSums(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    Frame
		flip int // offset in the IP packet
		want string
	}{
		{"ipv4 header", Frame{Src: AP(Cli4, 1000), Dst: AP(VIP4, 80), Flags: SYN}, 8, "IPv4 header checksum invalid"},
		{"tcp over ipv4", Frame{Src: AP(Cli4, 1000), Dst: AP(VIP4, 80), Flags: SYN, Payload: "x"}, 40, "L4 (protocol 6) checksum invalid"},
		{"udp over ipv6", Frame{Src: AP(Cli6, 1000), Dst: AP(VIP6, 53), Proto: UDP, Payload: "q"}, 48, "L4 (protocol 17) checksum invalid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			frame := tc.f.Build(t)
			ok := &recorder{TB: t}
			CheckSums(ok, IPOf(false, frame))
			if len(ok.errs) != 0 {
				t.Fatalf("a built frame fails: %v", ok.errs)
			}
			IPOf(false, frame)[tc.flip] ^= 0x01
			bad := &recorder{TB: t}
			CheckSums(bad, IPOf(false, frame))
			if len(bad.errs) != 1 || len(bad.errs[0]) < len(tc.want) || bad.errs[0][:len(tc.want)] != tc.want {
				t.Errorf("after flipping a bit: %q, want one %q", bad.errs, tc.want)
			}
		})
	}
}

// TestCheck: each checker names the field that differs.
func TestCheck(t *testing.T) {
	frame := Frame{Src: AP(Cli4, 1000), Dst: AP(VIP4, 80), Flags: SYN, TTL: 9}.Build(t)
	r := &recorder{TB: t}
	Check(r, false, frame, SrcMAC(CliMAC), DstMAC(DirMAC), Src(AP(Cli4, 1000)), Dst(AP(VIP4, 80)), TTL(9), ValidChecksums())
	if len(r.errs) != 0 {
		t.Fatalf("matching checkers failed: %v", r.errs)
	}
	Check(r, false, frame, DstMAC(RSMAC), Dst(AP(RIP4, 8080)), TTL(8))
	want := []string{
		"destination MAC: got 02:00:5e:00:00:01, want 02:00:5e:00:00:21",
		"destination: got 192.0.2.100:80, want 192.0.2.21:8080",
		"TTL: got 9, want 8",
	}
	if fmt.Sprint(r.errs) != fmt.Sprint(want) {
		t.Errorf("failures %q, want %q", r.errs, want)
	}
}

// TestCheckSumsICMPv4: an ICMPv4 message's checksum covers the message
// alone (no pseudo-header): a correct one passes, a flipped bit fails.
func TestCheckSumsICMPv4(t *testing.T) {
	ip := Serialize(t,
		&layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: Cli4.AsSlice(), DstIP: VIP4.AsSlice()},
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 7, Seq: 1},
		gopacket.Payload("ping"))
	ok := &recorder{TB: t}
	CheckSums(ok, ip)
	if len(ok.errs) != 0 {
		t.Fatalf("a correct ICMPv4 echo fails: %v", ok.errs)
	}
	ip[len(ip)-1] ^= 0x01
	bad := &recorder{TB: t}
	CheckSums(bad, ip)
	if len(bad.errs) != 1 {
		t.Errorf("after flipping a bit: %q, want one error", bad.errs)
	}
}
