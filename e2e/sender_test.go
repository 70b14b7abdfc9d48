package e2e

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lvsd/lvsd/internal/lab"
)

// TestSenderThread runs lvsd with sender = "thread" (a sender per queue
// writes what the queue's reader forwards) over each kind of device: NAT
// over a two-queue TAP (read in batches of the frames waiting) and over
// AF_PACKET (scheduling, 16 MiB each way in GSO super-frames, UDP), and
// TUN mode, whose IPIP segments of each super-frame the sender writes, with
// a 16 MiB upload whose SHA-256 the real server checks.
func TestSenderThread(t *testing.T) {
	for _, typ := range []string{"tap", "packet"} {
		t.Run("nat-"+typ, func(t *testing.T) {
			lab.Skip(t)
			bin := lab.BuildBinaries(t)
			l := lab.New(t)
			tp := l.NATLab(lab.Options{Packet: typ == "packet", Queues: 2, Sender: "thread"})
			if cfg := tp.Config(wrrHTTP); !strings.Contains(cfg, `sender = "thread"`) {
				t.Fatalf("config has no sender = \"thread\":\n%s", cfg)
			}
			servers := tp.StartHTTP(bin, 8080)
			tp.StartUDP(bin, 5353)
			p := tp.StartLvsd(bin, lab.LvsdOptions{}, wrrHTTP,
				lab.Service{Protocol: "udp", Port: 53, RealPort: 5353, Scheduler: "rr", Method: "nat"})
			if out := p.Output(); !strings.Contains(out, "sender=thread") {
				t.Errorf("lvsd's log does not show sender=thread:\n%s", out)
			}
			checkWRR(t, tp, bin, servers, 300)

			const size = 16 << 20
			down := tp.Get(bin, fmt.Sprintf("%sbytes?n=%d", vipURL, size), 1)
			if down.OK != 1 || !strings.Contains(down.Output, fmt.Sprintf("received %d bytes", size)) {
				t.Errorf("download of %d bytes through lvsd: %+v\n%s", size, down, down.Output)
			}
			up := tp.Get(bin, vipURL+"upload", 1, "-upload", fmt.Sprint(size))
			if up.OK != 1 || !strings.Contains(up.Output, fmt.Sprintf("sent %d bytes", size)) {
				t.Errorf("upload of %d bytes through lvsd: %+v\n%s", size, up, up.Output)
			}
			echo, err := l.UDPSend(tp.Client, bin, lab.VIP.String()+":53", "via-sender")
			if err != nil || !strings.HasSuffix(echo, " via-sender") {
				t.Errorf("udp echo through lvsd: %q, %v", echo, err)
			}
			st := tp.Status()
			if len(st.Interfaces) != 1 || len(st.Interfaces[0].Queues) != 2 {
				t.Fatalf("status interfaces: want one with 2 queues, got %+v", st.Interfaces)
			}
			var tx uint64
			for _, q := range st.Interfaces[0].Queues {
				tx += q.TxFrames
			}
			if tx < 2*size/65536 {
				t.Errorf("queues sent %d frames in all, want at least %d: %+v", tx, 2*size/65536, st.Interfaces[0].Queues)
			}
		})
	}
	t.Run("tun", func(t *testing.T) {
		lab.Skip(t)
		bin := lab.BuildBinaries(t)
		l := lab.New(t)
		dt := l.DirectLab(lab.RealTUNLvsd)
		dt.Options.Sender = "thread"
		dt.StartHTTP(bin, 80)
		rs := dt.StartRealservers(bin)
		p := dt.StartLvsd(bin, lab.LvsdOptions{}, dt.Service(lab.Service{Protocol: "tcp", Port: 80, Scheduler: "rr", VIP: lab.VIP}))
		if out := p.Output(); !strings.Contains(out, "sender=thread") {
			t.Errorf("lvsd's log does not show sender=thread:\n%s", out)
		}
		body := make([]byte, 16<<20)
		rand.NewChaCha8([32]byte{2}).Read(body)
		sum := sha256.Sum256(body)
		hc := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{DialContext: lab.DialContext(dt.Client), DisableKeepAlives: true}}
		defer hc.CloseIdleConnections()
		resp, err := hc.Post("http://"+lab.VIP.String()+"/sha256", "application/octet-stream", bytes.NewReader(body))
		if err != nil {
			t.Fatalf("upload: %v", err)
		}
		answer, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := fmt.Sprintf(" %d %x", len(body), sum); resp.StatusCode != http.StatusOK || !strings.HasSuffix(strings.TrimSpace(string(answer)), want) {
			t.Errorf("answer %s %q, want it to end in %q", resp.Status, answer, want)
		}
		if counts := lab.RealserverCounts(t, rs["rs1"]); counts["malformed"]+counts["write-failed"] != 0 || counts["injected"] < len(body)/1500 {
			t.Errorf("lvsd realserver: %v; want no drops and at least %d packets", counts, len(body)/1500)
		}
	})
}
