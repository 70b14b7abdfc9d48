package e2e

import (
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lvsd/lvsd/internal/lab"
)

// TestDeviceLifecycle runs lvsd on the NAT lab's TAP through what a device
// goes through (one lab, in order):
//
//  1. create = false with the device absent: lvsd exits 1 with an error
//     that says the device does not exist and create is false.
//  2. create = true, bridge = "lvtbr0": lvsd creates the TAP in the bridge
//     and forwards; stopped, the device goes with it; started again, it
//     creates it in the bridge again and forwards (before, it came back off
//     the bridge and forwarded nothing).
//  3. persist = true: the TAP lvsd created stays, in its bridge, after lvsd
//     exits.
//  4. on_loss = "reattach" (the default): the device deleted under lvsd and
//     created again by an operator: forwarding resumes within 2 s, and the
//     status shows the interface lost, then up and re-attached once.
//  5. on_loss = "exit": the device deleted under lvsd: lvsd exits 1.
func TestDeviceLifecycle(t *testing.T) {
	t.Parallel() // see the package doc
	bin, l := lab.NewTest(t)
	tp := l.NATLab(lab.Options{})
	tp.StartHTTP(bin, 8080)
	svc := lab.Service{Port: 80, RealPort: 8080, Scheduler: "rr"}
	dir := tp.Director
	l.IP(dir, "link", "del", lab.TAPName)

	n := 0
	start := func(keys ...string) *lab.Proc {
		t.Helper()
		cfg := tp.Config(svc)
		cfg = strings.Replace(cfg, "create = false\n", strings.Join(keys, "\n")+"\n", 1)
		n++
		path := l.WriteFile(fmt.Sprintf("device-%d.toml", n), cfg)
		tp.Control = filepath.Join(l.Dir(), fmt.Sprintf("device-%d.sock", n))
		return l.Start(dir, "lvsd", bin.Lvsd, "run", "-c", path, "-control", tp.Control)
	}
	client := lab.HTTPClient(tp.Client, 300*time.Millisecond)
	get := func() error {
		resp, err := client.Get(vipURL)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return nil
	}
	// forwards waits until a request through the VIP succeeds and returns
	// how long that took.
	forwards := func(step string, within time.Duration) time.Duration {
		t.Helper()
		t0 := time.Now()
		var err error
		for time.Since(t0) < within {
			if err = get(); err == nil {
				return time.Since(t0)
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("%s: no request through the VIP succeeded within %v: %v", step, within, err)
		return 0
	}
	exists := func() bool {
		_, err := l.TryExec(dir, 5*time.Second, "ip", "link", "show", lab.TAPName)
		return err == nil
	}
	inBridge := func() bool {
		out, err := l.TryExec(dir, 5*time.Second, "ip", "-o", "link", "show", lab.TAPName)
		return err == nil && strings.Contains(out, "master "+lab.BridgeName)
	}
	exit1 := func(step string, p *lab.Proc, within time.Duration, msg string) {
		t.Helper()
		err := fmt.Errorf("still running after %v", within)
		for t0 := time.Now(); time.Since(t0) < within; time.Sleep(20 * time.Millisecond) {
			if exited, werr := p.Exited(); exited {
				err = werr
				break
			}
		}
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Fatalf("%s: lvsd: %v, want exit status 1; output:\n%s", step, err, p.Output())
		}
		if !strings.Contains(p.Output(), msg) {
			t.Errorf("%s: output lacks %q:\n%s", step, msg, p.Output())
		}
	}

	// 1. create = false, no device.
	p := start("create = false")
	exit1("create = false", p, 10*time.Second, `interface \"lvttap0\" does not exist and create = false`)
	if exists() {
		t.Fatal("create = false created the device")
	}

	// 2. Created by lvsd in the bridge; gone with it; created again.
	for round := 1; round <= 2; round++ {
		p = start("create = true", `bridge = "lvtbr0"`)
		t.Logf("round %d: forwarding after %v", round, forwards("created by lvsd", 15*time.Second))
		if !inBridge() {
			t.Errorf("round %d: the TAP lvsd created is not in %s", round, lab.BridgeName)
		}
		p.Stop()
		if exists() {
			t.Fatalf("round %d: the device lvsd created (persist = false) outlived it", round)
		}
	}

	// 3. persist = true.
	p = start("create = true", `bridge = "lvtbr0"`, "persist = true")
	forwards("persistent", 15*time.Second)
	p.Stop()
	if !exists() || !inBridge() {
		t.Fatalf("persist = true: after lvsd exited the device exists %v, in the bridge %v", exists(), inBridge())
	}

	// 4. Deleted under lvsd and created again: re-attached.
	p = start("create = false")
	forwards("existing device", 15*time.Second)
	l.IP(dir, "link", "del", lab.TAPName)
	deadline := time.Now().Add(5 * time.Second)
	for tp.Status().Interfaces[0].State != "lost" {
		if time.Now().After(deadline) {
			t.Fatalf("status after the device was deleted: %+v", tp.Status().Interfaces[0])
		}
		time.Sleep(50 * time.Millisecond)
	}
	l.TunTap(dir, lab.TAPName, "tap", 0, false)
	l.Enslave(dir, lab.TAPName, lab.BridgeName)
	took := forwards("device created again", 5*time.Second)
	t.Logf("forwarding resumed %v after the device was created again", took)
	if took > 2*time.Second {
		t.Errorf("forwarding resumed after %v, want within 2 s", took)
	}
	if i := tp.Status().Interfaces[0]; i.State != "up" || i.Reattached != 1 {
		t.Errorf("status after re-attaching: state %q, re-attached %d; want up, 1", i.State, i.Reattached)
	}
	p.Stop()

	// 5. on_loss = "exit".
	p = start("create = false", `on_loss = "exit"`)
	forwards("on_loss = exit", 15*time.Second)
	l.IP(dir, "link", "del", lab.TAPName)
	exit1("on_loss = exit", p, 5*time.Second, "device lost")
}
