package control

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lvsd/lvsd/adm"
)

// fakeAdmin records what it is asked (a unit-test stand-in for
// runstate.Runtime).
type fakeAdmin struct {
	mu   sync.Mutex
	runs [][]string
}

func (f *fakeAdmin) Adm(program string, args, stdin []string, who string) adm.Result {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.runs = append(f.runs, args)
	return adm.Result{Stdout: "ran " + strings.Join(args, " ") + " for " + who + "\n"}
}
func (f *fakeAdmin) Dump() []byte   { return []byte("[timeouts]\n") }
func (f *fakeAdmin) Discard() error { return nil }

func serve(t *testing.T, o Options) (path string) {
	t.Helper()
	dir := t.TempDir()
	// Other uids must reach the socket in the permission test.
	os.Chmod(filepath.Dir(dir), 0o755)
	os.Chmod(dir, 0o755)
	o.Path = filepath.Join(dir, "lvsd.sock")
	if o.Source == nil {
		src := fixed(sample)
		o.Source = &src
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := ServeOptions(ctx, o); err != nil {
			t.Errorf("ServeOptions: %v", err)
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
	for range 100 {
		if Live(o.Path) {
			return o.Path
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("the socket never came up")
	return ""
}

func TestAdmOverTheSocket(t *testing.T) {
	fa := &fakeAdmin{}
	path := serve(t, Options{Admin: fa})
	ctx := context.Background()
	res, err := Adm(ctx, path, AdmRequest{Args: []string{"-A", "-t", "192.0.2.1:80"}})
	if err != nil || res.Code != 0 || !strings.HasPrefix(res.Stdout, "ran -A -t 192.0.2.1:80 for uid 0 pid ") {
		t.Fatalf("adm as root: %+v %v", res, err)
	}
	if data, err := GetConfig(ctx, path); err != nil || string(data) != "[timeouts]\n" {
		t.Errorf("config: %q %v", data, err)
	}
	if err := Discard(ctx, path); err != nil {
		t.Errorf("discard: %v", err)
	}
	// Malformed and oversized requests are refused.
	c := client(path)
	resp, err := c.Post("http://lvsd/v1/adm", "application/json", strings.NewReader("{not json"))
	if err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Errorf("malformed: %v %v", resp, err)
	}
	big := `{"args":["-R"],"stdin":["` + strings.Repeat("x", 2<<20) + `"]}`
	path2 := serve(t, Options{Admin: fa, MaxRequest: 1 << 20})
	resp, err = client(path2).Post("http://lvsd/v1/adm", "application/json", strings.NewReader(big))
	if err != nil || resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized: %v %v", resp, err)
	}
}

// TestConnectionLimits: past MaxConns the idle connections make room, so
// that 10 000 of them hold at most MaxConns descriptors in the server and
// the status still answers; and a silent connection is closed after the
// header timeout.
func TestConnectionLimits(t *testing.T) {
	path := serve(t, Options{MaxConns: 8, HeaderTimeout: 300 * time.Millisecond, IdleTimeout: 300 * time.Millisecond})
	// 10 000 idle connections where the descriptor limit allows them.
	n := 200
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) == nil && lim.Cur >= 10300 {
		n = 10000
	}
	var idle []net.Conn
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	for range n {
		// A full accept queue answers EAGAIN: wait for the server.
		var c net.Conn
		var err error
		for try := 0; try < 200; try++ {
			if c, err = net.Dial("unix", path); err == nil || !errors.Is(err, syscall.EAGAIN) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := Get(ctx, path); err != nil {
		t.Fatalf("status with %d idle connections: %v", n, err)
	}
	// At most MaxConns are open on the server side: the others read EOF.
	closed := 0
	for _, c := range idle {
		c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); err != nil && !isTimeout(err) {
			closed++
		}
	}
	if closed < n-8 {
		t.Errorf("%d of %d idle connections closed, want at least %d", closed, n, n-8)
	}
	t.Logf("%d idle connections: the status answered, %d were closed", n, closed)
	// And a silent connection is closed after the header timeout.
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Errorf("a silent connection stayed open: %v", err)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// TestPermissions runs clients as other uids: a member of the socket's
// group reads and may not change; another user cannot open the socket.
func TestPermissions(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to run clients as other users")
	}
	fa := &fakeAdmin{}
	path := serve(t, Options{Admin: fa, Group: "65534"})
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); fi.Mode().Perm() != 0o660 || st.Gid != 65534 {
		t.Fatalf("socket mode %v gid %d, want 0660 gid 65534", fi.Mode().Perm(), st.Gid)
	}
	// The test binary sits in a directory only root may read: run a copy.
	bin := filepath.Join(filepath.Dir(path), "client.test")
	data, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	run := func(uid, gid uint32, args ...string) (string, error) {
		cmd := exec.Command(bin, "-test.run=^TestPermissionClient$")
		cmd.Dir = filepath.Dir(path)
		cmd.Env = append(os.Environ(), "LVSD_TEST_CLIENT="+path, "LVSD_TEST_ARGS="+strings.Join(args, " "))
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run(65534, 65534, "-Ln")
	if err != nil || !strings.Contains(out, "RESULT 0 ran -Ln for uid 65534") {
		t.Errorf("a group member reading: %v\n%s", err, out)
	}
	out, err = run(65534, 65534, "-A", "-t", "192.0.2.1:80")
	if err != nil || !strings.Contains(out, "RESULT 255 Permission denied (you must be root)") {
		t.Errorf("a group member changing: %v\n%s", err, out)
	}
	// A changing line the parser refuses is refused as a change all the same.
	out, err = run(65534, 65534, "-a", "-t", "192.0.2.1:www", "-r", "x")
	if err != nil || !strings.Contains(out, "RESULT 255 Permission denied (you must be root)") {
		t.Errorf("a group member sending a bad changing line: %v\n%s", err, out)
	}
	out, err = run(65533, 65533, "-Ln")
	if err != nil || !strings.Contains(out, "ERROR") || !strings.Contains(out, "permission denied") {
		t.Errorf("another user: %v\n%s", err, out)
	}
	for _, r := range fa.runs {
		if r[0] == "-A" {
			t.Errorf("a refused change reached the admin: %v", r)
		}
	}
}

// TestPermissionClient is the client TestPermissions runs as another uid.
func TestPermissionClient(t *testing.T) {
	path := os.Getenv("LVSD_TEST_CLIENT")
	if path == "" {
		t.Skip("run by TestPermissions")
	}
	res, err := Adm(context.Background(), path, AdmRequest{Args: strings.Fields(os.Getenv("LVSD_TEST_ARGS"))})
	if err != nil {
		os.Stdout.WriteString("ERROR " + err.Error() + "\n")
		return
	}
	os.Stdout.WriteString("RESULT " + itoa(res.Code) + " " + res.Stdout + res.Stderr + "\n")
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }
