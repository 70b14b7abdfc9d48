package director

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/lvsd/lvsd/config"
	"github.com/lvsd/lvsd/device"
)

// bigCheckedConf is a configuration of services services with n real
// servers in all (ten addresses of 192.0.2.0/24, one port per server), each
// with an exec check whose interval is long enough that the benchmarks
// drive every edge themselves.
func bigCheckedConf(services, n int) string {
	var b strings.Builder
	b.WriteString(`
[[interface]]
name = "lvt0"
mac = "02:00:5e:00:00:01"
addresses = ["192.0.2.1/24"]
`)
	for s := range services {
		fmt.Fprintf(&b, `
[[virtual_server]]
protocol = "tcp"
address = "192.0.2.%d"
port = 80
scheduler = "wrr"
method = "nat"
  [virtual_server.check]
  type = "exec"
  command = "true"
  interval = "1h"
`, 100+s)
		for i := s * n / services; i < (s+1)*n/services; i++ {
			fmt.Fprintf(&b, "  [[virtual_server.real_server]]\n  address = \"192.0.2.%d\"\n  port = %d\n  weight = 1\n", 20+i%10, 1000+i)
		}
	}
	return b.String()
}

// benchDirector is a MemDevice director over bigCheckedConf; its checks
// are configured but not run (Run is not called).
func benchDirector(b *testing.B, services, n int) (*Director, []RealKey) {
	b.Helper()
	cfg, err := config.Parse("bench.toml", []byte(bigCheckedConf(services, n)))
	if err != nil {
		b.Fatal(err)
	}
	dev := device.NewMem(64)
	d, err := New(cfg, Options{Devices: func(config.Interface) ([]device.Device, error) { return []device.Device{dev}, nil }})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(d.Close)
	var keys []RealKey
	for i := range cfg.Services {
		sc := &cfg.Services[i]
		for j := range sc.Reals {
			keys = append(keys, KeyOf(sc, &sc.Reals[j]))
		}
	}
	return d, keys
}

// BenchmarkHealthEdge: one real server of 1000 (one service, or ten) goes
// down and comes back per op, through the checks' sink: two transitions,
// two changes (a server twice is never one change).
func BenchmarkHealthEdge(b *testing.B) {
	for _, services := range []int{1, 10} {
		b.Run(fmt.Sprintf("services=%d", services), func(b *testing.B) {
			d, keys := benchDirector(b, services, 1000)
			s := (*healthSink)(d)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				k := keys[i%len(keys)]
				s.SetHealth(k, false, false)
				s.SetHealth(k, true, false)
				d.waitEdges()
			}
		})
	}
}

// BenchmarkHealthMassDown: 500 of 1000 real servers go down at once (their
// edges arrive together, as when a switch port dies), then come back
// together; one op is both waves.
func BenchmarkHealthMassDown(b *testing.B) {
	d, keys := benchDirector(b, 1, 1000)
	s := (*healthSink)(d)
	wave := keys[:500]
	c := new(changeCounter)
	d.mu.Lock()
	d.log = slog.New(c)
	d.mu.Unlock()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		for _, up := range []bool{false, true} {
			healthWave(s, wave, up)
		}
	}
	b.ReportMetric(float64(c.n.Load())/float64(2*b.N), "changes/wave")
}
