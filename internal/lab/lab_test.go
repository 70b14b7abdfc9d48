package lab

import (
	"flag"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/lvsd/lvsd/config"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// topologies returns the reference topologies as their builders fill them,
// without building anything.
func topologies() map[string]*Topology {
	reals := func(v6 bool) []Real {
		var rs []Real
		for i, a := range []string{"198.18.2.11", "198.18.2.12", "198.18.2.13"} {
			r := Real{Name: "rs" + strconv.Itoa(i+1), Addr: mustAddr(a)}
			if v6 {
				r.Addr6 = mustAddr("2001:2:0:2::1" + strconv.Itoa(i+1))
			}
			rs = append(rs, r)
		}
		return rs
	}
	return map[string]*Topology{
		"nat-tap": {Type: "tap", Director: "lvt-1-1-dir", Device: TAPName, MAC: DefaultMAC,
			Addresses: []string{"198.18.1.1/24", "198.18.2.1/24"}, Reals: reals(false)},
		"nat-tap-ipv6": {Type: "tap", Director: "lvt-1-1-dir", Device: TAPName, MAC: DefaultMAC,
			Addresses: []string{"198.18.1.1/24", "198.18.2.1/24", "2001:2:0:1::1/64", "2001:2:0:2::1/64"},
			Reals:     reals(true), Options: Options{IPv6: true, Queues: 2}},
		"nat-tun": {Type: "tun", Director: "lvt-1-1-dir", Device: TUNName,
			Addresses: []string{"198.18.3.1/24"}, Routes: []string{"0.0.0.0/0"}, Reals: reals(false)},
	}
}

var goldenServices = map[string][]Service{
	"nat-tap": {
		{Protocol: "tcp", Port: 80, RealPort: 8080, Scheduler: "wrr", Method: "nat", Weights: []int{3, 2, 1}},
		{Protocol: "udp", Port: 53, RealPort: 5353, Scheduler: "rr"},
	},
	"nat-tap-ipv6": {
		{Port: 80, RealPort: 8080, Scheduler: "wrr", Weights: []int{3, 2, 1}},
		{VIP: VIP6, Port: 80, RealPort: 8080, Scheduler: "wrr", Weights: []int{3, 2, 1}},
	},
	"nat-tun": {
		{Protocol: "tcp", Port: 80, RealPort: 8080, Scheduler: "wrr", Method: "nat", Weights: []int{3, 2, 1}},
	},
}

// TestConfig checks the generated lvsd configurations against golden files
// and against lvsd's own parser.
func TestConfig(t *testing.T) {
	for name, tp := range topologies() {
		t.Run(name, func(t *testing.T) {
			got, err := tp.config(goldenServices[name])
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", name+".toml")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("config (-want +got):\n%s", diff)
			}
			cfg, err := config.Parse(golden, []byte(got))
			if err != nil {
				t.Fatalf("lvsd rejects the lab's config: %v\n%s", err, got)
			}
			if len(cfg.Interfaces) != 1 || cfg.Interfaces[0].Name != tp.Device || cfg.Interfaces[0].Create {
				t.Errorf("parsed interfaces: %+v", cfg.Interfaces)
			}
			if len(cfg.Services) != len(goldenServices[name]) {
				t.Errorf("parsed %d services, want %d", len(cfg.Services), len(goldenServices[name]))
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	tp := topologies()["nat-tap"]
	tests := []struct {
		name string
		svc  Service
	}{
		{name: "no port", svc: Service{}},
		{name: "weights", svc: Service{Port: 80, Weights: []int{1, 2}}},
		{name: "ipv6 without ipv6", svc: Service{Port: 80, VIP: VIP6}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tp.config([]Service{tt.svc}); err == nil {
				t.Errorf("config(%+v) = nil error", tt.svc)
			}
		})
	}
}

func TestStalePid(t *testing.T) {
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	deadPid := dead.Process.Pid
	tests := []struct {
		name  string
		in    string
		pid   int
		stale bool
	}{
		{name: "dead", in: "lvt-" + strconv.Itoa(deadPid) + "-1-dir", pid: deadPid, stale: true},
		{name: "dead scratch", in: "lvt-" + strconv.Itoa(deadPid) + "-bin-123", pid: deadPid, stale: true},
		{name: "own", in: "lvt-" + strconv.Itoa(os.Getpid()) + "-1-dir"},
		{name: "live parent", in: "lvt-" + strconv.Itoa(os.Getppid()) + "-1-dir"},
		{name: "init", in: "lvt-1-1-dir"},
		{name: "no pid", in: "lvt-probe"},
		{name: "not digits", in: "lvt-12a-1-dir"},
		{name: "empty pid", in: "lvt--1"},
		{name: "other prefix", in: "lvx-" + strconv.Itoa(deadPid) + "-1"},
		{name: "no dash", in: "lvt-" + strconv.Itoa(deadPid)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pid, stale := stalePid(tt.in)
			if pid != tt.pid || stale != tt.stale {
				t.Errorf("stalePid(%q) = %d, %v; want %d, %v", tt.in, pid, stale, tt.pid, tt.stale)
			}
		})
	}
}

func TestSession(t *testing.T) {
	s := NewSession(t.Context(), &nopWriter{})
	var order []int
	for i := range 3 {
		s.Cleanup(func() { order = append(order, i) })
	}
	s.Cleanup(func() { panic("cleanup panics") })
	func() {
		defer func() {
			fe, ok := recover().(*FatalError)
			if !ok || fe.Msg != "lab: 42" {
				t.Errorf("Fatalf panicked with %v, want *FatalError \"lab: 42\"", fe)
			}
		}()
		s.Fatalf("lab: %d", 42)
	}()
	if !s.Failed() {
		t.Error("Failed() = false after Fatalf")
	}
	s.Close()
	if diff := cmp.Diff([]int{2, 1, 0}, order); diff != "" {
		t.Errorf("cleanup order (-want +got):\n%s", diff)
	}
	s.Close() // nothing left to run
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

type nopWriter struct{}

func (*nopWriter) Write(b []byte) (int, error) { return len(b), nil }

func TestTail(t *testing.T) {
	if got := tail("abc\n", 10); got != "abc\n" {
		t.Errorf("tail(short) = %q", got)
	}
	if got := tail("line1\nline2\nline3\n", 8); got != "[... earlier output cut ...]\nline3\n" {
		t.Errorf("tail(long) = %q", got)
	}
}
