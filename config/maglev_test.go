package config

import (
	"strings"
	"testing"
)

func TestMaglevTableSize(t *testing.T) {
	svc := func(sched, size string) []byte {
		return withIface(`[[virtual_server]]`, `protocol = "tcp"`, `address = "198.18.1.100"`, `port = 80`,
			`scheduler = "`+sched+`"`, `maglev_table_size = `+size)
	}
	cfg, err := Parse("t.toml", svc("maglev", "131071"))
	if err != nil {
		t.Fatalf("a prime size for maglev: %v", err)
	}
	if got := cfg.Services[0].MaglevTableSize; got != 131071 {
		t.Errorf("MaglevTableSize = %d, want 131071", got)
	}
	for _, tt := range []struct {
		name, sched, size, want string
	}{
		{name: "not a prime", sched: "maglev", size: "65536", want: "virtual_server[0].maglev_table_size: 65536 is not a prime"},
		{name: "other scheduler", sched: "wrr", size: "65537", want: "virtual_server[0].maglev_table_size: applies to scheduler maglev only"},
		{name: "too large", sched: "maglev", size: "33554467", want: "virtual_server[0].maglev_table_size:"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("t.toml", svc(tt.sched, tt.size))
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "t.toml:") {
				t.Errorf("error %v, want one naming %q with its line", err, tt.want)
			}
		})
	}
}
