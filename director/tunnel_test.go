package director

import (
	"testing"

	"github.com/lvsd/lvsd/config"
	"github.com/lvsd/lvsd/lvs"
)

const tunConf = `
[[interface]]
name = "lvt0"
mac = "02:00:5e:00:00:01"
addresses = ["192.0.2.1/24"]

[[virtual_server]]
protocol = "tcp"
address = "192.0.2.100"
port = 80
method = "tun"
  [[virtual_server.real_server]]
  address = "192.0.2.21"
  tun_type = "gue"
  tun_port = 6080
  tun_csum = "csum"
`

// TestTunnelOfDest: a real server's tunnel reaches its destination (what
// the fast path encapsulates with) and the running table; a change of
// tunnel, as lvsd adm -e --tun-type makes, gives a new destination with
// the new tunnel, as a change of method does, and the old one leaves the
// list.
func TestTunnelOfDest(t *testing.T) {
	cfg, err := config.Parse("test.toml", []byte(tunConf))
	mustOK(t, err)
	d := newMemDirectorOpts(t, cfg, Options{})
	d.mu.Lock()
	old := d.dests[destKey{svc: lvs.ServiceKey{Addr: lvs.AddrFromNetip(cfg.Services[0].Addr), Port: 80, Proto: lvs.TCP},
		addr: cfg.Services[0].Reals[0].Addr, port: 80, method: lvs.TUN, tun: cfg.Services[0].Reals[0].Tunnel}]
	d.mu.Unlock()
	if want := (lvs.Tunnel{Type: lvs.TunGUE, Port: 6080, Flags: lvs.TunCsum}); old == nil || old.Tun != want {
		t.Fatalf("destination %+v, want tunnel %+v", old, want)
	}
	run := d.Running()
	if got := run.Services[0].Reals[0].Tunnel; got != old.Tun {
		t.Errorf("running table's tunnel %+v, want %+v", got, old.Tun)
	}
	run.Services[0].Reals[0].Tunnel = lvs.Tunnel{Type: lvs.TunGRE}
	mustOK(t, d.ApplyRunning(run, "ipvsadm"))
	d.mu.Lock()
	list := d.services[realKey("192.0.2.21").Service].sched.Dests()
	d.mu.Unlock()
	if len(list) != 1 || list[0] == old || list[0].Tun != (lvs.Tunnel{Type: lvs.TunGRE}) {
		t.Errorf("after the change: %d destinations, the old one %v, tunnel %+v; want one new gre destination", len(list), len(list) > 0 && list[0] == old, list[0].Tun)
	}
	if !old.Removed.Load() {
		t.Errorf("the gue destination is still linked")
	}
}
