package adm

import (
	"fmt"
	"io"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lvsd/lvsd/config"
	"github.com/lvsd/lvsd/lvs"
)

// bigTable is a configuration of n services of 10 NAT real servers each.
func bigTable(t testing.TB, n int) *config.Config {
	cfg := baseConfig(t)
	for i := range n {
		s := config.Service{Proto: lvs.TCP, Addr: netip.MustParseAddr("192.0.2.100"), Port: uint16(1 + i), Scheduler: "wrr", Interface: "lvt0"}
		if i >= 60000 {
			s.Proto = lvs.UDP
		}
		for j := range 10 {
			s.Reals = append(s.Reals, config.Real{Addr: netip.AddrFrom4([4]byte{192, 0, 2, byte(10 + j)}), Port: 8080, Method: lvs.NAT, Weight: int32(1 + j)})
		}
		cfg.Services = append(cfg.Services, s)
	}
	return cfg
}

// TestScale lists 10 000 services of 10 real servers each (-Ln) and
// restores them from -S (110 000 rules), and logs the time and memory
// each takes. Without LVSD_SCALE=1 it does the same with 200 services.
// cpuTime is the CPU time the process has used (user and system).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func TestScale(t *testing.T) {
	n := 200
	if os.Getenv("LVSD_SCALE") == "1" {
		n = 10000
	}
	cfg := bigTable(t, n)
	e := testEnv()

	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	start, cpu0 := time.Now(), cpuTime()
	res := e.Run(cfg, []string{"-Ln"}, nil)
	listTime, listCPU := time.Since(start), cpuTime()-cpu0
	runtime.ReadMemStats(&m1)
	if res.Code != 0 || strings.Count(res.Stdout, "\n") != 3+n*11 {
		t.Fatalf("-Ln: code %d, %d lines", res.Code, strings.Count(res.Stdout, "\n"))
	}
	t.Logf("-Ln of %d services x 10 real servers: %v (%v of CPU), %d bytes of output, %.1f MiB allocated", n, listTime.Round(time.Millisecond),
		listCPU.Round(time.Millisecond), len(res.Stdout), float64(m1.TotalAlloc-m0.TotalAlloc)/(1<<20))

	saved := e.Run(cfg, []string{"-S", "-n"}, nil).Stdout
	lines := strings.Split(saved, "\n")
	start, cpu0 = time.Now(), cpuTime()
	res = e.Run(baseConfig(t), []string{"-R"}, lines)
	restoreTime, restoreCPU := time.Since(start), cpuTime()-cpu0
	if res.Code != 0 || len(res.Changed.Services) != n {
		t.Fatalf("-R: code %d %s", res.Code, res.Stderr)
	}
	t.Logf("-R of %d rules: %v (%v of CPU)", len(lines)-1, restoreTime.Round(time.Millisecond), restoreCPU.Round(time.Millisecond))
	// CPU time, not wall time: the machines tests run on are shared.
	if listCPU > 20*time.Second || restoreCPU > 60*time.Second {
		t.Errorf("too slow: -Ln %v, -R %v of CPU", listCPU, restoreCPU)
	}
	fmt.Fprint(io.Discard, saved)
}

// BenchmarkValidate measures adm.Validate (config.Format and config.Parse)
// of a table of 1000 services of 10 real servers, the work -R does once
// for the whole table.
func BenchmarkValidate(b *testing.B) {
	cfg := bigTable(b, 1000)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Validate(cfg); err != nil {
			b.Fatal(err)
		}
	}
}
