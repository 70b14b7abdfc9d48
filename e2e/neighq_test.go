package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lvsd/lvsd/internal/lab"
)

// TestNeighborQueueRuntimeAdd: the first packets to a real server added at
// runtime (lvsd adm -a), whose MAC lvsd does not know yet, wait for its ARP
// resolution and then arrive, as with the kernel's neighbour queue: a
// single UDP datagram (sent once, never retried) is answered, and a TCP
// connection opens without the client's SYN retransmission (its first
// retransmission timeout is 1 s). The real server's address is new to
// lvsd's netstack, and the real server ignores ARP (arp off) until the
// frames are held; then it asks for the DIP itself, and lvsd's netstack
// learns its MAC from that request.
func TestNeighborQueueRuntimeAdd(t *testing.T) {
	t.Parallel() // see the package doc
	bin, l := lab.NewTest(t)
	tp := l.NATLab(lab.Options{Reals: 2})
	tp.StartHTTP(bin, 8080)
	tp.StartUDP(bin, 5353)
	rs1, rs2 := tp.Reals[0], tp.Reals[1]
	tcpSvc := lab.Service{Port: 80, RealPort: 8080, Scheduler: "wrr", Method: "nat"}
	udpSvc := lab.Service{Protocol: "udp", Port: 53, RealPort: 5353, Scheduler: "wrr", Method: "nat"}
	tp.WithReals([]lab.Real{rs1}, func() { tp.StartLvsd(bin, lab.LvsdOptions{}, tcpSvc, udpSvc) })

	// A second address of rs2 that lvsd has never seen, and no ARP.
	const newRS = "198.18.2.22"
	l.IP(rs2.NS, "addr", "add", newRS+"/24", "dev", "lvteth0")
	l.IP(rs2.NS, "link", "set", "dev", "lvteth0", "arp", "off")
	// New connections go to the new real server only.
	adm(t, bin, tp, "", "-e", "-t", "198.18.1.100:80", "-r", rs1.Addr.String()+":8080", "-m", "-w", "0")
	adm(t, bin, tp, "", "-e", "-u", "198.18.1.100:53", "-r", rs1.Addr.String()+":5353", "-m", "-w", "0")
	adm(t, bin, tp, "", "-a", "-t", "198.18.1.100:80", "-r", newRS+":8080", "-m", "-w", "1")
	adm(t, bin, tp, "", "-a", "-u", "198.18.1.100:53", "-r", newRS+":5353", "-m", "-w", "1")

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
	// Wait until both first packets are held, then let rs2 speak ARP and
	// ask for the DIP from its new address.
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
	l.IP(rs2.NS, "link", "set", "dev", "lvteth0", "arp", "on")
	l.IP(rs2.NS, "neigh", "flush", "dev", "lvteth0")
	sentAt = time.Now()
	if out, err := l.TryExec(rs2.NS, 5*time.Second, "ping", "-n", "-c", "1", "-W", "2", "-I", newRS, "198.18.2.1"); err != nil {
		t.Logf("ping from rs2: %v\n%s", err, out)
	}
	wg.Wait()

	if udpErr != nil || !strings.Contains(echo, "rs2 first") {
		t.Errorf("the single UDP datagram: %v, echo %q; want rs2's echo", udpErr, echo)
	}
	if tcpErr != nil {
		t.Errorf("TCP connect: %v", tcpErr)
	} else if connectTook >= time.Second {
		t.Errorf("TCP connect took %v: the first SYN was lost and retransmitted", connectTook)
	}
	st := tp.Status().Interfaces[0]
	if st.NeighborSent < 2 || st.Drops["no-neighbor"] != 0 || st.Drops["neighbor-queue-full"] != 0 {
		t.Errorf("neighbour counters: held %d sent %d, drops no-neighbor %d neighbor-queue-full %d",
			st.NeighborHeld, st.NeighborSent, st.Drops["no-neighbor"], st.Drops["neighbor-queue-full"])
	}
	t.Log(fmt.Sprintf("TCP connect %v (the MAC learnt %v after the SYN); held %d, sent %d",
		connectTook.Round(time.Millisecond), sentAt.Sub(tcpStart).Round(time.Millisecond), st.NeighborHeld, st.NeighborSent))
}
