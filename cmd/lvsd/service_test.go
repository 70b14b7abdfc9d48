package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
)

// unitFile is the systemd unit shipped in dist/.
const unitFile = "../../dist/lvsd.service"

// TestSystemdUnit checks the unit's contract with lvsd: Type=notify (lvsd
// sends READY=1), the commands it runs exist, reload is SIGHUP, and the
// capabilities are CAP_NET_ADMIN and CAP_NET_RAW and no more. When
// systemd-analyze is installed, it verifies the unit too.
func TestSystemdUnit(t *testing.T) {
	data, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	keys := make(map[string][]string)
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || l[0] == '#' || l[0] == '[' {
			continue
		}
		k, v, _ := strings.Cut(l, "=")
		keys[k] = append(keys[k], v)
	}
	want := map[string]string{
		"Type":                    "notify",
		"ExecStart":               "/usr/local/bin/lvsd run -c /etc/lvsd/lvsd.toml",
		"ExecStartPre":            "/usr/local/bin/lvsd check -c /etc/lvsd/lvsd.toml",
		"ExecReload":              "/bin/kill -HUP $MAINPID",
		"CapabilityBoundingSet":   "CAP_NET_ADMIN CAP_NET_RAW",
		"AmbientCapabilities":     "CAP_NET_ADMIN CAP_NET_RAW",
		"NoNewPrivileges":         "yes",
		"RuntimeDirectory":        "lvsd", // the default control socket's directory
		"DeviceAllow":             "/dev/net/tun rw",
		"RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6 AF_PACKET AF_NETLINK",
	}
	for k, v := range want {
		if got := keys[k]; !slices.Equal(got, []string{v}) {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if systemControl != "/run/lvsd/lvsd.sock" {
		t.Errorf("the default control socket %s is not in the unit's RuntimeDirectory", systemControl)
	}
	// The commands the unit runs are lvsd's: check of the example works.
	if code := run([]string{"check", "-c", "../../lvsd.toml.example"}); code != 0 {
		t.Errorf("lvsd check: exit %d", code)
	}

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Logf("no systemd-analyze: unit not verified by systemd")
		return
	}
	// Verify a copy that runs a binary that exists (the test's own) and
	// has no man page reference (the man page is not installed here).
	self, _ := os.Executable()
	u := strings.ReplaceAll(string(data), "/usr/local/bin/lvsd", self)
	u = strings.ReplaceAll(u, "Documentation=man:lvsd(8)\n", "")
	path := filepath.Join(t.TempDir(), "lvsd.service")
	if err := os.WriteFile(path, []byte(u), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(analyze, "verify", path).CombinedOutput(); err != nil {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestLogger checks -log-format and the journald rule: no time when
// JOURNAL_STREAM is set.
func TestLogger(t *testing.T) {
	for _, tt := range []struct {
		format, journal string
		check           func(string) bool
	}{
		{"text", "", func(s string) bool { return strings.HasPrefix(s, "time=") && strings.Contains(s, `msg=hello k=v`) }},
		{"text", "8:1234", func(s string) bool { return strings.HasPrefix(s, "level=INFO msg=hello k=v") }},
		{"json", "", func(s string) bool {
			var m map[string]any
			return json.Unmarshal([]byte(s), &m) == nil && m["time"] != nil && m["msg"] == "hello" && m["k"] == "v"
		}},
		{"json", "8:1234", func(s string) bool {
			var m map[string]any
			return json.Unmarshal([]byte(s), &m) == nil && m["time"] == nil && m["msg"] == "hello"
		}},
	} {
		t.Setenv("JOURNAL_STREAM", tt.journal)
		var b bytes.Buffer
		log, err := newLogger(&b, tt.format, "info")
		if err != nil {
			t.Fatal(err)
		}
		log.Debug("hidden")
		log.Info("hello", "k", "v")
		if !tt.check(strings.TrimSpace(b.String())) {
			t.Errorf("format %s, JOURNAL_STREAM=%q: %q", tt.format, tt.journal, b.String())
		}
	}
	if _, err := newLogger(os.Stderr, "xml", "info"); err == nil || !strings.Contains(err.Error(), `"xml"`) {
		t.Errorf("format xml: %v, want an error naming it", err)
	}
	if _, err := newLogger(os.Stderr, "text", "loud"); err == nil || !strings.Contains(err.Error(), "-log-level") {
		t.Errorf("level loud: %v, want a -log-level error", err)
	}
	stderr := captureStderr(t, func() {
		if code := run([]string{"run", "-c", "../../lvsd.toml.example", "-log-format", "yaml"}); code != 2 {
			t.Errorf("run -log-format yaml: exit %d, want 2", code)
		}
	})
	if !strings.Contains(stderr, `"yaml"`) {
		t.Errorf("stderr %q does not name the bad format", stderr)
	}
}

// TestVersion checks where the version comes from: the linker, the module
// version of a `go install pkg@version` build, the VCS revision of a build
// in a checkout.
func TestVersion(t *testing.T) {
	mod := &debug.BuildInfo{Main: debug.Module{Path: "github.com/lvsd/lvsd", Version: "v0.3.1"}}
	vcs := &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.modified", Value: "true"}}}
	for _, tt := range []struct {
		linked string
		bi     *debug.BuildInfo
		want   string
	}{
		{"v1.0.0", mod, "v1.0.0"},
		{"dev", mod, "v0.3.1"},
		{"dev", vcs, "dev-0123456789ab-dirty"},
		{"dev", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "dev"},
	} {
		if got := versionFrom(tt.linked, tt.bi, true); got != tt.want {
			t.Errorf("versionFrom(%q, %v) = %q, want %q", tt.linked, tt.bi.Main.Version, got, tt.want)
		}
	}
	for _, arg := range []string{"version", "-v", "--version"} {
		out := captureStdout(t, func() {
			if code := run([]string{arg}); code != 0 {
				t.Errorf("lvsd %s: exit %d", arg, code)
			}
		})
		if !strings.HasPrefix(out, "lvsd ") || strings.TrimSpace(out) == "lvsd" {
			t.Errorf("lvsd %s printed %q", arg, out)
		}
	}
}

func captureStdout(t *testing.T, fn func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stdout
	os.Stdout = w
	done := make(chan string)
	go func() {
		var b bytes.Buffer
		b.ReadFrom(r)
		done <- b.String()
	}()
	fn()
	os.Stdout = old
	w.Close()
	return <-done
}
