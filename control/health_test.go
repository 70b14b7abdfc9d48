package control

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestWriteHealth(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	st := &Status{Version: "test", Services: []Service{{
		Protocol: "tcp", Address: "192.0.2.100:80",
		Reals: []Real{
			{Address: "192.0.2.11:8080", Health: &Health{Check: "http", State: "up", Checks: 12, LastResult: "ok",
				ConsecutiveOK: 12, LastChange: now.Add(-90 * time.Second)}},
			{Address: "192.0.2.12:8080", Health: &Health{Check: "http", State: "down", Checks: 7, LastResult: "failed",
				LastError: "http: status 503", ConsecutiveFailed: 3, LastChange: now.Add(-4 * time.Second)}},
			{Address: "192.0.2.13:8080"},
		},
	}}}
	var b strings.Builder
	WriteHealth(&b, st, now)
	want := `lvsd test (connections=0)
Prot LocalAddress:Port
  -> RemoteAddress:Port           Check State Checks   Run    Since      LastError
TCP  192.0.2.100:80
  -> 192.0.2.11:8080              http  up    12       ok 12  1m30s
  -> 192.0.2.12:8080              http  down  7        fail 3 4s         http: status 503
  -> 192.0.2.13:8080              -     up
`
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
