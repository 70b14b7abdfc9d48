package e2e

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/lvsd/lvsd/internal/lab"
)

// drTUNErrors is a configuration with every DR and TUN mistake lvsd
// rejects: port mapping with DR or TUN (IPVS rewrites no port for them), and
// DR (which only changes MACs) on a TUN device, whether the method is the
// service's, inherited by default, or a real server's own.
const drTUNErrors = `[[interface]]
name = "lvttap0"
addresses = ["198.18.1.1/24"]

[[interface]]
name = "lvttun0"
type = "tun"
addresses = ["198.18.3.1/24"]

[[virtual_server]]
protocol = "tcp"
address = "198.18.1.100"
port = 80
method = "dr"
interface = "lvttap0"

  [[virtual_server.real_server]]
  address = "198.18.1.21"
  port = 8080

  [[virtual_server.real_server]]
  address = "198.18.1.22"
  port = 8081
  method = "tun"

[[virtual_server]]
protocol = "tcp"
address = "198.18.3.100"
port = 80
method = "dr"
interface = "lvttun0"

  [[virtual_server.real_server]]
  address = "198.18.4.11"

[[virtual_server]]
protocol = "udp"
address = "198.18.3.101"
port = 53
interface = "lvttun0"

  [[virtual_server.real_server]]
  address = "198.18.4.12"

  [[virtual_server.real_server]]
  address = "198.18.4.13"
  method = "dr"
`

// TestDRTUNConfigErrors runs the lvsd binary on drTUNErrors: `lvsd check`
// and `lvsd run` both refuse it with exit status 2, each mistake reported as
// FILE:LINE: KEY: message. It needs no privileges.
func TestDRTUNConfigErrors(t *testing.T) {
	t.Parallel() // see the package doc
	if testing.Short() {
		t.Skip("builds lvsd: skipped in -short mode")
	}
	bin := lab.BuildBinaries(t)
	path := filepath.Join(t.TempDir(), "bad.toml")
	if err := os.WriteFile(path, []byte(drTUNErrors), 0o644); err != nil {
		t.Fatal(err)
	}
	want := []string{
		path + `:19: virtual_server[0].real_server[0].port: 8080: port mapping (virtual port 80) is not possible with method dr; remove port or use nat`,
		path + `:23: virtual_server[0].real_server[1].port: 8081: port mapping (virtual port 80) is not possible with method tun; remove port or use nat`,
		path + `:30: virtual_server[1].method: dr needs an L2 link, but interface lvttun0 is type tun; use nat or tun`,
		path + `:36: virtual_server[2].method: dr (the default method) needs an L2 link, but interface lvttun0 is type tun; use nat or tun`,
		path + `:47: virtual_server[2].real_server[1].method: dr needs an L2 link, but interface lvttun0 is type tun; use nat or tun`,
	}
	for _, cmd := range []string{"check", "run"} {
		args := []string{cmd, "-c", path}
		if cmd == "run" {
			args = append(args, "-control", "none")
		}
		out, err := exec.Command(bin.Lvsd, args...).CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Errorf("lvsd %s: %v, want exit status 2\n%s", cmd, err, out)
		}
		got := strings.Split(strings.TrimSpace(strings.TrimPrefix(string(out), "lvsd: ")), "\n")
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("lvsd %s (-want +got):\n%s", cmd, diff)
		}
	}
}
