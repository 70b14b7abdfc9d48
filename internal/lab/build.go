package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Binaries are the programs a lab runs, built once per process.
type Binaries struct {
	// Lvsd is the path of lvsd built from ./cmd/lvsd; empty if only the
	// lab server was built.
	Lvsd string
	// Labserver is the path of ./internal/lab/labserver.
	Labserver string
}

// buildTimeout bounds one `go build`; a cold build of lvsd with gVisor on a
// two-core machine takes a few minutes.
const buildTimeout = 10 * time.Minute

var builds struct {
	mu  sync.Mutex
	dir string            // guarded by mu: lvt-<pid>-bin-*, mode 0755
	out map[string]result // guarded by mu: package -> build result
}

type result struct {
	path string
	err  error
}

// EnvLvsd names an lvsd binary for BuildBinaries to use instead of building
// ./cmd/lvsd, e.g. LVSD_LAB_LVSD=$PWD/bin/lvsd to test a release build. It
// must be an absolute path, executable by the uid a test runs lvsd as.
const EnvLvsd = "LVSD_LAB_LVSD"

// BuildBinaries builds lvsd (unless EnvLvsd names one) and the lab server,
// once per process, into a directory readable by every user (an
// unprivileged lvsd runs from there). A build failure is fatal to every
// caller, with the compiler's output.
func BuildBinaries(t T) Binaries {
	t.Helper()
	lvsd := os.Getenv(EnvLvsd)
	if lvsd == "" {
		lvsd = build(t, "./cmd/lvsd", "lvsd")
	} else if !filepath.IsAbs(lvsd) {
		t.Fatalf("lab: %s=%s: want an absolute path", EnvLvsd, lvsd)
	}
	return Binaries{Lvsd: lvsd, Labserver: build(t, "./internal/lab/labserver", "labserver")}
}

// RemoveBinaries deletes the build directory; call it from TestMain after
// m.Run, or from a program's teardown. A directory left by a killed process
// is removed by a later RemoveStale.
func RemoveBinaries() {
	builds.mu.Lock()
	defer builds.mu.Unlock()
	if builds.dir != "" {
		os.RemoveAll(builds.dir)
		builds.dir = ""
		builds.out = nil
	}
}

func build(t T, pkg, name string) string {
	t.Helper()
	builds.mu.Lock()
	defer builds.mu.Unlock()
	if r, ok := builds.out[pkg]; ok {
		if r.err != nil {
			t.Fatalf("lab: %v", r.err)
		}
		return r.path
	}
	if builds.dir == "" {
		dir, err := os.MkdirTemp("", fmt.Sprintf("lvt-%d-bin-", os.Getpid()))
		if err == nil {
			err = os.Chmod(dir, 0o755)
		}
		if err != nil {
			t.Fatalf("lab: build directory: %v", err)
		}
		builds.dir = dir
		builds.out = make(map[string]result)
	}
	r := result{path: filepath.Join(builds.dir, name)}
	r.err = goBuild(r.path, pkg)
	builds.out[pkg] = r
	if r.err != nil {
		t.Fatalf("lab: %v", r.err)
	}
	return r.path
}

// goBuild runs `go build -o out pkg` at the module root.
func goBuild(out, pkg string) error {
	gocmd, err := GoCommand()
	if err != nil {
		return fmt.Errorf("build %s: %w", pkg, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	gomod, err := exec.CommandContext(ctx, gocmd, "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("build %s: go env GOMOD: %w", pkg, err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	if strings.TrimSpace(string(gomod)) == "" || strings.TrimSpace(string(gomod)) == os.DevNull {
		return fmt.Errorf("build %s: not inside the lvsd module (go env GOMOD is empty)", pkg)
	}
	cmd := exec.CommandContext(ctx, gocmd, "build", "-o", out, pkg)
	cmd.Dir = root
	b, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go build %s (in %s): %w\n%s", pkg, root, err, b)
	}
	return nil
}

// GoCommand finds the go command: on PATH, else in $GOROOT/bin, else in
// /usr/local/go/bin, where the official distribution installs it (sudo may
// reset PATH). The lab builds lvsd with it, and the bench runs the Go
// benchmarks with it.
func GoCommand() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	var tried []string
	for _, root := range []string{os.Getenv("GOROOT"), "/usr/local/go"} {
		if root == "" {
			continue
		}
		p := filepath.Join(root, "bin", "go")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		tried = append(tried, p)
	}
	return "", fmt.Errorf("the go command is not on PATH nor at %s", strings.Join(tried, ", "))
}
