package e2e

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/lvsd/lvsd/internal/lab"
)

// TestTUNPathMTU checks path-MTU discovery through a TUN-mode service. The
// tunnel costs 20 bytes, so with 1500-byte links a client's full-size
// packets (1500 bytes, DF set) do not fit: lvsd answers each with ICMP
// fragmentation-needed carrying MTU 1480, from the VIP, as IPVS does.
//
//   - A 1 MiB HTTP upload (TCP, whose super-frames lvsd segments for the
//     tunnel) completes: the client's kernel lowers its path MTU to the VIP
//     to 1480 and its TCP sends smaller segments.
//   - A 1500-byte UDP datagram with DF (IP_PMTUDISC_PROBE: DF whatever the
//     known path MTU) gets the same answer.
//
// The client's capture shows the ICMP errors, the client's route cache the
// learnt MTU, lvsd's counters the packets answered (drop reason too-big).
func TestTUNPathMTU(t *testing.T) {
	t.Parallel() // see the package doc
	bin, l := lab.NewTest(t)
	dt := l.DirectLab(lab.RealTUNLvsd)
	dt.StartHTTP(bin, 80)
	dt.StartRealservers(bin)
	clientCap := l.Capture(dt.Client, lab.GuestLink)
	udp := lab.Service{Protocol: "udp", Port: 5353, Scheduler: "rr"}
	dt.StartLvsd(bin, lab.LvsdOptions{}, dt.Service(lab.Service{Protocol: "tcp", Port: 80, Scheduler: "rr"}), dt.Service(udp))

	res := dt.Get(bin, vipURL+"upload", 1, "-upload", "1048576")
	if res.OK != 1 {
		t.Fatalf("1 MiB upload through the tunnel failed: %v\n%s", res.Err, res.Output)
	}
	t.Logf("upload: %s", strings.TrimSpace(strings.Split(res.Output, "\n")[0]))
	if out := l.IP(dt.Client, "route", "get", lab.VIP.String()); !strings.Contains(out, "mtu 1480") {
		t.Errorf("the client's route to the VIP learnt no MTU of 1480:\n%s", out)
	}

	// A datagram with DF, 1500 bytes: too big again.
	if err := lab.SendUDP(dt.Client, lab.VIP.String()+":5353", syscall.IP_MTU_DISCOVER, 3 /* IP_PMTUDISC_PROBE */, make([]byte, 1500-28)); err != nil {
		t.Fatalf("sending a 1500-byte datagram with DF: %v", err)
	}

	// The client's capture: ICMP errors from the VIP with MTU 1480, about
	// TCP to VIP:80 and about the datagram.
	deadline := time.Now().Add(5 * time.Second)
	var tcpErrs, udpErrs int
	var other []string
	for {
		tcpErrs, udpErrs, other = 0, 0, nil
		for _, f := range clientCap.Frames() {
			if f.Outgoing {
				continue
			}
			pk := gopacket.NewPacket(f.Data, layers.LayerTypeEthernet, gopacket.Default)
			ip, _ := pk.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
			ic, _ := pk.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
			if ip == nil || ic == nil {
				continue
			}
			mtu := int(ic.Seq) // the second half of the rest of the header
			q := ic.Payload
			switch {
			case ic.TypeCode != layers.CreateICMPv4TypeCode(3, 4) || ip.SrcIP.String() != lab.VIP.String() || mtu != 1480 || len(q) < 28:
				other = append(other, pk.String())
			case q[9] == 6 && q[22] == 0 && q[23] == 80:
				tcpErrs++
			case q[9] == 17 && q[22] == 0x14 && q[23] == 0xe9: // port 5353
				udpErrs++
			default:
				other = append(other, pk.String())
			}
		}
		if tcpErrs > 0 && udpErrs > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("ICMP fragmentation-needed (MTU 1480) from the VIP: %d about TCP, %d about UDP", tcpErrs, udpErrs)
	if tcpErrs == 0 || udpErrs == 0 || len(other) > 0 {
		t.Errorf("want ICMP fragmentation-needed from the VIP with MTU 1480 about TCP and UDP; unexpected ICMP:\n%s", strings.Join(other, "\n"))
	}
	st := dt.Status()
	if got := st.Interfaces[0].Drops["too-big"]; got < uint64(tcpErrs+udpErrs) {
		t.Errorf("lvsd counts %d too-big packets, the client got %d errors", got, tcpErrs+udpErrs)
	}
}
