package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lvsd/lvsd/internal/lab"
	"github.com/lvsd/lvsd/takeover"
)

// takeoverFlows is the number of keep-alive connections TestTakeover
// follows across each graceful restart.
const takeoverFlows = 48

// takeoverMaxGap bounds the longest wait for an answer on a connection
// that asks without pause across a takeover: frames wait in the devices'
// queues while neither process reads, so no segment is lost and no TCP
// retransmission (200 ms at the least) is needed.
const takeoverMaxGap = time.Second

// TestTakeover: a graceful restart keeps every established NAT flow, on a
// TAP (lvsd run -takeover) and on an AF_PACKET interface with two sockets
// (SIGUSR2).
//
// Before each takeover, failing new processes must leave the running lvsd
// serving: one with a configuration that does not load (exits before it
// connects), and one whose configuration contradicts the handed-over
// device (it receives the descriptors, fails to adopt them, and the old
// lvsd, which never stopped, goes on). Then the takeover: takeoverFlows
// keep-alive connections asked once before and once after (each must be
// answered on the same socket by the same real server: rr would send a
// rescheduled flow elsewhere, and without the table the flow's segments
// would be dropped, sloppy_tcp being off), a paced upload and a paced
// download in progress across it (both must complete), and one connection
// asking without pause whose longest wait is the restart's gap. The old
// process must exit 0, new connections must work, and the control socket
// must answer at the same path.
func TestTakeover(t *testing.T) {
	lab.Skip(t)
	bin := lab.BuildBinaries(t)
	l := lab.New(t)
	tapTP := l.NATLab(lab.Options{})
	tapTP.StartHTTP(bin, 8080)
	// Two sockets in a fanout group: six descriptors handed over, and the
	// group must go on spreading flows to the new process's readers.
	pktTP := tapTP.WithPacketLink("02:00:5e:10:00:02")
	pktTP.Options.Queues = 2
	svc := lab.Service{Port: 80, RealPort: 8080, Scheduler: "rr", Method: "nat"}

	for _, tc := range []struct {
		name   string
		tp     *lab.Topology
		signal bool // SIGUSR2 instead of lvsd run -takeover
	}{
		{"tap -takeover", tapTP, false},
		{"packet 2 queues SIGUSR2", pktTP, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tp := tc.tp
			old := tp.StartLvsd(bin, lab.LvsdOptions{}, svc)
			defer old.Stop()
			dial := lab.DialContext(tp.Client)
			conf := tp.Config(svc)
			cfg := l.WriteFile("takeover-"+tp.Type+".toml", conf)
			startTaker := func(name, cfg string) *lab.Proc {
				return l.Start(tp.Director, name, bin.Lvsd, "run", "-c", cfg, "-control", tp.Control, "-takeover")
			}

			conns, servers := openKeepConns(t, dial, takeoverFlows, "before the takeover")
			t.Logf("before the takeover: %d flows on %v", takeoverFlows, servers)

			// Failing takers: the old lvsd serves on.
			bad := l.WriteFile("takeover-bad.toml", "[[interface]\nname = \n")
			wrong := conf
			if tp.Type == "tap" {
				wrong = strings.Replace(conf, tp.MAC, "02:00:5e:10:00:99", 1)
			} else {
				wrong = strings.Replace(conf, `type = "packet"`, "type = \"packet\"\noffload = false", 1)
			}
			if wrong == conf {
				t.Fatal("no configuration contradicting the device")
			}
			wrongPath := l.WriteFile("takeover-wrong-"+tp.Type+".toml", wrong)
			for _, f := range []struct{ name, cfg, says string }{
				{"lvsd-bad", bad, "takeover-bad.toml:"},
				{"lvsd-wrong", wrongPath, "differs from the configuration"},
			} {
				p := startTaker(f.name, f.cfg)
				status := waitExit(t, p, 30*time.Second)
				if status == 0 {
					t.Fatalf("%s: exited 0", f.name)
				}
				if !strings.Contains(p.Output(), f.says) {
					t.Errorf("%s: output does not say %q:\n%s", f.name, f.says, p.Output())
				}
				if exited, _ := old.Exited(); exited {
					t.Fatalf("the running lvsd exited after %s failed:\n%s", f.name, old.Output())
				}
				for i := range 4 {
					if got, err := conns[i].ask(5 * time.Second); err != nil || got != conns[i].server {
						t.Fatalf("after %s (status %d): flow %d answered by %q (%v), was %s", f.name, status, i, got, err, conns[i].server)
					}
				}
				t.Logf("%s: exited %d; the running lvsd serves on", f.name, status)
			}
			// A taker that goes away once the old lvsd has stopped reading
			// and sent its state (this test, speaking the protocol): the
			// old lvsd takes its devices back and forwards again.
			vanish := func() {
				c, err := takeover.Dial(takeover.Path(tp.Control))
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				r, err := takeover.Take(c)
				if err != nil {
					t.Fatal(err)
				}
				for _, dv := range r.Devices {
					for _, f := range dv.Files {
						f.Close()
					}
				}
				state, err := r.Table()
				if err != nil || len(state) == 0 {
					t.Fatalf("state: %d bytes, %v", len(state), err)
				}
			}
			vanish()
			for i := range 8 {
				if got, err := conns[i].ask(5 * time.Second); err != nil || got != conns[i].server {
					t.Fatalf("after a taker vanished: flow %d answered by %q (%v), was %s", i, got, err, conns[i].server)
				}
			}
			if !strings.Contains(old.Output(), "takeover failed; still running") {
				t.Errorf("the old lvsd does not say it resumed:\n%s", old.Output())
			}
			t.Log("a taker that vanished after the old lvsd stopped: the old lvsd serves on")
			if exited, _ := old.Exited(); exited {
				t.Fatal("old lvsd gone before the takeover")
			}
			if err := (dialAsk(dial, t)); err != nil {
				t.Fatalf("new connection before the takeover: %v", err)
			}

			// Transfers across the takeover, paced so that they are
			// mid-flow (see TestRestartSloppy), and a connection that asks
			// without pause, timing each answer.
			const size = 32 << 20
			upDone, downDone := make(chan error, 1), make(chan error, 1)
			up, err := dial(t.Context(), "tcp", lab.VIP.String()+":80")
			if err != nil {
				t.Fatal(err)
			}
			defer up.Close()
			down, err := dial(t.Context(), "tcp", lab.VIP.String()+":80")
			if err != nil {
				t.Fatal(err)
			}
			defer down.Close()
			go func() { upDone <- slowUpload(up, size) }()
			go func() { downDone <- slowDownload(down, size) }()
			pc, err := dial(t.Context(), "tcp", lab.VIP.String()+":80")
			if err != nil {
				t.Fatal(err)
			}
			defer pc.Close()
			pinger := &keepConn{c: pc, r: bufio.NewReader(pc)}
			var (
				pmu    sync.Mutex
				maxGap time.Duration
				asked  int
				perr   error
			)
			stopPing := make(chan struct{})
			pingDone := make(chan struct{})
			go func() {
				defer close(pingDone)
				last := time.Now()
				for {
					select {
					case <-stopPing:
						return
					default:
					}
					_, err := pinger.ask(5 * time.Second)
					now := time.Now()
					pmu.Lock()
					if err != nil {
						perr = err
						pmu.Unlock()
						return
					}
					asked++
					maxGap = max(maxGap, now.Sub(last))
					pmu.Unlock()
					last = now
				}
			}()
			time.Sleep(500 * time.Millisecond)

			var newLvsd *lab.Proc
			if tc.signal {
				// The new process is the old one's child, in its process
				// group, which outlives the old one: stop the group at the
				// end.
				t.Cleanup(func() { stopGroup(old.Pid(), tp.Control) })
				if err := syscall.Kill(old.Pid(), syscall.SIGUSR2); err != nil {
					t.Fatal(err)
				}
			} else {
				newLvsd = startTaker("lvsd-new", cfg)
				defer newLvsd.Stop()
			}
			if status := waitExit(t, old, 30*time.Second); status != 0 {
				t.Fatalf("old lvsd exited %d after the takeover", status)
			}
			if tc.signal && !strings.Contains(old.Output(), "SIGUSR2: new lvsd started") {
				t.Fatalf("no new lvsd in the old one's log:\n%s", old.Output())
			}
			out := func() string {
				if newLvsd != nil {
					return newLvsd.Output()
				}
				return old.Output() // the child shares its log
			}
			gapRe := regexp.MustCompile(`msg="takeover: running" connections=(\d+) .* gap=(\S+)`)
			var gm []string
			for deadline := time.Now().Add(10 * time.Second); gm == nil && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				gm = gapRe.FindStringSubmatch(out())
			}
			if gm == nil {
				t.Fatalf("the new lvsd does not say it runs:\n%s", out())
			}
			time.Sleep(500 * time.Millisecond)
			close(stopPing)
			<-pingDone

			kept := 0
			var lost []string
			for i, k := range conns {
				got, err := k.ask(5 * time.Second)
				switch {
				case err == nil && got == k.server:
					kept++
				case err == nil:
					lost = append(lost, fmt.Sprintf("flow %d: answered by %s, was %s", i, got, k.server))
				default:
					lost = append(lost, fmt.Sprintf("flow %d (%s): %v", i, k.server, err))
				}
			}
			pmu.Lock()
			t.Logf("%s: %d of %d keep-alive flows continued; the handoff restored %s connections; gap inside lvsd %s; longest wait of a connection asking without pause %v (%d answers)",
				tc.name, kept, takeoverFlows, gm[1], gm[2], maxGap.Round(time.Millisecond), asked)
			if perr != nil {
				t.Errorf("the connection asking without pause failed: %v", perr)
			}
			if maxGap > takeoverMaxGap {
				t.Errorf("longest wait %v across the takeover, want at most %v", maxGap, takeoverMaxGap)
			}
			pmu.Unlock()
			if kept != takeoverFlows {
				t.Errorf("%d of %d flows continued; lost:\n%s", kept, takeoverFlows, strings.Join(lost, "\n"))
			}
			if err := <-upDone; err != nil {
				t.Errorf("upload across the takeover: %v", err)
			}
			if err := <-downDone; err != nil {
				t.Errorf("download across the takeover: %v", err)
			}
			for range 6 {
				if err := dialAsk(dial, t); err != nil {
					t.Errorf("new connection after the takeover: %v", err)
				}
			}
			// The control socket answers at the same path, for the new
			// process: every queue reads (the fanout group spreads flows to
			// the new sockets' readers too), and the kernel dropped no frame
			// while nobody read.
			st := tp.Status()
			if len(st.Interfaces) != 1 {
				t.Fatalf("status after the takeover: %d interfaces", len(st.Interfaces))
			}
			ifc := st.Interfaces[0]
			if want := max(tp.Options.Queues, 1); len(ifc.Queues) != want && !(want == 1 && len(ifc.Queues) == 0) {
				t.Errorf("status: %d queues, want %d", len(ifc.Queues), want)
			}
			for q, c := range ifc.Queues {
				if c.RxFrames == 0 {
					t.Errorf("queue %d of the new lvsd read nothing", q)
				}
			}
			if ifc.KernelDrops != 0 {
				t.Errorf("the kernel dropped %d frames of the established queue", ifc.KernelDrops)
			}
			t.Logf("new lvsd: %d frames read, queues %+v, kernel drops %d", ifc.RxFrames, ifc.Queues, ifc.KernelDrops)
		})
	}
}

// dialAsk opens a new connection to the VIP and asks once.
func dialAsk(dial func(context.Context, string, string) (net.Conn, error), t *testing.T) error {
	c, err := dial(t.Context(), "tcp", lab.VIP.String()+":80")
	if err != nil {
		return err
	}
	defer c.Close()
	k := &keepConn{c: c, r: bufio.NewReader(c)}
	_, err = k.ask(5 * time.Second)
	return err
}

// waitExit waits until p exits and returns its exit status (-1 if a
// signal ended it).
func waitExit(t *testing.T, p *lab.Proc, timeout time.Duration) int {
	t.Helper()
	for deadline := time.Now().Add(timeout); ; time.Sleep(20 * time.Millisecond) {
		if exited, err := p.Exited(); exited {
			if err == nil {
				return 0
			}
			var ee interface{ ExitCode() int }
			if errors.As(err, &ee) {
				return ee.ExitCode()
			}
			t.Fatalf("%s: %v", p.Name, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still running after %v:\n%s", p.Name, timeout, p.Output())
		}
	}
}

// stopGroup ends the processes of group pgid (the lab's Proc of its
// leader has exited): SIGTERM, a wait until the control socket ctl is
// gone (lvsd removes it on its way out), then SIGKILL for anything left.
func stopGroup(pgid int, ctl string) {
	if syscall.Kill(-pgid, syscall.SIGTERM) != nil {
		return // none left
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(ctl); err != nil {
			break
		}
	}
	time.Sleep(100 * time.Millisecond)
	syscall.Kill(-pgid, syscall.SIGKILL)
}
