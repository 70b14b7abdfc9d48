package e2e

import (
	"context"
	"encoding/binary"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lvsd/lvsd/internal/lab"
)

// TestUDPFlood floods a NAT lab's UDP service with one-packet flows (a new
// source port per datagram) into a table of 1,000 connections at about
// 4,000 datagrams per second: the flood fills the table every quarter of a
// second, some 1,200 times the rate that fills it with the UDP timeout
// (1,000 entries per 300 s). Meanwhile an established HTTP keep-alive
// connection makes a request every 50 ms and a client opens 200 new
// connections one after another. lvsd evicts the flood's own entries
// (reserve_established keeps 10 % of the table for established
// connections): every request on the established connection succeeds and
// at least 99 % of the new connections do. Before UDP entries were
// evictable, the flood refused every new connection for the UDP timeout.
func TestUDPFlood(t *testing.T) {
	bin, l := lab.NewTest(t)
	tp := l.NATLab(lab.Options{})
	tp.StartHTTP(bin, 8080)
	tp.Globals = []string{"[connections]", "max = 1000"}
	tp.StartLvsd(bin, lab.LvsdOptions{},
		lab.Service{Port: 80, RealPort: 8080, Scheduler: "rr"},
		lab.Service{Protocol: "udp", Port: 53, RealPort: 5353, Scheduler: "rr"})

	keep := l.KeepAlive(tp.Client, 3*time.Second)
	get := func() (string, error) {
		_, client, err := keep.Get(vipURL)
		return client, err
	}
	conn, err := get()
	if err != nil {
		t.Fatalf("established connection: %v", err)
	}

	// The flood: a raw socket in the client namespace, IPv4/UDP from the
	// client's address and a new source port per datagram.
	var fd int
	if err := lab.Do(tp.Client, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
		return err
	}); err != nil {
		t.Fatalf("raw socket: %v", err)
	}
	defer unix.Close(fd)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var sent, sendErrs atomic.Int64
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stop()
	wg.Go(func() {
		const rate = 4000 // datagrams per second, 40 every 10 ms
		pkt := make([]byte, 28+8)
		src, vip := lab.ClientIP.As4(), lab.VIP.As4()
		pkt[0], pkt[8], pkt[9] = 0x45, 64, unix.IPPROTO_UDP
		binary.BigEndian.PutUint16(pkt[2:], uint16(len(pkt)))
		copy(pkt[12:], src[:])
		copy(pkt[16:], vip[:])
		binary.BigEndian.PutUint16(pkt[22:], 53)
		binary.BigEndian.PutUint16(pkt[24:], 8+8)
		to := &unix.SockaddrInet4{Addr: vip}
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		port := 1024
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			for range rate / 100 {
				port++
				if port > 65000 {
					port = 1025
				}
				binary.BigEndian.PutUint16(pkt[20:], uint16(port))
				if err := unix.Sendto(fd, pkt, 0, to); err != nil {
					sendErrs.Add(1)
					continue
				}
				sent.Add(1)
			}
		}
	})

	// The established connection, every 50 ms through the flood.
	var estOK, estFail atomic.Int64
	var estErr atomic.Value
	wg.Go(func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			c, err := get()
			switch {
			case err != nil:
				estFail.Add(1)
				estErr.Store(err.Error())
			case c != conn:
				estFail.Add(1)
				estErr.Store("answered on another connection: " + c)
			default:
				estOK.Add(1)
			}
		}
	})

	// Let the flood fill the table (it evicts), then open new connections
	// through it.
	before := tp.Status()
	for deadline := time.Now().Add(15 * time.Second); before.Table.Evicted == 0 && time.Now().Before(deadline); before = tp.Status() {
		time.Sleep(100 * time.Millisecond)
	}
	res := tp.Get(bin, vipURL, 200, "-timeout", "800ms")
	after := tp.Status()
	// The established connection must have carried at least 10 requests
	// through the flood; on a quiet machine the new connections take less
	// than the half second that needs, so the flood goes on until then.
	for deadline := time.Now().Add(5 * time.Second); estOK.Load()+estFail.Load() < 10 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	wg.Wait()

	t.Logf("flood: %d datagrams sent (%d send errors); table %d/%d, %d unestablished, evicted %d, refused %d",
		sent.Load(), sendErrs.Load(), after.Connections, after.Table.Max, after.Table.Unestablished, after.Table.Evicted, after.Table.Refused)
	t.Logf("new connections: %d of %d; established: %d requests ok, %d failed", res.OK, res.Requests, estOK.Load(), estFail.Load())
	if before.Table.Evicted == 0 || before.Connections < 900 {
		t.Errorf("the flood did not fill the table: %d connections, %d evicted", before.Connections, before.Table.Evicted)
	}
	if res.OK*100 < res.Requests*99 {
		t.Errorf("new connections during the flood: %d of %d succeeded, want at least 99 %%; errors: %s", res.OK, res.Requests, strings.Join(res.Errors, "; "))
	}
	if estFail.Load() != 0 || estOK.Load() < 10 {
		t.Errorf("established connection: %d ok, %d failed (last: %v)", estOK.Load(), estFail.Load(), estErr.Load())
	}
	if after.Connections > after.Table.Max {
		t.Errorf("table holds %d connections over its limit %d", after.Connections, after.Table.Max)
	}
}
