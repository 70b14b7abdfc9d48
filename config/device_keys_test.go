package config

import (
	"strings"
	"testing"
)

// TestDeviceKeys covers [[interface]] persist, bridge and on_loss.
func TestDeviceKeys(t *testing.T) {
	ifc := func(ls ...string) []byte {
		return lines(append([]string{`[[interface]]`, `name = "lvttap0"`, `addresses = ["198.18.1.1/24"]`}, ls...)...)
	}
	t.Run("defaults", func(t *testing.T) {
		cfg, err := Parse("t.toml", ifc())
		if err != nil {
			t.Fatal(err)
		}
		if i := cfg.Interfaces[0]; i.Persist || i.Bridge != "" || i.OnLoss != Reattach {
			t.Errorf("defaults: persist %v bridge %q on_loss %v", i.Persist, i.Bridge, i.OnLoss)
		}
	})
	t.Run("set", func(t *testing.T) {
		cfg, err := Parse("t.toml", ifc(`persist = true`, `bridge = "lvtbr0"`, `on_loss = "exit"`))
		if err != nil {
			t.Fatal(err)
		}
		if i := cfg.Interfaces[0]; !i.Persist || i.Bridge != "lvtbr0" || i.OnLoss != Exit {
			t.Errorf("set: persist %v bridge %q on_loss %v", i.Persist, i.Bridge, i.OnLoss)
		}
	})
	for _, tt := range []struct {
		name string
		data []byte
		want string
	}{
		{"bad policy", ifc(`on_loss = "retry"`), "t.toml:4: interface[0].on_loss:"},
		{"bridge on a tun", ifc(`type = "tun"`, `bridge = "lvtbr0"`), "t.toml:5: interface[0].bridge: only a tap device joins a bridge"},
		{"bad bridge name", ifc(`bridge = "a/b"`), "t.toml:4: interface[0].bridge: \"a/b\" is not a valid interface name"},
		{"persist on packet", ifc(`type = "packet"`, `persist = true`), "t.toml:5: interface[0].persist: true: lvsd creates no packet interface"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("t.toml", tt.data)
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("error %v, want prefix %q", err, tt.want)
			}
		})
	}
}
