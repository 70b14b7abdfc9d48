package health

import (
	"context"
	"errors"
	"net/netip"
	"testing"

	"github.com/lvsd/lvsd/config"
)

// throughNet records the probes through the forwarding path.
type throughNet struct {
	hostNet
	err  error
	got  []string
	tuns []bool
}

func (n *throughNet) ProbeThrough(ctx context.Context, rip netip.Addr, vip netip.AddrPort, tunnel bool) error {
	n.got = append(n.got, rip.String()+" "+vip.String())
	n.tuns = append(n.tuns, tunnel)
	return n.err
}

// A tcp check with through_vip probes the VIP (with check.port when set)
// through the real server, by its method; never its RIP.
func TestThroughChecker(t *testing.T) {
	n := &throughNet{}
	tg := Target{Real: mustAP("192.0.2.11:80"), Virtual: mustAP("192.0.2.100:80"), Tunnel: true}
	ch, err := NewChecker(&config.Check{Type: "tcp", ThroughVIP: true}, tg, n)
	if err != nil {
		t.Fatal(err)
	}
	if r := ch.Check(context.Background()); r.Err != nil {
		t.Errorf("passing probe: %v", r.Err)
	}
	ch, _ = NewChecker(&config.Check{Type: "tcp", ThroughVIP: true, Port: 8080}, Target{Real: tg.Real, Virtual: tg.Virtual}, n)
	n.err = errors.New("refused")
	if r := ch.Check(context.Background()); r.Err == nil || !errors.Is(r.Err, n.err) {
		t.Errorf("failing probe: %v", r.Err)
	}
	want := []string{"192.0.2.11 192.0.2.100:80", "192.0.2.11 192.0.2.100:8080"}
	if len(n.got) != 2 || n.got[0] != want[0] || n.got[1] != want[1] || !n.tuns[0] || n.tuns[1] {
		t.Errorf("probes %v (tunnel %v), want %v (tunnel, then DR)", n.got, n.tuns, want)
	}
	// A Net without a way through the fast path cannot run it.
	if _, err := NewChecker(&config.Check{Type: "tcp", ThroughVIP: true}, tg, hostNet{}); !errors.Is(err, ErrConfig) {
		t.Errorf("through_vip over a plain Net: %v, want ErrConfig", err)
	}
}
