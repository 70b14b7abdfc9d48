package director

import (
	"encoding/binary"
	"strings"
	"testing"
)

// TestDecodeGRE: a traced frame in GRE (ipvsadm --tun-type gre) shows its
// outer addresses as GRE and its inner packet, as an IPIP one shows as IPIP.
func TestDecodeGRE(t *testing.T) {
	inner := make([]byte, 20+20)
	inner[0], inner[9] = 0x45, 6
	binary.BigEndian.PutUint16(inner[2:], uint16(len(inner)))
	copy(inner[12:], []byte{192, 0, 2, 10})
	copy(inner[16:], []byte{192, 0, 2, 100})
	binary.BigEndian.PutUint16(inner[20:], 40000)
	binary.BigEndian.PutUint16(inner[22:], 80)
	inner[32], inner[33] = 5<<4, 0x02 // SYN
	for _, tc := range []struct {
		proto byte
		hdr   []byte
		want  string
	}{
		{47, []byte{0, 0, 0x08, 0x00}, "GRE 192.0.2.1 > 192.0.2.21: TCP 192.0.2.10:40000 > 192.0.2.100:80 [S]"},
		{4, nil, "IPIP 192.0.2.1 > 192.0.2.21: TCP 192.0.2.10:40000 > 192.0.2.100:80 [S]"},
	} {
		ip := append(make([]byte, 20), append(append([]byte(nil), tc.hdr...), inner...)...)
		ip[0], ip[8], ip[9] = 0x45, 64, tc.proto
		binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)))
		copy(ip[12:], []byte{192, 0, 2, 1})
		copy(ip[16:], []byte{192, 0, 2, 21})
		if got := decode(ip, false).String(); !strings.Contains(got, tc.want) {
			t.Errorf("protocol %d: %q, want %q", tc.proto, got, tc.want)
		}
	}
}
