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
	lab.Skip(t)
	bin := lab.BuildBinaries(t)
	l := lab.New(t)
	tp := l.NATLab(lab.Options{})
	tp.StartHTTP(bin, 8080)
	state := filepath.Join(l.Dir(), "runtime.state")
	p := tp.StartLvsd(bin, lab.LvsdOptions{Args: []string{"-state", state}}, wrrHTTP)

	list := adm(t, bin, tp, "", "-Ln")
	want := "TCP  198.18.1.100:80 wrr\n" + fmt.Sprintf("  -> %-28s %-7s %-6d ", "198.18.2.11:8080", "Masq", 3)
	if !strings.HasPrefix(list, "IP Virtual Server version 1.2.1 (size=4096)\nProt LocalAddress:Port Scheduler Flags\n") || !strings.Contains(list, want) {
		t.Fatalf("lvsd adm -Ln:\n%s", list)
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
	var ok, failed atomic.Int64
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
				failed.Add(1)
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
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ctx.Err() == nil; i++ {
		select {
		case <-ctx.Done():
		case <-tick.C:
			start := time.Now()
			res, err := control.Adm(context.Background(), tp.Control, control.AdmRequest{Args: steps[i%len(steps)]})
			if err != nil || res.Code != 0 {
				t.Fatalf("change %v: %v %+v", steps[i%len(steps)], err, res)
			}
			lat = append(lat, time.Since(start))
		}
	}
	wg.Wait()
	slices.Sort(lat)
	p := func(q float64) time.Duration { return lat[int(q*float64(len(lat)-1))] }
	t.Logf("%d s: %d requests ok, %d failed; %d changes, time to apply one: p50 %v p99 %v max %v",
		secs, ok.Load(), failed.Load(), len(lat), p(0.5), p(0.99), lat[len(lat)-1])
	if failed.Load() > 0 {
		t.Errorf("%d requests failed under changes; first errors:\n%s", failed.Load(), strings.Join(errs, "\n"))
	}
	if ok.Load() == 0 || len(lat) < secs*5 {
		t.Errorf("too little happened: %d requests, %d changes", ok.Load(), len(lat))
	}
}
