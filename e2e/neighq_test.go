package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/lvsd/lvsd/internal/lab"
)

// TestNeighborQueueRuntimeAdd: the first packets to a NAT or DR real server
// added at runtime (lvsd adm -a), whose MAC lvsd does not know yet, wait
// for it and then arrive, as with the kernel's neighbour queue: a single
// UDP datagram (sent once, never retried) is answered, and a TCP connection
// opens without the client's SYN retransmission (its first retransmission
// timeout is 1 s): the client sends one SYN. The real server (rs2, idle
// until then) answers no ARP request (arp_ignore 8), so lvsd's resolution
// cannot succeed by itself; once the first packets are held, it sends a
// datagram to the DIP, and lvsd's netstack learns its MAC from its ARP
// request.
func TestNeighborQueueRuntimeAdd(t *testing.T) {
	t.Parallel() // see the package doc
	for _, method := range []string{"nat", "dr"} {
		t.Run(method, func(t *testing.T) {
			t.Parallel()
			neighborQueueRuntimeAdd(t, method)
		})
	}
}

func neighborQueueRuntimeAdd(t *testing.T, method string) {
	bin, l := lab.NewTest(t)
	var (
		tp               *lab.Topology
		newRS, dip, flag string
		tcpPort, udpPort uint16 = 8080, 5353
		tcpSvc, udpSvc   lab.Service
	)
	switch method {
	case "nat":
		tp = l.NATLab(lab.Options{Reals: 2})
		dip, flag = "198.18.2.1", "-m"
	case "dr":
		tp = l.DirectLab(lab.RealDR, lab.RealDR).Topology
		dip, flag = "198.18.1.1", "-g"
		tcpPort, udpPort = 80, 53 // DR maps no port
	}
	tp.StartHTTP(bin, int(tcpPort))
	tp.StartUDP(bin, int(udpPort))
	rs1, rs2 := tp.Reals[0], tp.Reals[1]
	tcpSvc = lab.Service{Port: 80, RealPort: tcpPort, Scheduler: "wrr", Method: method}
	udpSvc = lab.Service{Protocol: "udp", Port: 53, RealPort: udpPort, Scheduler: "wrr", Method: method}
	tp.WithReals([]lab.Real{rs1}, func() { tp.StartLvsd(bin, lab.LvsdOptions{}, tcpSvc, udpSvc) })

	// rs2 answers no ARP request, and asks anew for the DIP's MAC.
	l.Sysctl(rs2.NS, "net.ipv4.conf.lvteth0.arp_ignore", "8")
	l.IP(rs2.NS, "neigh", "flush", "dev", "lvteth0")
	newRS = rs2.Addr.String()
	// New connections go to the new real server only.
	tr, ur := fmt.Sprintf(":%d", tcpPort), fmt.Sprintf(":%d", udpPort)
	adm(t, bin, tp, "", "-e", "-t", "198.18.1.100:80", "-r", rs1.Addr.String()+tr, flag, "-w", "0")
	adm(t, bin, tp, "", "-e", "-u", "198.18.1.100:53", "-r", rs1.Addr.String()+ur, flag, "-w", "0")
	adm(t, bin, tp, "", "-a", "-t", "198.18.1.100:80", "-r", newRS+tr, flag, "-w", "1")
	adm(t, bin, tp, "", "-a", "-u", "198.18.1.100:53", "-r", newRS+ur, flag, "-w", "1")

	// The client's SYNs to the VIP: one, unless it had to retransmit.
	cliCap := l.Capture(tp.Client, lab.GuestLink)
	var (
		wg               sync.WaitGroup
		echo             string
		udpErr, tcpErr   error
		connectTook      time.Duration
		tcpStart, sentAt time.Time
	)
	wg.Add(2)
	go func() {
		defer wg.Done()
		// One datagram, one chance.
		echo, udpErr = l.TryExec(tp.Client, 10*time.Second, bin.Labserver, "udp-send", "-addr", "198.18.1.100:53",
			"-msg", "first", "-tries", "1", "-timeout", "5s")
	}()
	go func() {
		defer wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		tcpStart = time.Now()
		c, err := lab.DialContext(tp.Client)(ctx, "tcp", "198.18.1.100:80")
		connectTook = time.Since(tcpStart)
		if err != nil {
			tcpErr = err
			return
		}
		c.Close()
	}()
	// Wait until both first packets are held, then let rs2 ask for the
	// DIP's MAC.
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := tp.Status()
		if st.Interfaces[0].NeighborHeld >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the first packets to %s were not held: %+v", newRS, st.Interfaces[0])
		}
		time.Sleep(10 * time.Millisecond)
	}
	sentAt = time.Now()
	if err := lab.SendUDP(rs2.NS, dip+":9", syscall.IP_TTL, 64, []byte("arp")); err != nil {
		t.Fatal(err)
	}
	wg.Wait()

	if udpErr != nil || !strings.Contains(echo, "rs2 first") {
		t.Errorf("the single UDP datagram: %v, echo %q; want rs2's echo", udpErr, echo)
	}
	if tcpErr != nil {
		t.Errorf("TCP connect: %v", tcpErr)
	}
	if n := clientSYNs(cliCap.Stop()); n != 1 {
		t.Errorf("the client sent %d SYNs to the VIP (connect took %v), want 1: the first SYN was lost and retransmitted", n, connectTook)
	}
	st := tp.Status().Interfaces[0]
	if st.NeighborSent < 2 || st.Drops["no-neighbor"] != 0 || st.Drops["neighbor-queue-full"] != 0 {
		t.Errorf("neighbour counters: held %d sent %d, drops no-neighbor %d neighbor-queue-full %d",
			st.NeighborHeld, st.NeighborSent, st.Drops["no-neighbor"], st.Drops["neighbor-queue-full"])
	}
	t.Logf("TCP connect %v (the MAC learnt %v after the SYN); held %d, sent %d",
		connectTook.Round(time.Millisecond), sentAt.Sub(tcpStart).Round(time.Millisecond), st.NeighborHeld, st.NeighborSent)
}

// clientSYNs counts the TCP SYNs (without ACK) to the VIP's port 80 that
// the client sent in frames.
func clientSYNs(frames []lab.Frame) int {
	n := 0
	for _, f := range frames {
		if !f.Outgoing {
			continue
		}
		pk := gopacket.NewPacket(f.Data, layers.LayerTypeEthernet, gopacket.Default)
		ip, _ := pk.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		tcp, _ := pk.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if ip != nil && tcp != nil && ip.DstIP.Equal(lab.VIP.AsSlice()) && tcp.DstPort == 80 && tcp.SYN && !tcp.ACK {
			n++
		}
	}
	return n
}
