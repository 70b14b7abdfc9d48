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

// TestTUNRealserverGRO uploads 16 MiB of random bytes through TUN mode to a
// real server whose `lvsd realserver` decapsulates: lvsd cuts the client's
// TCP super-frames into IPIP segments, and the realserver joins each flow's
// consecutive segments again into super-frames that it writes into its TUN
// with a virtio-net header. The server's SHA-256 of what it received must
// be the client's (a joined payload out of order or a bad offloaded checksum
// would corrupt the stream or stall it), and the realserver must have
// written fewer frames into its TUN than it received packets.
func TestTUNRealserverGRO(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		t.Run(map[bool]string{false: "ipv4", true: "ipv6"}[v6], func(t *testing.T) {
			lab.Skip(t)
			bin := lab.BuildBinaries(t)
			l := lab.New(t)
			var dt *lab.DirectTopology
			svc := lab.Service{Protocol: "tcp", Port: 80, Scheduler: "rr", VIP: lab.VIP}
			vip := lab.VIP.String()
			if v6 {
				dt = l.DirectLab6(lab.RealTUNLvsd)
				svc.VIP = lab.VIP6
				vip = "[" + lab.VIP6.String() + "]"
			} else {
				dt = l.DirectLab(lab.RealTUNLvsd)
			}
			dt.StartHTTP(bin, 80)
			rs := dt.StartRealservers(bin)
			dt.StartLvsd(bin, lab.LvsdOptions{}, dt.Service(svc))

			body := make([]byte, 16<<20)
			r := rand.NewChaCha8([32]byte{1})
			r.Read(body)
			sum := sha256.Sum256(body)
			hc := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{DialContext: lab.DialContext(dt.Client), DisableKeepAlives: true}}
			defer hc.CloseIdleConnections()
			start := time.Now()
			resp, err := hc.Post("http://"+vip+"/sha256", "application/octet-stream", bytes.NewReader(body))
			if err != nil {
				t.Fatalf("upload: %v", err)
			}
			answer, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			t.Logf("uploaded %d bytes in %v: %s", len(body), time.Since(start).Round(time.Millisecond), strings.TrimSpace(string(answer)))
			if want := fmt.Sprintf(" %d %x", len(body), sum); resp.StatusCode != http.StatusOK || !strings.HasSuffix(strings.TrimSpace(string(answer)), want) {
				t.Errorf("answer %s %q, want it to end in %q", resp.Status, answer, want)
			}
			counts := lab.RealserverCounts(t, rs["rs1"])
			t.Logf("lvsd realserver: %v", counts)
			if counts["malformed"]+counts["not-vip"]+counts["not-director"]+counts["write-failed"] != 0 {
				t.Errorf("lvsd realserver dropped packets: %v", counts)
			}
			if counts["injected"] < len(body)/1500 || counts["tun_writes"] >= counts["injected"] {
				t.Errorf("lvsd realserver injected %d packets in %d TUN writes: want at least %d packets, fewer writes",
					counts["injected"], counts["tun_writes"], len(body)/1500)
			}
		})
	}
}
