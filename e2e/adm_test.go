package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/lvsd/lvsd/control"
	"github.com/lvsd/lvsd/internal/lab"
)

// adm runs `lvsd adm` against the lab's lvsd and fails the test on a
// non-zero exit.
func adm(t *testing.T, bin lab.Binaries, tp *lab.Topology, stdin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin.Lvsd, append([]string{"adm", "--control", tp.Control}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("lvsd adm %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.String())
	}
	if stderr.Len() > 0 {
		t.Logf("lvsd adm %s: stderr: %s", strings.Join(args, " "), stderr.String())
	}
	return string(out)
}

// counts makes n requests (one connection each) and counts the answers
// per real server; every request must succeed.
func counts(t *testing.T, tp *lab.Topology, bin lab.Binaries, n int) map[string]int {
	t.Helper()
	res := tp.Get(bin, vipURL, n)
	if res.OK != n {
		t.Fatalf("%d requests: %d ok; first errors:\n%s", n, res.OK, strings.Join(res.Errors, "\n"))
	}
	return res.Servers
}

// TestAdmRuntimeChanges drains a real server with ipvsadm's command line
// (lvsd adm), and checks that the change holds through a SIGHUP and a
// restart (the state file), that -S | -R reproduces the table, that lvsd
// config dump is a file lvsd check accepts, and that discarding the runtime
// changes brings back the file.
func TestAdmRuntimeChanges(t *testing.T) {
	t.Parallel() // see the package doc
	bin, l := lab.NewTest(t)
	tp := l.NATLab(lab.Options{})
	tp.StartHTTP(bin, 8080)
	state := filepath.Join(l.Dir(), "runtime.state")
	p := tp.StartLvsd(bin, lab.LvsdOptions{Args: []string{"-state", state}}, wrrHTTP)

	list := adm(t, bin, tp, "", "-Ln")
	want := "TCP  198.18.1.100:80 wrr\n" + fmt.Sprintf("  -> %-28s %-7s %-6d ", "198.18.2.11:8080", "Masq", 3)
	if !strings.HasPrefix(list, "IP Virtual Server version 1.2.1 (size=4096)\nProt LocalAddress:Port Scheduler Flags\n") || !strings.Contains(list, want) {
		t.Fatalf("lvsd adm -Ln:\n%s", list)
	}

	// lvsd run under the name ipvsadm is ipvsadm, and finds its socket
	// through $LVSD_CONTROL.
	link := filepath.Join(l.Dir(), "ipvsadm")
	if err := os.Symlink(bin.Lvsd, link); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(link, "-L", "-n")
	cmd.Env = append(os.Environ(), "LVSD_CONTROL="+tp.Control)
	// (The first four lines: the connection counts may move meanwhile.)
	first4 := func(s string) string { return strings.Join(strings.SplitN(s, "\n", 5)[:4], "\n") }
	if out, err := cmd.Output(); err != nil || first4(string(out)) != first4(list) {
		t.Errorf("ipvsadm -L -n through the symlink (%v):\n%s\nwant\n%s", err, out, list)
	}
	cmd = exec.Command(link, "-n", "-L")
	if out, err := cmd.CombinedOutput(); !strings.Contains(string(out), "Try `ipvsadm -h' or 'ipvsadm --help' for more information.") {
		t.Errorf("ipvsadm -n -L: %v\n%s", err, out)
	}

	// Drain rs1: the others share the new connections 2:1.
	adm(t, bin, tp, "", "-e", "-t", "198.18.1.100:80", "-r", "198.18.2.11:8080", "-m", "-w", "0")
	drained := map[string]int{"rs2": 40, "rs3": 20}
	if diff := cmp.Diff(drained, counts(t, tp, bin, 60)); diff != "" {
		t.Errorf("after the drain (-want +got):\n%s", diff)
	}
	if out := p.Output(); !strings.Contains(out, "runtime change applied") {
		t.Errorf("the change is not logged:\n%s", out)
	}

	// A SIGHUP with the file unchanged keeps the drain.
	if err := syscall.Kill(p.Pid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if err := p.WaitOutput("msg=reloaded", 10*time.Second); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if diff := cmp.Diff(drained, counts(t, tp, bin, 60)); diff != "" {
		t.Errorf("after a reload (-want +got):\n%s", diff)
	}

	// -S | -C; -R reproduces the table.
	saved := adm(t, bin, tp, "", "-S", "-n")
	adm(t, bin, tp, "", "-C")
	if out := adm(t, bin, tp, "", "-Ln"); strings.Contains(out, "198.18.1.100") {
		t.Fatalf("the table is not empty after -C:\n%s", out)
	}
	adm(t, bin, tp, saved, "-R")
	if again := adm(t, bin, tp, "", "-S", "-n"); again != saved {
		t.Errorf("-S after -R:\n%s\nwant\n%s", again, saved)
	}

	// lvsd config dump is a file that lvsd check accepts.
	dump, err := exec.Command(bin.Lvsd, "config", "dump", "-control", tp.Control).Output()
	if err != nil {
		t.Fatal(err)
	}
	dumpFile := l.WriteFile("dump.toml", string(dump))
	if out, err := exec.Command(bin.Lvsd, "check", dumpFile).CombinedOutput(); err != nil {
		t.Errorf("lvsd check of the dump: %v\n%s\n%s", err, out, dump)
	}

	// A restart with the same state file keeps the drain.
	if err := p.Stop(); err != nil {
		t.Logf("stop: %v", err)
	}
	p = tp.StartLvsd(bin, lab.LvsdOptions{Args: []string{"-state", state}}, wrrHTTP)
	if diff := cmp.Diff(drained, counts(t, tp, bin, 60)); diff != "" {
		t.Errorf("after a restart (-want +got):\n%s", diff)
	}
	if out := p.Output(); !strings.Contains(out, "runtime changes restored") {
		t.Errorf("the restart does not say it restored runtime changes:\n%s", out)
	}

	// Discarding the runtime changes brings back 3:2:1.
	if out, err := exec.Command(bin.Lvsd, "config", "discard", "-control", tp.Control).CombinedOutput(); err != nil {
		t.Fatalf("discard: %v\n%s", err, out)
	}
	if diff := cmp.Diff(map[string]int{"rs1": 30, "rs2": 20, "rs3": 10}, counts(t, tp, bin, 60)); diff != "" {
		t.Errorf("after discard (-want +got):\n%s", diff)
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Errorf("the state file is still there after discard: %v", err)
	}
}

// TestAdmChangesUnderLoad changes the table every 100 ms (weights, drains,
// deletes and adds) while clients make requests over keep-alive and
// one-connection-per-request HTTP, and counts failed requests: none may
// fail. It logs the time lvsd takes to answer a change (p50, p99). The run
// lasts LVSD_ADM_LOAD_SECONDS (default 10).
func TestAdmChangesUnderLoad(t *testing.T) {
	lab.Skip(t)
	secs := 10
	if s, err := strconv.Atoi(os.Getenv("LVSD_ADM_LOAD_SECONDS")); err == nil && s > 0 {
		secs = s
	}
	bin := lab.BuildBinaries(t)
	l := lab.New(t)
	tp := l.NATLab(lab.Options{})
	tp.StartHTTP(bin, 8080)
	tp.StartLvsd(bin, lab.LvsdOptions{Args: []string{"-state", "none"}}, wrrHTTP)

	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(secs)*time.Second)
	defer cancel()
	// failed counts per client kind: [0] one connection per request, [1]
	// keep-alive.
	var ok atomic.Int64
	var failed [2]atomic.Int64
	var errMu sync.Mutex
	var errs []string
	client := func(keepAlive bool) {
		c := lab.HTTPClient(tp.Client, 5*time.Second)
		c.Transport.(*http.Transport).DisableKeepAlives = !keepAlive
		for ctx.Err() == nil {
			resp, err := c.Get(vipURL)
			if err == nil {
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err == nil && resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("status %s", resp.Status)
				}
			}
			if err != nil && ctx.Err() == nil {
				if keepAlive {
					failed[1].Add(1)
				} else {
					failed[0].Add(1)
				}
				errMu.Lock()
				if len(errs) < 10 {
					errs = append(errs, err.Error())
				}
				errMu.Unlock()
				continue
			}
			ok.Add(1)
		}
	}
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() { client(i%2 == 0) })
	}

	// The changes: a weight, a drain and its end, a delete and an add.
	vs := []string{"-t", "198.18.1.100:80"}
	steps := [][]string{
		append(slices.Clone([]string{"-e"}), append(vs, "-r", "198.18.2.11:8080", "-m", "-w", "5")...),
		append(slices.Clone([]string{"-e"}), append(vs, "-r", "198.18.2.12:8080", "-m", "-w", "0")...),
		append(slices.Clone([]string{"-e"}), append(vs, "-r", "198.18.2.11:8080", "-m", "-w", "3")...),
		append(slices.Clone([]string{"-e"}), append(vs, "-r", "198.18.2.12:8080", "-m", "-w", "2")...),
		append(slices.Clone([]string{"-d"}), append(vs, "-r", "198.18.2.13:8080")...),
		append(slices.Clone([]string{"-a"}), append(vs, "-r", "198.18.2.13:8080", "-m", "-w", "1")...),
	}
	var lat []time.Duration
	deletes := 0
	// Phase one (the first half): weights and drains only, which must fail
	// nothing. Phase two adds deletes and adds.
	half := time.Now().Add(time.Duration(secs) * time.Second / 2)
	var failedPhase1 [2]int64
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	phase1 := true
	k := 0 // the step within the phase
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-tick.C:
			if phase1 && time.Now().After(half) && k%4 == 0 {
				phase1, k = false, 0
				failedPhase1 = [2]int64{failed[0].Load(), failed[1].Load()}
			}
			step := steps[k%len(steps)]
			if phase1 {
				step = steps[k%4]
			}
			k++
			start := time.Now()
			res, err := control.Adm(context.Background(), tp.Control, control.AdmRequest{Args: step})
			if err != nil || res.Code != 0 {
				t.Fatalf("change %v: %v %+v", step, err, res)
			}
			lat = append(lat, time.Since(start))
			if step[0] == "-d" {
				deletes++
			}
		}
	}
	wg.Wait()
	slices.Sort(lat)
	p := func(q float64) time.Duration { return lat[int(q*float64(len(lat)-1))] }
	t.Logf("%d s: %d requests ok; weights and drains: %d failed; with deletes and adds: %d failed (%d one-connection, %d keep-alive) over %d deletes; %d changes, time to apply one: p50 %v p99 %v max %v",
		secs, ok.Load(), failedPhase1[0]+failedPhase1[1], failed[0].Load()+failed[1].Load()-failedPhase1[0]-failedPhase1[1],
		failed[0].Load()-failedPhase1[0], failed[1].Load()-failedPhase1[1], deletes, len(lat), p(0.5), p(0.99), lat[len(lat)-1])
	// Weights and drains fail no request. A delete ends the connections of
	// its real server, as in IPVS: a request in flight on it fails, at most
	// one per client and delete.
	if failedPhase1[0]+failedPhase1[1] > 0 || failed[0].Load()+failed[1].Load() > int64(4*deletes) {
		t.Errorf("requests failed under changes; first errors:\n%s", strings.Join(errs, "\n"))
	}
	if ok.Load() == 0 || len(lat) < secs*5 {
		t.Errorf("too little happened: %d requests, %d changes", ok.Load(), len(lat))
	}
}

// TestAdmUnprivilegedXDG runs lvsd as an unprivileged user without
// -control: it serves its socket in $XDG_RUNTIME_DIR, and that user's
// lvsd list and lvsd adm find it without flags; as the socket's owner the
// user may change the table.
func TestAdmUnprivilegedXDG(t *testing.T) {
	t.Parallel() // see the package doc
	lab.NeedTools(t, "setpriv")
	bin, l := lab.NewTest(t)
	xdg, err := os.MkdirTemp("", "lvt-xdg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(xdg) })
	if err := os.Chown(xdg, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	os.Chmod(xdg, 0o700)
	tp := l.NATLab(lab.Options{Owner: nobody})
	tp.StartHTTP(bin, 8080)
	env := []string{"XDG_RUNTIME_DIR=" + xdg, "LVSD_CONTROL="}
	tp.StartLvsd(bin, lab.LvsdOptions{UID: nobody, DefaultControl: true, Env: env}, wrrHTTP)
	// The lab's readiness is the forwarding path's; the socket is served
	// beside it, not before it (an unprivileged lvsd's socket is not
	// what the lab waits for), so it may appear a moment later.
	sock := filepath.Join(xdg, "lvsd.sock")
	var serr error
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, serr = os.Stat(sock); serr == nil || time.Now().After(deadline) {
			break
		}
	}
	if serr != nil {
		t.Fatalf("no socket in $XDG_RUNTIME_DIR after 10 s: %v", serr)
	}
	asNobody := func(args ...string) (string, error) {
		cmd := exec.Command("setpriv", append([]string{"--reuid", "65534", "--regid", "65534", "--clear-groups", "--", bin.Lvsd}, args...)...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := asNobody("list"); err != nil || !strings.Contains(out, "TCP  198.18.1.100:80 wrr\n") {
		t.Fatalf("lvsd list as the same user, no flags: %v\n%s", err, out)
	}
	if out, err := asNobody("adm", "-e", "-t", "198.18.1.100:80", "-r", "198.18.2.11:8080", "-m", "-w", "0"); err != nil {
		t.Fatalf("lvsd adm -e as the socket's owner: %v\n%s", err, out)
	}
	if out, _ := asNobody("adm", "-Ln"); !strings.Contains(out, fmt.Sprintf("  -> %-28s %-7s %-6d ", "198.18.2.11:8080", "Masq", 0)) {
		t.Errorf("the drain is not listed:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(xdg, "lvsd.state")); err != nil {
		t.Errorf("no state file beside the socket: %v", err)
	}
}
