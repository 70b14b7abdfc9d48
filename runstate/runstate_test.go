package runstate

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/lvsd/lvsd/config"
	"net/netip"
)

const head = `
[[interface]]
name = "lvt0"
addresses = ["192.0.2.1/24"]
`

func parse(t *testing.T, body string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("t.toml", []byte(head+body))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

const web = `
[[virtual_server]]
protocol = "tcp"
address = "192.0.2.100"
port = 80
scheduler = "wrr"
[[virtual_server.real_server]]
address = "192.0.2.21"
weight = 1
[[virtual_server.real_server]]
address = "192.0.2.22"
weight = 1
`

const dns = `
[[virtual_server]]
protocol = "udp"
address = "192.0.2.100"
port = 53
[[virtual_server.real_server]]
address = "192.0.2.31"
`

var eq = cmp.Options{cmpopts.IgnoreFields(config.Config{}, "File"), cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{}, netip.AddrPort{})}

func weights(cfg *config.Config) map[string]int32 {
	m := map[string]int32{}
	for _, s := range cfg.Services {
		for _, r := range s.Reals {
			m[svcKey(&s)+" "+r.Addr.String()] = r.Weight
		}
	}
	return m
}

func TestMerge(t *testing.T) {
	base := parse(t, web+dns)
	// At run time: drain .21, add .23, delete the dns service, set timeouts.
	running := parse(t, web+dns)
	running.Services[0].Reals[0].Weight = 0
	running.Services[0].Reals = append(running.Services[0].Reals, config.Real{Addr: netip.MustParseAddr("192.0.2.23"), Port: 80, Weight: 7})
	running.Services = running.Services[:1]
	running.Timeouts.TCP = 60 * time.Second

	t.Run("file unchanged keeps every runtime change", func(t *testing.T) {
		got := Merge(base, running, parse(t, web+dns))
		if diff := cmp.Diff(running, got, eq); diff != "" {
			t.Errorf("(-running +merged):\n%s", diff)
		}
	})
	t.Run("file changes one real server", func(t *testing.T) {
		file := parse(t, web+dns)
		file.Services[0].Reals[1].Weight = 5 // .22 changed in the file
		got := weights(Merge(base, running, file))
		want := map[string]int32{"tcp 192.0.2.100 80 192.0.2.21": 0, "tcp 192.0.2.100 80 192.0.2.22": 5, "tcp 192.0.2.100 80 192.0.2.23": 7}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
	t.Run("file changes the drained server: the file wins", func(t *testing.T) {
		file := parse(t, web+dns)
		file.Services[0].Reals[0].Weight = 3
		if w := weights(Merge(base, running, file))["tcp 192.0.2.100 80 192.0.2.21"]; w != 3 {
			t.Errorf("weight %d, want the file's 3", w)
		}
	})
	t.Run("file changes the service deleted at run time: it comes back", func(t *testing.T) {
		file := parse(t, web+dns)
		file.Services[1].Scheduler = "rr"
		got := Merge(base, running, file)
		if len(got.Services) != 2 || got.Services[1].Scheduler != "rr" || len(got.Services[1].Reals) != 1 {
			t.Errorf("services: %+v", got.Services)
		}
	})
	t.Run("file deletes a service", func(t *testing.T) {
		got := Merge(base, running, parse(t, dns))
		if len(got.Services) != 0 {
			t.Errorf("services: %+v", got.Services)
		}
	})
	t.Run("file changes timeouts", func(t *testing.T) {
		file := parse(t, web+dns)
		file.Timeouts.TCP = 30 * time.Second
		if got := Merge(base, running, file); got.Timeouts.TCP != 30*time.Second {
			t.Errorf("timeouts %v", got.Timeouts)
		}
	})
	if !Differs(base, running) || Differs(base, parse(t, web+dns)) {
		t.Errorf("Differs")
	}
}

func TestStore(t *testing.T) {
	dir := t.TempDir()
	s := &Store{Path: filepath.Join(dir, "state.json")}
	if _, _, _, err := s.Load(); err != ErrNoState {
		t.Fatalf("empty: %v", err)
	}
	base, run1 := parse(t, web), parse(t, web)
	run1.Services[0].Reals[0].Weight = 9
	if err := s.Save(base, run1); err != nil {
		t.Fatal(err)
	}
	run2 := parse(t, web)
	run2.Services[0].Reals[0].Weight = 4
	if err := s.Save(base, run2); err != nil {
		t.Fatal(err)
	}
	_, got, damaged, err := s.Load()
	if err != nil || damaged != nil || got.Services[0].Reals[0].Weight != 4 {
		t.Fatalf("load: %v %v %+v", err, damaged, got)
	}
	// A power loss cuts the file short: the last good one is used.
	data, _ := os.ReadFile(s.Path)
	os.WriteFile(s.Path, data[:len(data)/2], 0o600)
	_, got, damaged, err = s.Load()
	if err != nil || damaged == nil || got.Services[0].Reals[0].Weight != 9 {
		t.Fatalf("load of a cut file: %v %v %+v", err, damaged, got)
	}
	// A file whose checksum does not match is damaged too.
	os.WriteFile(s.Path, []byte(`{"version":1,"base":"","running":"","sum":"00"}`), 0o600)
	if _, _, damaged, _ = s.Load(); damaged == nil {
		t.Errorf("a bad checksum was not noticed")
	}
	if err := s.Discard(); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := s.Load(); err != ErrNoState {
		t.Fatalf("after discard: %v", err)
	}
}

// TestMergeRuntimeRealFollowsServiceCheck: a real server added at run time
// with its service's check takes the file's new service check at a reload;
// one whose check is its own keeps it.
func TestMergeRuntimeRealFollowsServiceCheck(t *testing.T) {
	const svc = `
[[virtual_server]]
protocol = "tcp"
address = "192.0.2.100"
port = 80
  [virtual_server.check]
  type = "tcp"
  fall = %d
  [[virtual_server.real_server]]
  address = "192.0.2.21"
`
	base := parse(t, fmt.Sprintf(svc, 2))
	running := base.Clone()
	added := config.Real{Addr: netip.MustParseAddr("192.0.2.23"), Port: 80, Weight: 1, Check: base.Services[0].Health.Check.Clone()}
	own := added
	own.Addr = netip.MustParseAddr("192.0.2.24")
	own.Check = &config.Check{Type: "ping", Interval: time.Second, Timeout: time.Second, Rise: 1, Fall: 1}
	running.Services[0].Reals = append(running.Services[0].Reals, added, own)
	got := Merge(base, running, parse(t, fmt.Sprintf(svc, 4)))
	falls := map[string]int{}
	for _, r := range got.Services[0].Reals {
		falls[r.Addr.String()] = r.Check.Fall
	}
	if want := map[string]int{"192.0.2.21": 4, "192.0.2.23": 4, "192.0.2.24": 1}; !cmp.Equal(want, falls) {
		t.Errorf("falls %v, want %v", falls, want)
	}
}
