package runstate

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lvsd/lvsd/adm"
	"github.com/lvsd/lvsd/config"
	"github.com/lvsd/lvsd/control"
)

// fakeDirector keeps a table and counts applies (a unit-test stand-in for
// director.Director).
type fakeDirector struct {
	cfg     *config.Config
	applies int
	status  control.Status
	notes   []error // NoteReload's arguments
}

func (f *fakeDirector) Running() *config.Config { return f.cfg.Clone() }
func (f *fakeDirector) ApplyValidated(cfg *config.Config, _ string) error {
	f.cfg, f.applies = cfg, f.applies+1
	return nil
}
func (f *fakeDirector) Reload(cfg *config.Config) error { f.cfg = cfg; return nil }
func (f *fakeDirector) Status() control.Status          { return f.status }
func (f *fakeDirector) NoteReload(err error)            { f.notes = append(f.notes, err) }
func (f *fakeDirector) Conns() []adm.Conn               { return nil }

func TestRuntimeSurvivesReloadAndRestart(t *testing.T) {
	store := &Store{Path: filepath.Join(t.TempDir(), "state.json")}
	file := parse(t, web)
	d := &fakeDirector{cfg: file}
	rt := New(d, file, Options{Store: store})

	// Drain .21 at run time.
	res := rt.Adm("", strings.Fields("-e -t 192.0.2.100:80 -r 192.0.2.21 -w 0"), nil, "uid 0")
	if res.Code != 0 || d.applies != 1 {
		t.Fatalf("adm: %+v", res)
	}
	// A refused command applies nothing.
	if res := rt.Adm("", strings.Fields("-a -t 192.0.2.100:80 -r 192.0.2.21"), nil, "uid 0"); res.Code != adm.ExitFailed || d.applies != 1 {
		t.Fatalf("duplicate add: %+v", res)
	}
	// SIGHUP with the same file: the drain stays.
	if err := rt.Reload(parse(t, web)); err != nil {
		t.Fatal(err)
	}
	if w := d.cfg.Services[0].Reals[0].Weight; w != 0 {
		t.Fatalf("weight after reload %d, want 0", w)
	}
	// Restart: the state file brings it back.
	start := Start(parse(t, web), store, nil)
	if w := start.Services[0].Reals[0].Weight; w != 0 {
		t.Fatalf("weight after restart %d, want 0", w)
	}
	// The file changes that server: the file wins, and nothing is left to keep.
	changed := parse(t, strings.Replace(web, "weight = 1\n[[virtual_server.real_server]]\naddress = \"192.0.2.22\"", "weight = 4\n[[virtual_server.real_server]]\naddress = \"192.0.2.22\"", 1))
	if err := rt.Reload(changed); err != nil {
		t.Fatal(err)
	}
	if w := d.cfg.Services[0].Reals[0].Weight; w != 4 {
		t.Fatalf("weight after the file changed it %d, want 4", w)
	}
	if _, _, _, err := store.Load(); err != ErrNoState {
		t.Fatalf("state left when running equals the file: %v", err)
	}
	// Discard drops runtime changes.
	rt.Adm("", strings.Fields("-D -t 192.0.2.100:80"), nil, "uid 0")
	if err := rt.Discard(changed); err != nil || len(d.cfg.Services) != 1 {
		t.Fatalf("discard: %v %+v", err, d.cfg.Services)
	}
}

func TestRuntimeZero(t *testing.T) {
	file := parse(t, web)
	d := &fakeDirector{cfg: file, status: control.Status{Services: []control.Service{{
		Protocol: "tcp", Address: "192.0.2.100:80", Stats: control.Stats{Conns: 10, InPkts: 100},
		Reals: []control.Real{{Address: "192.0.2.21:80", Available: true, Stats: control.Stats{Conns: 6}}},
	}}}}
	rt := New(d, file, Options{})
	if res := rt.Adm("", []string{"-Z"}, nil, "uid 0"); res.Code != 0 {
		t.Fatal(res.Stderr)
	}
	d.status.Services[0].Stats.Conns = 13
	out := rt.Adm("", strings.Fields("-Ln --stats"), nil, "uid 0").Stdout
	if !strings.Contains(out, "TCP  192.0.2.100:80                      3        0        0        0        0\n") ||
		!strings.Contains(out, "  -> 192.0.2.21:80                       0        0") {
		t.Errorf("after -Z:\n%s", out)
	}
}

// TestReloadFile: the SIGHUP policy. A file that does not load keeps what
// runs, logs and records the error; a good one applies with the runtime
// changes kept, and records success.
func TestReloadFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lvsd.toml")
	if err := os.WriteFile(path, []byte(head+web), 0o644); err != nil {
		t.Fatal(err)
	}
	file, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	d := &fakeDirector{cfg: file}
	rt := New(d, file, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if res := rt.Adm("", strings.Fields("-e -t 192.0.2.100:80 -r 192.0.2.21 -w 0"), nil, "uid 0"); res.Code != 0 {
		t.Fatalf("adm: %+v", res)
	}
	if err := os.WriteFile(path, []byte(head+web+"weight = 70000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := rt.ReloadFile(path); err == nil || !strings.Contains(err.Error(), "weight") {
		t.Fatalf("bad file: %v, want a weight error", err)
	}
	if len(d.notes) != 1 || d.notes[0] == nil || !strings.Contains(logs.String(), "reload rejected") {
		t.Fatalf("bad file: notes %v, log:\n%s", d.notes, logs.String())
	}
	if w := d.cfg.Services[0].Reals[0].Weight; w != 0 || len(d.cfg.Services[0].Reals) != 2 {
		t.Fatalf("a rejected file changed the table: %+v", d.cfg.Services[0].Reals)
	}
	if err := os.WriteFile(path, []byte(head+web+dns), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := rt.ReloadFile(path); err != nil {
		t.Fatal(err)
	}
	if len(d.notes) != 2 || d.notes[1] != nil || !strings.Contains(logs.String(), "msg=reloaded") {
		t.Fatalf("good file: notes %v, log:\n%s", d.notes, logs.String())
	}
	if len(d.cfg.Services) != 2 || d.cfg.Services[0].Reals[0].Weight != 0 {
		t.Fatalf("good file: %d services, .21 weight %d; want 2 and the runtime drain kept",
			len(d.cfg.Services), d.cfg.Services[0].Reals[0].Weight)
	}
}
