package adm

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/lvsd/lvsd/config"
	"github.com/lvsd/lvsd/lvs"
)

const baseTOML = `
[[interface]]
name = "lvt0"
addresses = ["192.0.2.1/24", "2001:db8::1/64"]
`

func baseConfig(t testing.TB) *config.Config {
	cfg, err := config.Parse("base.toml", []byte(baseTOML))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// tableOf is the listing of cfg without counters.
func tableOf(cfg *config.Config) *Table {
	t := &Table{Timeouts: cfg.Timeouts}
	for _, s := range cfg.Services {
		ts := Service{Service: s}
		for _, r := range s.Reals {
			ts.Dests = append(ts.Dests, Dest{Real: r})
		}
		t.Services = append(t.Services, ts)
	}
	return t
}

func testEnv() *Env {
	return &Env{Program: "ipvsadm", Version: "test", Table: tableOf}
}

// randomService makes a service that lvsd's validation accepts most of
// the time; the test skips the others.
func randomService(r *rand.Rand, i int, used map[string]bool) config.Service {
	v6 := r.IntN(3) == 0
	addr := netip.AddrFrom4([4]byte{192, 0, 2, byte(100 + r.IntN(50))})
	if v6 {
		addr = netip.MustParseAddr(fmt.Sprintf("2001:db8::%x", 0x100+r.IntN(50)))
	}
	s := config.Service{Proto: lvs.TCP, Addr: addr, Port: uint16(1 + r.IntN(65535)), Interface: "lvt0"}
	if r.IntN(3) == 0 {
		s.Proto = lvs.UDP
	}
	scheds := []string{"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos", "maglev"}
	s.Scheduler = scheds[r.IntN(len(scheds))]
	switch s.Scheduler {
	case "sh":
		s.SchedFlags = [][]string{nil, {"sh-fallback"}, {"sh-port"}, {"sh-fallback", "sh-port"}}[r.IntN(4)]
	case "mh":
		s.SchedFlags = [][]string{nil, {"mh-port"}}[r.IntN(2)]
	case "maglev":
		s.MaglevTableSize = []uint32{0, 251, 65537}[r.IntN(3)]
	}
	if r.IntN(2) == 0 {
		s.Persistence.Timeout = time.Duration(1+r.IntN(86400)) * time.Second
		s.Persistence.Netmask = 8 + r.IntN(25)
		if v6 {
			s.Persistence.Netmask = 1 + r.IntN(128)
		}
	}
	multi := r.IntN(5) == 0
	if multi {
		s.Ports = []uint16{uint16(1 + r.IntN(30000)), uint16(30001 + r.IntN(30000))}
		s.Port = s.Ports[0]
		s.Mark = uint32(1 + i)
	} else if s.Persistence.Timeout > 0 && r.IntN(6) == 0 {
		s.Port = 0
	}
	if r.IntN(4) == 0 {
		s.Name = fmt.Sprintf("svc-%d", i)
	}
	if r.IntN(4) == 0 {
		s.SlowStart = time.Duration(1+r.IntN(600)) * time.Second
	}
	method := []lvs.Method{lvs.DR, lvs.NAT, lvs.TUN}[r.IntN(3)]
	if v6 && method == lvs.TUN {
		method = lvs.DR
	}
	if s.Proto == lvs.UDP && method != lvs.NAT && r.IntN(3) == 0 {
		s.OnePacket = true
	}
	for j := range r.IntN(5) {
		rr := config.Real{Method: method, Weight: int32(r.IntN(65536)), SlowStart: s.SlowStart}
		if v6 {
			rr.Addr = netip.MustParseAddr(fmt.Sprintf("2001:db8::%x", 0x1000+j))
		} else {
			rr.Addr = netip.AddrFrom4([4]byte{192, 0, 2, byte(200 + j)})
		}
		switch {
		case multi:
		case s.Port == 0:
		case method == lvs.NAT:
			rr.Port = uint16(1 + r.IntN(65535))
		default:
			rr.Port = s.Port
		}
		if r.IntN(3) == 0 {
			rr.UpperThreshold = int32(1 + r.IntN(1000))
			rr.LowerThreshold = int32(r.IntN(int(rr.UpperThreshold) + 1))
		}
		if r.IntN(5) == 0 {
			rr.SlowStart = time.Duration(r.IntN(100)) * time.Second
		}
		s.Reals = append(s.Reals, rr)
	}
	_ = used
	return s
}

// TestSaveRestoreRoundTrip: -S printed from random tables, read back by -R
// into an empty table, gives the same table.
func TestSaveRestoreRoundTrip(t *testing.T) {
	base := baseConfig(t)
	r := rand.New(rand.NewPCG(1, 2))
	valid := 0
	for n := range 150 {
		cfg := base.Clone()
		used := map[string]bool{}
		for i := range 1 + r.IntN(6) {
			cfg.Services = append(cfg.Services, randomService(r, i, used))
		}
		want, err := Validate(cfg)
		if err != nil {
			continue // a random table lvsd refuses anyway
		}
		valid++
		var b strings.Builder
		p := &Printer{}
		p.WriteList(&b, tableOf(want), FmtRule|FmtNumeric)
		e := testEnv()
		res := e.Run(base, []string{"-R"}, strings.Split(b.String(), "\n"))
		if res.Code != 0 {
			t.Fatalf("table %d: -R of\n%s\nfailed: %s", n, b.String(), res.Stderr)
		}
		got := res.Changed
		// -R adds in -S's order (sorted); compare as sets.
		sortOpt := cmpopts.SortSlices(func(a, b config.Service) bool { return svcKeyString(&a) < svcKeyString(&b) })
		sortReals := cmpopts.SortSlices(func(a, b config.Real) bool {
			return netip.AddrPortFrom(a.Addr, a.Port).String() < netip.AddrPortFrom(b.Addr, b.Port).String()
		})
		if diff := cmp.Diff(want.Services, got.Services, sortOpt, sortReals, cmpopts.EquateComparable(netip.Addr{}, netip.AddrPort{})); diff != "" {
			t.Fatalf("table %d: -S | -R changed the table (-saved +restored):\n%s\n-S printed:\n%s", n, diff, b.String())
		}
	}
	if valid < 50 {
		t.Fatalf("only %d of 150 random tables were valid", valid)
	}
}

func svcKeyString(s *config.Service) string {
	return fmt.Sprintf("%d %s %d %d", s.Proto, s.Addr, s.Port, s.Mark)
}
