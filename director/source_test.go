package director

import (
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// TestTunnelSourcePerDestination: the outer source of a TUN packet is the
// director's address on the real server's subnet (the preferred source of
// its route, as IPVS's IP_VS_RT_MODE_CONNECT), not the interface's first
// address.
func TestTunnelSourcePerDestination(t *testing.T) {
	w := startDirector(t, `
[[interface]]
name = "lvt0"
mac = "02:00:5e:00:00:01"
addresses = ["192.0.2.1/25", "192.0.2.129/25"]

[[virtual_server]]
protocol = "tcp"
address = "192.0.2.100"
port = 80
scheduler = "rr"
method = "tun"
  [[virtual_server.real_server]]
  address = "192.0.2.21"
  [[virtual_server.real_server]]
  address = "192.0.2.150"
`)
	want := map[string]string{"192.0.2.21": "192.0.2.1", "192.0.2.150": "192.0.2.129"}
	got := map[string]string{}
	for sport := uint16(40001); len(got) < len(want) && sport < 40040; sport++ {
		w.dev.Inject(w.tcpFrame(clientMAC, dirMAC, clientIP, vip, sport, 80, true, false))
		var p gopacket.Packet
		select {
		case p = <-w.out:
		case <-time.After(200 * time.Millisecond): // the real server's MAC is being resolved
			continue
		}
		ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		if ip == nil || ip.Protocol != layers.IPProtocolIPv4 {
			continue // the netstack's own frames
		}
		got[ip.DstIP.String()] = ip.SrcIP.String()
	}
	for rip, src := range want {
		if got[rip] != src {
			t.Errorf("tunnel to %s from %q, want %s (the DIP on its subnet)", rip, got[rip], src)
		}
	}
}
