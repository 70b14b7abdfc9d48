package lab

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// EnvE2E is the environment variable that turns a lab's skip into a
// failure: CI sets LVSD_E2E=1, where a lab that cannot run is a broken
// machine, not a reason to pass.
const EnvE2E = "LVSD_E2E"

// Skip skips the test when a lab cannot run here: not root, no
// /dev/net/tun, no `ip` or `sysctl` command; and in -short mode (`make
// unit`). With
// LVSD_E2E=1 a missing requirement fails the test instead (-short still
// skips: it is an explicit request).
func Skip(tb testing.TB) {
	tb.Helper()
	if testing.Short() {
		tb.Skip("namespace lab: skipped in -short mode")
	}
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (CAP_NET_ADMIN, CAP_SYS_ADMIN)")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		missing = append(missing, "/dev/net/tun")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		missing = append(missing, "the ip command (Debian: iproute2)")
	}
	if _, err := exec.LookPath("sysctl"); err != nil {
		missing = append(missing, "the sysctl command (Debian: procps)")
	}
	skipOrFail(tb, missing)
}

// NeedTools skips the test (fails it with LVSD_E2E=1) when a command is not
// on PATH, e.g. NeedTools(t, "ping") (Debian: iputils-ping).
func NeedTools(tb testing.TB, tools ...string) {
	tb.Helper()
	var missing []string
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, "the "+tool+" command")
		}
	}
	skipOrFail(tb, missing)
}

func skipOrFail(tb testing.TB, missing []string) {
	tb.Helper()
	if len(missing) == 0 {
		return
	}
	msg := "namespace lab needs " + strings.Join(missing, ", ")
	if os.Getenv(EnvE2E) == "1" {
		tb.Fatalf("%s (%s=1: a skipped lab is a failure)", msg, EnvE2E)
	}
	tb.Skipf("%s; set %s=1 to make this a failure", msg, EnvE2E)
}

// NewTest is the start of a lab test: it skips tb where a lab cannot run
// (Skip), builds the binaries (BuildBinaries) and makes a lab (New). A test
// that runs beside others calls tb's Parallel first.
func NewTest(tb testing.TB) (Binaries, *Lab) {
	tb.Helper()
	Skip(tb)
	return BuildBinaries(tb), New(tb)
}
