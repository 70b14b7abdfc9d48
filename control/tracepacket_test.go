package control

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParsePacket(t *testing.T) {
	ap := netip.MustParseAddrPort
	for _, c := range []struct {
		name, in string
		want     PacketDesc
		errWord  int // 0: no error
	}{
		{"syn by default", "tcp 198.18.0.10:40000 > 198.18.1.100:80", PacketDesc{Proto: "tcp", Src: ap("198.18.0.10:40000"), Dst: ap("198.18.1.100:80"), Flags: 0x02}, 0},
		{"flags", "tcp 198.18.0.10:40000 > 198.18.1.100:80 flags [S.]", PacketDesc{Proto: "tcp", Src: ap("198.18.0.10:40000"), Dst: ap("198.18.1.100:80"), Flags: 0x12}, 0},
		{"ack letters", "tcp 198.18.0.10:1 > 198.18.1.100:80 flags FA", PacketDesc{Proto: "tcp", Src: ap("198.18.0.10:1"), Dst: ap("198.18.1.100:80"), Flags: 0x11}, 0},
		{"none", "tcp 198.18.0.10:1 > 198.18.1.100:80 flags none", PacketDesc{Proto: "tcp", Src: ap("198.18.0.10:1"), Dst: ap("198.18.1.100:80")}, 0},
		{"udp iface", "udp [2001:2::10]:5353 > [2001:2::100]:53 iface lvt0", PacketDesc{Proto: "udp", Src: ap("[2001:2::10]:5353"), Dst: ap("[2001:2::100]:53"), Iface: "lvt0"}, 0},
		{"empty", "", PacketDesc{}, 1},
		{"protocol", "icmp 198.18.0.10:1 > 198.18.1.100:80", PacketDesc{}, 1},
		{"source", "tcp 198.18.0.10 > 198.18.1.100:80", PacketDesc{}, 2},
		{"arrow", "tcp 198.18.0.10:1 to 198.18.1.100:80", PacketDesc{}, 3},
		{"families", "tcp 198.18.0.10:1 > [2001:2::1]:80", PacketDesc{}, 4},
		{"bad flags", "tcp 198.18.0.10:1 > 198.18.1.100:80 flags SX", PacketDesc{}, 6},
		{"udp flags", "udp 198.18.0.10:1 > 198.18.1.100:53 flags S", PacketDesc{}, 5},
		{"no value", "tcp 198.18.0.10:1 > 198.18.1.100:80 iface", PacketDesc{}, 5},
		{"unknown word", "tcp 198.18.0.10:1 > 198.18.1.100:80 ttl 3", PacketDesc{}, 5},
		{"twice", "tcp 198.18.0.10:1 > 198.18.1.100:80 flags S flags A", PacketDesc{}, 7},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParsePacket(c.in)
			if c.errWord == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if d := cmp.Diff(c.want, got, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); d != "" {
					t.Errorf("(-want +got)\n%s", d)
				}
				again, err := ParsePacket(got.String())
				if err != nil || again != got {
					t.Errorf("String %q parses as %+v, %v", got.String(), again, err)
				}
				return
			}
			var pe *PacketError
			if !errors.As(err, &pe) || pe.Pos != c.errWord {
				t.Errorf("error %v, want one at word %d", err, c.errWord)
			}
		})
	}
}

// FuzzParsePacket: no panic, an error names a word of the input, and what
// parses prints as a description that parses to the same packet.
func FuzzParsePacket(f *testing.F) {
	for _, s := range []string{
		"tcp 198.18.0.10:40000 > 198.18.1.100:80 flags S",
		"udp [2001:2::10]:5353 > [2001:2::100]:53 iface lvt0",
		"tcp 1.2.3.4:1 > 5.6.7.8:2 flags [S.] iface x",
		"tcp [::ffff:1.2.3.4]:1 > 5.6.7.8:2 flags none",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePacket(s)
		if err != nil {
			var pe *PacketError
			if !errors.As(err, &pe) || pe.Pos < 1 {
				t.Fatalf("%q: error %v", s, err)
			}
			return
		}
		if p.Proto != "tcp" && p.Proto != "udp" || p.Src.Addr().Is4() != p.Dst.Addr().Is4() {
			t.Fatalf("%q: parsed %+v", s, p)
		}
		if again, err := ParsePacket(p.String()); err != nil || again != p {
			t.Fatalf("%q: String %q parses as %+v, %v", s, p.String(), again, err)
		}
	})
}
