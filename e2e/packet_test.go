package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lvsd/lvsd/internal/lab"
)

// TestNATPacket runs the NAT lab with lvsd attached to a veth by AF_PACKET
// (type = "packet") with two sockets in a fanout group, instead of a TAP:
// scheduling, the netstack's ARP and ICMP on the veth's own MAC, UDP, and
// bulk transfers both ways, whose TCP super-frames (GSO) must pass whole.
func TestNATPacket(t *testing.T) {
	t.Parallel() // see the package doc
	lab.Skip(t)
	lab.NeedTools(t, "ping")
	bin := lab.BuildBinaries(t)
	l := lab.New(t)
	tp := l.NATLab(lab.Options{Packet: true, Queues: 2})
	cfg := tp.Config(wrrHTTP)
	if !strings.Contains(cfg, `type = "packet"`) || strings.Contains(cfg, "mac =") {
		t.Fatalf("config is not a packet interface without mac:\n%s", cfg)
	}
	servers := tp.StartHTTP(bin, 8080)
	tp.StartUDP(bin, 5353)
	tp.StartLvsd(bin, lab.LvsdOptions{}, wrrHTTP,
		lab.Service{Protocol: "udp", Port: 53, RealPort: 5353, Scheduler: "rr", Method: "nat"})
	checkWRR(t, tp, bin, servers, 300)

	if out, err := l.Ping(tp.Client, lab.VIP.String(), 2); err != nil {
		t.Errorf("ping %s from the client: %v\n%s", lab.VIP, err, out)
	}
	if mac, state := l.Neighbor(tp.Client, lab.VIP.String()); mac != tp.MAC {
		t.Errorf("client's neighbour entry for the VIP: lladdr %q (%s), want the veth's %s", mac, state, tp.MAC)
	}

	const size = 16 << 20
	down := tp.Get(bin, fmt.Sprintf("%sbytes?n=%d", vipURL, size), 1)
	if down.OK != 1 || !strings.Contains(down.Output, fmt.Sprintf("received %d bytes", size)) {
		t.Errorf("download of %d bytes through lvsd: %+v\n%s", size, down, down.Output)
	}
	up := tp.Get(bin, vipURL+"upload", 1, "-upload", fmt.Sprint(size))
	if up.OK != 1 || !strings.Contains(up.Output, fmt.Sprintf("sent %d bytes", size)) {
		t.Errorf("upload of %d bytes through lvsd: %+v\n%s", size, up, up.Output)
	}

	echo, err := l.UDPSend(tp.Client, bin, lab.VIP.String()+":53", "over-packet")
	if err != nil || !strings.HasSuffix(echo, " over-packet") {
		t.Errorf("udp echo through lvsd: %q, %v", echo, err)
	}

	out := l.Exec(tp.Director, bin.Lvsd, "counters", "-control", tp.Control)
	if !strings.Contains(out, lab.PacketName+": rx ") {
		t.Errorf("lvsd counters lacks the interface:\n%s", out)
	}
	t.Logf("lvsd counters:\n%s", out)
	// Both sockets of the fanout group read frames: 300 connections' flows
	// hash over both.
	st := tp.Status()
	if len(st.Interfaces) != 1 || st.Interfaces[0].Type != "packet" || len(st.Interfaces[0].Queues) != 2 {
		t.Fatalf("status interfaces: want one packet interface with 2 queues, got %+v", st.Interfaces)
	}
	for q, c := range st.Interfaces[0].Queues {
		if c.RxFrames == 0 {
			t.Errorf("queue %d of the fanout group received nothing: %+v", q, st.Interfaces[0].Queues)
		}
	}

	// lvsd does not change an interface it attaches to: an mtu above the
	// veth's own (1500) is refused at start, naming the interface, before
	// any socket is opened, while the running lvsd goes on.
	bad := strings.Replace(cfg, `type = "packet"`, "type = \"packet\"\nmtu = 9000", 1)
	path := l.WriteFile("packet-mtu.toml", bad)
	out, err = l.TryExec(tp.Director, 20*time.Second, bin.Lvsd, "run", "-c", path, "-control", path+".sock")
	if err == nil || !strings.Contains(out, lab.PacketName) || !strings.Contains(out, "its MTU is 1500, below the configured mtu 9000") {
		t.Errorf("lvsd run with mtu 9000 on a 1500-byte veth: %v, want a refusal naming the interface and both MTUs:\n%s", err, out)
	}
	if res := tp.Get(bin, vipURL, 6); res.OK != 6 {
		t.Errorf("after the refused start, 6 requests through the running lvsd: %d ok\n%s", res.OK, strings.Join(res.Errors, "\n"))
	}
}
