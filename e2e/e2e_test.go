package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/lvsd/lvsd/control"
	"github.com/lvsd/lvsd/internal/lab"
)

func TestMain(m *testing.M) {
	code := m.Run()
	lab.RemoveBinaries()
	os.Exit(code)
}

// wrrHTTP is the reference service: VIP:80 over the real servers' :8080,
// weighted round robin 3:2:1, NAT.
var wrrHTTP = lab.Service{Protocol: "tcp", Port: 80, RealPort: 8080, Scheduler: "wrr", Method: "nat", Weights: []int{3, 2, 1}}

var vipURL = "http://" + lab.VIP.String() + "/"

// nobody is the uid (and gid) the unprivileged tests run lvsd as.
const nobody = 65534

// checkWRR makes n requests (a multiple of 6) to the VIP and checks that
// they all succeed, that the real servers got exactly 3:2:1 of them, and
// that each real server saw the client's own address.
func checkWRR(t *testing.T, tp *lab.Topology, bin lab.Binaries, servers []*lab.Proc, n int) {
	t.Helper()
	start := time.Now()
	res := tp.Get(bin, vipURL, n)
	t.Logf("%d requests in %v", n, time.Since(start).Round(time.Millisecond))
	if res.OK != n || res.Failed != 0 {
		t.Errorf("%d requests: %d ok, %d failed; first errors:\n%s", n, res.OK, res.Failed, strings.Join(res.Errors, "\n"))
	}
	want := map[string]int{"rs1": n / 2, "rs2": n / 3, "rs3": n / 6}
	if diff := cmp.Diff(want, res.Servers); diff != "" {
		t.Errorf("answers per real server (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]int{lab.ClientIP.String(): res.OK}, res.Clients); diff != "" {
		t.Errorf("client address seen by the real servers (-want +got):\n%s", diff)
	}
	// The servers' own logs: one line per request, from the client.
	from := regexp.MustCompile(`http GET / from ` + regexp.QuoteMeta(lab.ClientIP.String()) + `:\d+\n`)
	for i, p := range servers {
		name := tp.Reals[i].Name
		if got := len(from.FindAllString(p.Output(), -1)); got != want[name] {
			t.Errorf("%s logged %d requests from %s, want %d", name, got, lab.ClientIP, want[name])
		}
	}
}

func TestNATWRR(t *testing.T) {
	t.Parallel() // see the package doc
	bin, l := lab.NewTest(t)
	tp := l.NATLab(lab.Options{})
	servers := tp.StartHTTP(bin, 8080)
	tp.StartLvsd(bin, lab.LvsdOptions{}, wrrHTTP)
	before := tp.Status()
	checkWRR(t, tp, bin, servers, 300)
	checkStatus(t, tp, bin, before, 300)
}

// checkStatus checks what lvsd reports on its control socket after n
// requests, against the status before them (the readiness probe's
// connections, one or more, are counted there): per-real connection counts
// in 3:2:1 and `lvsd list` in ipvsadm's layout.
func checkStatus(t *testing.T, tp *lab.Topology, bin lab.Binaries, before *control.Status, n int) {
	t.Helper()
	st := tp.Status()
	if len(before.Services) != 1 || len(before.Services[0].Reals) != 3 {
		t.Fatalf("status before: want 1 service with 3 reals, got %+v", before.Services)
	}
	if len(st.Services) != 1 || len(st.Services[0].Reals) != 3 {
		t.Fatalf("status: want 1 service with 3 reals, got %+v", st.Services)
	}
	svc := st.Services[0]
	var sum uint64
	for i, r := range svc.Reals {
		want := uint64(n * (3 - i) / 6)
		if got := r.Stats.Conns - before.Services[0].Reals[i].Stats.Conns; got != want {
			t.Errorf("real %s: %d new connections, want %d", r.Address, got, want)
		}
		if r.Stats.InPkts == 0 || r.Stats.OutPkts == 0 {
			t.Errorf("real %s: in %d out %d packets, want both > 0 in NAT mode", r.Address, r.Stats.InPkts, r.Stats.OutPkts)
		}
		sum += r.Stats.Conns
	}
	if svc.Stats.Conns != sum {
		t.Errorf("service counts %d connections, its reals %d", svc.Stats.Conns, sum)
	}
	out, err := exec.Command(bin.Lvsd, "list", "-control", tp.Control).CombinedOutput()
	if err != nil {
		t.Fatalf("lvsd list: %v\n%s", err, out)
	}
	t.Logf("lvsd list:\n%s", out)
	for _, want := range []string{"TCP  198.18.1.100:80 wrr\n", "  -> 198.18.2.11:8080", "Masq    3 "} {
		if !strings.Contains(string(out), want) {
			t.Errorf("lvsd list lacks %q:\n%s", want, out)
		}
	}
}

func TestNATUDPEcho(t *testing.T) {
	t.Parallel() // see the package doc
	bin, l := lab.NewTest(t)
	tp := l.NATLab(lab.Options{})
	servers := tp.StartUDP(bin, 5353)
	tp.StartLvsd(bin, lab.LvsdOptions{}, lab.Service{Protocol: "udp", Port: 53, RealPort: 5353, Scheduler: "rr", Method: "nat"})

	// Three new flows in a row (a new socket each): round robin gives one
	// to each real server, whatever the readiness probe took.
	var got []string
	for i := range 3 {
		msg := fmt.Sprintf("hello-%d", i)
		echo, err := l.UDPSend(tp.Client, bin, lab.VIP.String()+":53", msg)
		if err != nil {
			t.Fatalf("udp-send %s: %v", msg, err)
		}
		name, rest, _ := strings.Cut(echo, " ")
		if rest != msg {
			t.Errorf("echo of %q = %q, want \"<server> %s\"", msg, echo, msg)
		}
		got = append(got, name)
	}
	slices.Sort(got)
	if diff := cmp.Diff([]string{"rs1", "rs2", "rs3"}, got); diff != "" {
		t.Errorf("servers that echoed three new flows under rr (-want +got):\n%s", diff)
	}
	for i, p := range servers {
		if !strings.Contains(p.Output(), "udp from "+lab.ClientIP.String()+":") {
			t.Errorf("%s's log shows no datagram from %s:\n%s", tp.Reals[i].Name, lab.ClientIP, p.Output())
		}
	}
}

func TestARPAndPing(t *testing.T) {
	t.Parallel() // see the package doc
	lab.Skip(t)
	lab.NeedTools(t, "ping")
	bin := lab.BuildBinaries(t)
	l := lab.New(t)
	tp := l.NATLab(lab.Options{MAC: "02:00:5e:10:00:01"})
	if !strings.Contains(tp.Config(wrrHTTP), `mac = "02:00:5e:10:00:01"`) {
		t.Fatalf("config does not set the MAC:\n%s", tp.Config(wrrHTTP))
	}
	tp.StartHTTP(bin, 8080)
	tp.StartLvsd(bin, lab.LvsdOptions{}, wrrHTTP)

	for _, addr := range []string{lab.VIP.String(), lab.DIP.String()} {
		if out, err := l.Ping(tp.Client, addr, 2); err != nil {
			t.Errorf("ping %s from the client: %v\n%s", addr, err, out)
		}
		mac, state := l.Neighbor(tp.Client, addr)
		if mac != tp.MAC {
			t.Errorf("client's neighbour entry for %s: lladdr %q (%s), want lvsd's %s", addr, mac, state, tp.MAC)
		}
	}
	// The real servers' gateway is lvsd's other DIP.
	rs := tp.Reals[0]
	if out, err := l.Ping(rs.NS, lab.RealGateway.String(), 2); err != nil {
		t.Errorf("ping %s from %s: %v\n%s", lab.RealGateway, rs.Name, err, out)
	}
	if mac, state := l.Neighbor(rs.NS, lab.RealGateway.String()); mac != tp.MAC {
		t.Errorf("%s's neighbour entry for %s: lladdr %q (%s), want lvsd's %s", rs.Name, lab.RealGateway, mac, state, tp.MAC)
	}
}

func TestNATOverTUN(t *testing.T) {
	t.Parallel() // see the package doc
	bin, l := lab.NewTest(t)
	tp := l.TUNLab(lab.Options{})
	servers := tp.StartHTTP(bin, 8080)
	tp.StartLvsd(bin, lab.LvsdOptions{}, wrrHTTP)
	checkWRR(t, tp, bin, servers, 60)
}

func TestUnprivileged(t *testing.T) {
	t.Parallel() // see the package doc
	lab.NeedTools(t, "setpriv")
	bin, l := lab.NewTest(t)
	tp := l.NATLab(lab.Options{Owner: nobody})
	if owner := l.DeviceOwner(tp.Director, tp.Device); owner != "nobody" && owner != fmt.Sprint(nobody) {
		t.Fatalf("%s belongs to %q, want uid %d", tp.Device, owner, nobody)
	}
	servers := tp.StartHTTP(bin, 8080)
	p := tp.StartLvsd(bin, lab.LvsdOptions{UID: nobody}, wrrHTTP)

	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.Pid()))
	if err != nil {
		t.Fatalf("lvsd's status: %v", err)
	}
	for _, want := range []string{
		fmt.Sprintf("Uid:\t%d\t%d\t%d\t%d\n", nobody, nobody, nobody, nobody),
		fmt.Sprintf("Gid:\t%d\t%d\t%d\t%d\n", nobody, nobody, nobody, nobody),
		"CapEff:\t0000000000000000\n",
	} {
		if !strings.Contains(string(status), want) {
			t.Errorf("lvsd (pid %d) status lacks %q:\n%s", p.Pid(), want, status)
		}
	}
	checkWRR(t, tp, bin, servers, 6)
}

// TestNATMultiQueue runs lvsd on a two-queue TAP: one reader per queue, the
// flows spread over both by the kernel's queue selection.
func TestNATMultiQueue(t *testing.T) {
	t.Parallel() // see the package doc
	bin, l := lab.NewTest(t)
	tp := l.NATLab(lab.Options{Queues: 2})
	if !strings.Contains(tp.Config(wrrHTTP), "queues = 2") {
		t.Fatalf("config does not ask for two queues:\n%s", tp.Config(wrrHTTP))
	}
	servers := tp.StartHTTP(bin, 8080)
	tp.StartLvsd(bin, lab.LvsdOptions{}, wrrHTTP)
	checkWRR(t, tp, bin, servers, 60)
}
