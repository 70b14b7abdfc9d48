package config

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestSynproxyKey: synproxy is off by default, on for a NAT TCP service,
// survives Format, and is refused for UDP and for a service with a DR or
// TUN real server, naming the file, line and key.
func TestSynproxyKey(t *testing.T) {
	cfg, err := Parse("t.toml", withIface(svcLines(`port = 80`)...))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Services[0].Synproxy {
		t.Error("synproxy on by default")
	}
	cfg, err = Parse("t.toml", withIface(svcLines(`port = 80`, `synproxy = true`)...))
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Services[0].Synproxy {
		t.Fatal("synproxy = true not set")
	}
	text := string(Format(cfg))
	if !strings.Contains(text, "synproxy = true\n") {
		t.Fatalf("Format lost synproxy:\n%s", text)
	}
	again, err := Parse("formatted.toml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if !again.Services[0].Synproxy {
		t.Error("synproxy lost through Format and Parse")
	}

	for _, tc := range []struct {
		name string
		data []byte
		want []string
	}{
		{"udp", withIface(`[[virtual_server]]`, `protocol = "udp"`, `address = "198.18.1.100"`, `port = 53`, `synproxy = true`, `method = "nat"`,
			`  [[virtual_server.real_server]]`, `  address = "198.18.2.11"`),
			[]string{"t.toml:8: virtual_server[0].synproxy: applies to tcp services only"}},
		{"dr", withIface(`[[virtual_server]]`, `protocol = "tcp"`, `address = "198.18.1.100"`, `port = 80`, `synproxy = true`, `method = "nat"`,
			`  [[virtual_server.real_server]]`, `  address = "198.18.2.11"`,
			`  [[virtual_server.real_server]]`, `  address = "198.18.2.12"`, `  method = "dr"`),
			[]string{"t.toml:8: virtual_server[0].synproxy: needs nat real servers: the director translates the sequence numbers of every segment in both directions, and the replies of virtual_server[0].real_server[1] (dr) bypass it"}},
		{"type", withIface(svcLines(`port = 80`, `synproxy = "yes"`)...),
			[]string{`t.toml:9: virtual_server[0].synproxy: "yes" is a string, want true or false`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("t.toml", tc.data)
			var list ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("Parse error %v, want an ErrorList", err)
			}
			if diff := cmp.Diff(tc.want, prefixes(list, tc.want)); diff != "" {
				t.Errorf("errors mismatch (-want +got):\n%s\nfull errors:\n%v", diff, err)
			}
		})
	}
}
