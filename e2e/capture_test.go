package e2e

import (
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/lvsd/lvsd/internal/lab"
)

// TestCapture runs `lvsd capture` against a lab's lvsd while HTTP requests
// go through a NAT service, and reads the file: the client's SYNs to
// VIP:80 on "lvttap0 in", the same SYNs rewritten to a real server's :8080
// on "lvttap0 out". Then the bad inputs: a filter that does not parse
// names its word, a file that cannot be written stops the capture (and a
// new one may start), and a client killed mid-capture stops it too; lvsd
// forwards throughout.
func TestCapture(t *testing.T) {
	t.Parallel() // see the package doc
	bin, l := lab.NewTest(t)
	tp := l.NATLab(lab.Options{})
	tp.StartHTTP(bin, 8080)
	tp.StartLvsd(bin, lab.LvsdOptions{}, wrrHTTP)

	file := filepath.Join(l.Dir(), "cap.pcapng")
	capt := exec.Command(bin.Lvsd, "capture", "-control", tp.Control, "-w", file, "-duration", "4s", "tcp", "and", "port", "80", "or", "port", "8080")
	if out, err := capt.CombinedOutput(); err == nil || !strings.Contains(string(out), `"or" (word 5)`) {
		t.Errorf("a filter with \"or\": %v\n%s\nwant an error naming the word", err, out)
	} else if capt.ProcessState.ExitCode() != 2 {
		t.Errorf("bad filter: exit %d, want 2", capt.ProcessState.ExitCode())
	}

	capt = exec.Command(bin.Lvsd, "capture", "-control", tp.Control, "-w", file, "-duration", "4s", "tcp")
	var stderr strings.Builder
	capt.Stderr = &stderr
	if err := capt.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // the capture is armed
	res := tp.Get(bin, vipURL, 12)
	if res.OK != 12 {
		t.Errorf("requests during the capture: %d ok of 12: %v", res.OK, res.Errors)
	}
	if err := capt.Wait(); err != nil {
		t.Fatalf("lvsd capture: %v\n%s", err, stderr.String())
	}
	t.Logf("lvsd capture: %s", strings.TrimSpace(stderr.String()))
	if !strings.Contains(stderr.String(), "0 missed") {
		t.Errorf("frames missed at 12 requests: %s", stderr.String())
	}

	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewNgReader(f, pcapgo.NgReaderOptions{WantMixedLinkType: true})
	if err != nil {
		t.Fatal(err)
	}
	synIn, synOut := 0, 0
	vip := lab.VIP.String()
	for {
		data, ci, err := r.ReadPacketData()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		intf, _ := r.Interface(ci.InterfaceIndex)
		p := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.NoCopy)
		ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		tcp, _ := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if ip == nil || tcp == nil {
			t.Errorf("a frame that is not TCP passed the filter tcp on %s", intf.Name)
			continue
		}
		if !tcp.SYN || tcp.ACK {
			continue
		}
		switch {
		case intf.Name == "lvttap0 in" && ip.DstIP.String() == vip && tcp.DstPort == 80:
			synIn++
		case intf.Name == "lvttap0 out" && ip.DstIP.String() != vip && tcp.DstPort == 8080 &&
			ip.SrcIP.String() == lab.ClientIP.String():
			synOut++
		default:
			t.Errorf("unexpected SYN on %s: %v:%d > %v:%d", intf.Name, ip.SrcIP, tcp.SrcPort, ip.DstIP, tcp.DstPort)
		}
	}
	if synIn != 12 || synOut != 12 {
		t.Errorf("SYNs: %d read to VIP:80, %d written to RIP:8080; want 12 and 12", synIn, synOut)
	}

	// A file that cannot be written: /dev/full fails every write.
	out, err := exec.Command(bin.Lvsd, "capture", "-control", tp.Control, "-w", "/dev/full", "-duration", "2s").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "capture stopped") {
		t.Errorf("capture to /dev/full: %v\n%s\nwant a write error", err, out)
	}
	// A client killed mid-capture: lvsd notices the connection close.
	killed := exec.Command(bin.Lvsd, "capture", "-control", tp.Control, "-w", filepath.Join(l.Dir(), "k.pcapng"))
	if err := killed.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	killed.Process.Signal(syscall.SIGKILL)
	killed.Wait()
	// Both stopped their capture: a new one starts (not 409), and lvsd
	// still forwards.
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, err = exec.Command(bin.Lvsd, "capture", "-control", tp.Control, "-w", filepath.Join(l.Dir(), "n.pcapng"), "-duration", "100ms").CombinedOutput()
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Errorf("a capture after the failed and the killed one: %v\n%s", err, out)
	}
	if err := lab.ProbeTCP(tp.Client, netip.AddrPortFrom(lab.VIP, 80)); err != nil {
		t.Errorf("lvsd does not forward after the captures: %v", err)
	}
}
