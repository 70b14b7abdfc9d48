package config

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParsePassive(t *testing.T) {
	data := checkDoc(
		`[virtual_server.passive]`,
		`enabled = true`,
		`failures = 3`,
		`interval = "5s"`,
		`base_ejection_time = 10`,
		`[[virtual_server.real_server]]`,
		`address = "198.18.2.11"`,
		`port = 8080`,
	)
	cfg, err := Parse("t.toml", data)
	if err != nil {
		t.Fatal(err)
	}
	want := Passive{Enabled: true, Failures: 3, Interval: 5 * time.Second, BaseEjection: 10 * time.Second,
		MaxEjection: DefaultPassiveMaxEjection, MaxEjectedPercent: DefaultPassiveMaxEjected}
	if diff := cmp.Diff(want, cfg.Services[0].Health.Passive); diff != "" {
		t.Errorf("passive (-want +got):\n%s", diff)
	}
	// Format writes it back.
	again, err := Parse("f.toml", []byte(Format(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, again.Services[0].Health.Passive); diff != "" {
		t.Errorf("formatted passive (-want +got):\n%s", diff)
	}
	// Without the table, off.
	cfg, err = Parse("t.toml", checkDoc(`[[virtual_server.real_server]]`, `address = "198.18.2.11"`, `port = 8080`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Services[0].Health.Passive.Enabled {
		t.Error("passive detection on without a passive table")
	}
}

func TestParsePassiveErrors(t *testing.T) {
	for _, tc := range []struct{ line, want string }{
		{`failures = 0`, `t.toml:10: virtual_server[0].passive.failures: 0 is out of range 1..1048576`},
		{`max_ejected_percent = 101`, `t.toml:10: virtual_server[0].passive.max_ejected_percent: 101 is out of range 1..100`},
		{`max_ejection_time = "5s"`, `t.toml:10: virtual_server[0].passive.max_ejection_time: 5s is below base_ejection_time 30s`},
		{`interval = "soon"`, `t.toml:10: virtual_server[0].passive.interval: "soon" is not a duration`},
		{`enabled = "yes"`, `t.toml:10: virtual_server[0].passive.enabled:`},
		{`failure = 3`, `t.toml:10: virtual_server[0].passive.failure: unknown key; did you mean failures?`},
	} {
		_, err := Parse("t.toml", checkDoc(`[virtual_server.passive]`, tc.line,
			`[[virtual_server.real_server]]`, `address = "198.18.2.11"`, `port = 8080`))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.line, err, tc.want)
		}
	}
}
