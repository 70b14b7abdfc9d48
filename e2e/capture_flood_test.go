package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/lvsd/lvsd/control"
	"github.com/lvsd/lvsd/internal/lab"
)

// floodRate is the flood of TestCaptureFlood: 64-byte UDP datagrams per
// second, for floodTime.
const (
	floodRate = 100_000
	floodTime = 3 * time.Second
)

// floodPhase is what one flood measured.
type floodPhase struct {
	sent, forwarded, received uint64
	secs                      float64
}

func (p floodPhase) kpps(n uint64) float64 { return float64(n) / p.secs / 1000 }

// TestCaptureFlood floods a NAT UDP service at 100 kpps (iperf 2, 64-byte
// datagrams, 3 s) twice: without a capture, then with a capture of every
// UDP frame whose client reads nothing until the flood is over (a reader
// slower than any). It checks that the capture did not hold forwarding
// back: frames were missed, not waited for, and the second flood forwards
// at least a quarter as many datagrams as the first (a loose bound, for a
// shared machine: a capture that blocked its readers would stop them once
// its ring of 4096 frames was full); and that every frame lvsd forwarded
// during the capture was offered to it twice (as read and as written):
// written to the client or counted missed. The rates go to
// docs/observability.md. lvsd is on a TAP, or on an AF_PACKET veth with
// LVSD_CAPTURE_LINK=packet.
func TestCaptureFlood(t *testing.T) {
	lab.Skip(t)
	if _, err := exec.LookPath("iperf"); err != nil {
		t.Skip("iperf (2) is not installed: make lab-deps installs it")
	}
	bin := lab.BuildBinaries(t)
	l := lab.New(t)
	// LVSD_CAPTURE_LINK=packet puts lvsd on an AF_PACKET veth instead of
	// the TAP (whose loss-free rate is near the flood's).
	tp := l.NATLab(lab.Options{Packet: os.Getenv("LVSD_CAPTURE_LINK") == "packet"})
	// Nothing listens on the real servers' port 9: they drop the
	// datagrams (their ICMP errors are rate-limited by their kernels).
	svc := lab.Service{Protocol: "udp", Port: 9, Scheduler: "rr", Method: "nat"}
	// Ready when the VIP answers a ping (no UDP answer would come).
	tp.StartLvsd(bin, lab.LvsdOptions{Ready: func() error {
		_, err := l.TryExec(tp.Client, 5*time.Second, "ping", "-n", "-c", "1", "-W", "1", lab.VIP.String())
		return err
	}}, svc)
	// The flood is one flow: one real server, whose MAC lvsd learns from
	// a slow start (a datagram to a server being resolved is dropped).
	if out, err := l.TryExec(tp.Client, 30*time.Second, "iperf", "-c", lab.VIP.String(), "-p", "9", "-u", "-l", "64",
		"-b", "1000pps", "-t", "1", "--no-udp-fin"); err != nil {
		t.Fatalf("iperf warm-up: %v\n%s", err, out)
	}

	phase := func() floodPhase {
		t.Helper()
		fwd0, rx0 := forwardedIn(t, tp), realsRx(t, tp)
		out, err := l.TryExec(tp.Client, floodTime+30*time.Second, "iperf", "-c", lab.VIP.String(), "-p", "9", "-u", "-l", "64",
			"-b", fmt.Sprintf("%dpps", floodRate), "-t", fmt.Sprint(floodTime.Seconds()), "--no-udp-fin")
		sent, secs := iperfSent(out)
		if sent == 0 {
			t.Fatalf("iperf: %v\n%s", err, out)
		}
		time.Sleep(300 * time.Millisecond) // what lvsd and the veths still hold
		return floodPhase{sent: sent, forwarded: forwardedIn(t, tp) - fwd0, received: realsRx(t, tp) - rx0, secs: secs}
	}

	plain := phase()
	cs, err := control.Capture(t.Context(), tp.Control, control.CaptureParams{Filter: "udp", Duration: floodTime + 2*time.Second})
	if err != nil {
		t.Fatal(err)
	}
	captured := phase()
	// The reader wakes up: it reads what lvsd still has for it, until the
	// capture's duration ends.
	n, err := io.Copy(io.Discard, cs.Body)
	cs.Body.Close()
	if err != nil {
		t.Fatalf("reading the capture: %v", err)
	}
	written, missed, cerr := cs.Result()
	if cerr != nil {
		t.Errorf("capture: %v", cerr)
	}
	for _, c := range []struct {
		name string
		p    floodPhase
	}{{"without a capture", plain}, {"with a capture read by nobody", captured}} {
		t.Logf("%s: sent %d datagrams in %.2f s (%.1f kpps), lvsd forwarded %d (%.1f kpps), the real servers received %d (%.1f kpps)",
			c.name, c.p.sent, c.p.secs, c.p.kpps(c.p.sent), c.p.forwarded, c.p.kpps(c.p.forwarded), c.p.received, c.p.kpps(c.p.received))
	}
	t.Logf("capture: %d frames written (%d bytes read after the flood), %d missed", written, n, missed)
	if captured.forwarded*4 < plain.forwarded {
		t.Errorf("with the capture lvsd forwarded %d datagrams, without %d: the slow reader held forwarding back", captured.forwarded, plain.forwarded)
	}
	if missed == 0 {
		t.Errorf("no frame missed: the reader was not slow (%d written)", written)
	}
	if written+missed < 2*captured.forwarded {
		t.Errorf("written %d + missed %d < twice the %d datagrams forwarded during the capture: frames neither captured nor counted",
			written, missed, captured.forwarded)
	}
}

// forwardedIn is the frames lvsd forwarded toward real servers.
func forwardedIn(t *testing.T, tp *lab.Topology) uint64 {
	t.Helper()
	var n uint64
	for _, ifc := range tp.Status().Interfaces {
		n += ifc.ForwardedIn
	}
	return n
}

// realsRx is the packets the real servers' interfaces received.
func realsRx(t *testing.T, tp *lab.Topology) uint64 {
	t.Helper()
	var n uint64
	for _, r := range tp.Reals {
		out := tp.Lab.IP(r.NS, "-s", "-j", "link", "show", "dev", lab.GuestLink)
		var links []struct {
			Stats64 struct {
				RX struct {
					Packets uint64 `json:"packets"`
				} `json:"rx"`
			} `json:"stats64"`
		}
		if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 1 {
			t.Fatalf("ip -s -j link in %s: %v\n%s", r.NS, err, out)
		}
		n += links[0].Stats64.RX.Packets
	}
	return n
}

var (
	iperfSentLine = regexp.MustCompile(`(?m)Sent (\d+) datagrams`)
	iperfPeriod   = regexp.MustCompile(`(?m)^\[\s*\d+\]\s+0\.0+-([0-9.]+) sec`)
)

// iperfSent reads the datagrams sent and the sending time from iperf 2's
// output (one thread).
func iperfSent(out string) (sent uint64, secs float64) {
	if m := iperfSentLine.FindStringSubmatch(out); m != nil {
		sent, _ = strconv.ParseUint(m[1], 10, 64)
	}
	for _, m := range iperfPeriod.FindAllStringSubmatch(out, -1) {
		if s, _ := strconv.ParseFloat(m[1], 64); s > secs {
			secs = s
		}
	}
	if secs == 0 {
		secs = floodTime.Seconds()
	}
	return sent, secs
}
