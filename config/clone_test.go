package config

import (
	"reflect"
	"testing"
)

// TestCloneSharesNothing: a clone of a configuration with every kind of
// slice and a check shares no slice element or pointer with the original
// (walked by reflection, so that a field added later is covered too), and
// is equal to it.
func TestCloneSharesNothing(t *testing.T) {
	cfg, err := Parse("test.toml", []byte(`
[[interface]]
name = "lvt0"
addresses = ["192.0.2.1/24"]

  [[interface.route]]
  destination = "198.51.100.0/24"
  gateway = "192.0.2.254"

[[virtual_server]]
address = "192.0.2.10"
ports = [80, 443]
protocol = "tcp"
scheduler = "sh"
scheduler_flags = ["sh-port"]

  [virtual_server.check]
  type = "http"
  port = 8080
  status = [200, "300-399"]

  [[virtual_server.real_server]]
  address = "192.0.2.21"
  method = "dr"

  [[virtual_server.real_server]]
  address = "192.0.2.22"
  method = "dr"
  check = { type = "udp", port = 53, payload = "ping", expect = "pong" }
`))
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Clone()
	if !reflect.DeepEqual(c, cfg) {
		t.Fatal("clone differs from the original")
	}
	var walk func(path string, a, b reflect.Value)
	walk = func(path string, a, b reflect.Value) {
		if a.Type().PkgPath() == "net/netip" {
			return // values; their interned zone handles are shared by design
		}
		switch a.Kind() {
		case reflect.Pointer:
			if a.IsNil() {
				return
			}
			if a.Pointer() == b.Pointer() {
				t.Errorf("%s: the clone shares the pointer", path)
			}
			walk(path, a.Elem(), b.Elem())
		case reflect.Slice:
			if a.Len() == 0 {
				return
			}
			if a.Pointer() == b.Pointer() {
				t.Errorf("%s: the clone shares the slice", path)
			}
			for i := range a.Len() {
				walk(path+"[]", a.Index(i), b.Index(i))
			}
		case reflect.Struct:
			for i := range a.NumField() {
				walk(path+"."+a.Type().Field(i).Name, a.Field(i), b.Field(i))
			}
		case reflect.Map:
			if !a.IsNil() && a.Pointer() == b.Pointer() {
				t.Errorf("%s: the clone shares the map", path)
			}
		}
	}
	walk("Config", reflect.ValueOf(cfg), reflect.ValueOf(c))
	checks := 0
	for _, sc := range c.Services {
		for _, rc := range sc.Reals {
			if rc.Check != nil {
				checks++
			}
		}
	}
	if checks != 2 {
		t.Fatalf("the test configuration has %d checked real servers, want 2", checks)
	}
}
