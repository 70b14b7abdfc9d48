package config

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/lvsd/lvsd/lvs"
	"github.com/lvsd/lvsd/sched"
)

// FuzzParse feeds Parse arbitrary documents, seeded from the example and
// testdata/. Parse must never panic; a Config it returns must satisfy the
// model's documented invariants, and a failure must be a well-formed
// ErrorList.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.toml")
	seeds = append(seeds, examplePath)
	for _, s := range seeds {
		data, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("x = [[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]\n"))
	f.Add([]byte("a.b.c = {d = [{e = [[1]]}]}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("f.toml", data)
		if err != nil {
			if cfg != nil {
				t.Fatalf("Parse returned a Config and an error")
			}
			var list ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("error is %T, want ErrorList: %v", err, err)
			}
			if len(list) == 0 {
				t.Fatalf("empty ErrorList")
			}
			for _, e := range list {
				if e.Line < 0 || e.Msg == "" || e.File != "f.toml" {
					t.Fatalf("bad error %+v", e)
				}
			}
			return
		}
		checkInvariants(t, cfg)
		checkFormat(t, cfg)
	})
}

// checkFormat fails t unless Format writes cfg as a file that Parse reads
// back to an equal Config.
func checkFormat(t *testing.T, cfg *Config) {
	t.Helper()
	out := Format(cfg)
	back, err := Parse(cfg.File, out)
	if err != nil {
		t.Fatalf("Format's output does not parse: %v\n%s", err, out)
	}
	if diff := cmp.Diff(cfg, back, cmpOpts...); diff != "" {
		t.Fatalf("Parse(Format(cfg)) (-cfg +back):\n%s\n%s", diff, out)
	}
}

// checkInvariants fails t when cfg breaks a rule the Config type documents.
func checkInvariants(t *testing.T, cfg *Config) {
	t.Helper()
	for _, d := range []struct {
		name string
		d    int64
	}{{"tcp", int64(cfg.Timeouts.TCP)}, {"tcp_fin", int64(cfg.Timeouts.TCPFin)}, {"udp", int64(cfg.Timeouts.UDP)}} {
		if d.d < int64(1e9) || d.d > int64(maxTimeout) || d.d%1e9 != 0 {
			t.Errorf("timeout %s = %d", d.name, d.d)
		}
	}
	if len(cfg.Interfaces) == 0 {
		t.Errorf("no interface")
	}
	ifcs := make(map[string]*Interface)
	dips := make(map[netip.Addr]bool)
	for i := range cfg.Interfaces {
		ifc := &cfg.Interfaces[i]
		if badIfName(ifc.Name) != "" || ifcs[ifc.Name] != nil {
			t.Errorf("bad or duplicate interface name %q", ifc.Name)
		}
		ifcs[ifc.Name] = ifc
		if ifc.Type != TAP && ifc.Type != TUN && ifc.Type != PACKET || ifc.Type == PACKET && ifc.Create {
			t.Errorf("%s: type %d", ifc.Name, ifc.Type)
		}
		if ifc.MTU < minMTU || ifc.MTU > maxMTU || ifc.Queues < 1 || ifc.Queues > maxQueues {
			t.Errorf("%s: mtu %d queues %d", ifc.Name, ifc.MTU, ifc.Queues)
		}
		if ifc.Type == TAP && (ifc.MAC == [6]byte{} || ifc.MAC[0]&1 != 0) || ifc.Type != TAP && ifc.MAC != [6]byte{} {
			t.Errorf("%s: %s with MAC %x", ifc.Name, ifc.Type, ifc.MAC)
		}
		if len(ifc.Addresses) == 0 {
			t.Errorf("%s: no address", ifc.Name)
		}
		for _, p := range ifc.Addresses {
			if !p.IsValid() || dips[p.Addr()] || badUnicast(p.Addr()) != "" {
				t.Errorf("%s: bad or duplicate address %s", ifc.Name, p)
			}
			if p.Addr().Is6() && ifc.MTU < minMTUIPv6 {
				t.Errorf("%s: IPv6 with mtu %d", ifc.Name, ifc.MTU)
			}
			dips[p.Addr()] = true
		}
		for _, r := range ifc.Routes {
			if !r.Destination.IsValid() || r.Destination != r.Destination.Masked() {
				t.Errorf("%s: route to %s", ifc.Name, r.Destination)
			}
			if r.Gateway.IsValid() && r.Gateway.Is4() != r.Destination.Addr().Is4() {
				t.Errorf("%s: route to %s via %s", ifc.Name, r.Destination, r.Gateway)
			}
		}
	}
	svcs := make(map[svcKey]bool)
	for _, s := range cfg.Services {
		k := svcKey{s.Proto, s.Addr, s.Port}
		// A service over several ports: a list (Port is its first), or all
		// ports (Port 0, persistent).
		multi := s.Ports != nil || s.Port == 0
		ports := []uint16{s.Port}
		if s.Ports != nil {
			ports = s.Ports
			if s.Port != s.Ports[0] {
				t.Errorf("service %v: port %d, ports %v", k, s.Port, s.Ports)
			}
		}
		for _, p := range ports {
			pk := svcKey{s.Proto, s.Addr, p}
			if svcs[pk] || (p == 0 && (s.Ports != nil || s.Persistence.Timeout <= 0)) {
				t.Errorf("bad or duplicate service port %v", pk)
			}
			svcs[pk] = true
		}
		for _, r := range s.Reals {
			if c := r.Check; c != nil && (c.Rise < 1 || c.Fall < 1 || c.Interval < 10*time.Millisecond ||
				c.Timeout < 10*time.Millisecond || c.Warmup <= 0 || c.Type == "none" || c.Type == "" ||
				c.Type != "exec" && c.Type != "ping" && r.Port == 0 && c.Port == 0 ||
				c.Type == "exec" && c.Command == "") {
				t.Errorf("service %v, real %s: check %+v", k, r.Addr, c)
			}
		}
		if h := s.Health; h.SorryServer.IsValid() && (h.SorryServer.Port() == 0 || h.SorryServer.Addr().Is4() != s.Addr.Is4()) ||
			h.Quorum > 0 && h.Hysteresis >= h.Quorum {
			t.Errorf("service %v: health %+v", k, h)
		}
		if (s.Proto != lvs.TCP && s.Proto != lvs.UDP) || !s.Addr.IsValid() || dips[s.Addr] {
			t.Errorf("bad service %v", k)
		}
		if p := s.Persistence; p.Timeout < 0 || p.Timeout > 0 && (p.Netmask < 0 || s.Addr.Is4() && p.Netmask > 32 ||
			s.Addr.Is6() && (p.Netmask < 1 || p.Netmask > 128)) || p.Timeout == 0 && p.Netmask != 0 {
			t.Errorf("service %v: persistence %+v", k, p)
		}
		if s.OnePacket && s.Proto != lvs.UDP || s.SlowStart < 0 {
			t.Errorf("service %v: one packet %v, slow start %v", k, s.OnePacket, s.SlowStart)
		}
		ifc := ifcs[s.Interface]
		if ifc == nil {
			t.Errorf("service %v: interface %q not defined", k, s.Interface)
			continue
		}
		if !sched.Known(s.Scheduler) {
			t.Errorf("service %v: scheduler %q", k, s.Scheduler)
		}
		for _, f := range s.SchedFlags {
			if schedFlags[f] != s.Scheduler {
				t.Errorf("service %v: flag %q with %s", k, f, s.Scheduler)
			}
		}
		reals := make(map[netip.AddrPort]bool)
		for _, r := range s.Reals {
			ap := netip.AddrPortFrom(r.Addr, r.Port)
			if reals[ap] || (r.Port == 0) != multi || !r.Addr.IsValid() || r.Addr.Is4() != s.Addr.Is4() || dips[r.Addr] {
				t.Errorf("service %v: bad or duplicate real server %s", k, ap)
			}
			reals[ap] = true
			if r.Weight < 0 || r.Weight > maxWeight || r.UpperThreshold < 0 || r.UpperThreshold > maxThresh ||
				r.LowerThreshold < 0 || r.LowerThreshold > maxThresh || r.UpperThreshold > 0 && r.LowerThreshold > r.UpperThreshold {
				t.Errorf("service %v: real %s weight %d thresholds %d/%d", k, ap, r.Weight, r.UpperThreshold, r.LowerThreshold)
			}
			if r.Method > lvs.TUN || !multi && r.Method != lvs.NAT && r.Port != s.Port {
				t.Errorf("service %v: real %s method %s maps port %d", k, ap, r.Method, s.Port)
			}
			if s.OnePacket && r.Method == lvs.NAT || r.SlowStart < 0 {
				t.Errorf("service %v: real %s: nat with one packet, or slow start %v", k, ap, r.SlowStart)
			}
			if r.Method == lvs.DR && ifc.Type == TUN {
				t.Errorf("service %v: real %s dr on a tun", k, ap)
			}
		}
	}
}
