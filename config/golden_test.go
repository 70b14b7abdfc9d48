package config

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// examplePath is the example configuration at the root of the repository.
const examplePath = "../lvsd.toml.example"

// golden compares got with the golden file name under testdata/, or
// rewrites the file when -update is given.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./config -run %s -update to create it)", err, t.Name())
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s mismatch (-want +got):\n%s\nrun with -update if the change is intended", path, diff)
	}
}

// TestExampleGolden parses lvsd.toml.example and compares the model with
// testdata/example.golden.json, so that any change to the example or to
// what Parse makes of it shows up in review.
func TestExampleGolden(t *testing.T) {
	data, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	// The file name is fixed so that the golden file does not depend on
	// where the test runs from.
	cfg, err := Parse("lvsd.toml.example", data)
	if err != nil {
		t.Fatalf("the example does not parse:\n%v", err)
	}
	got, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "example.golden.json", append(got, '\n'))
}

// TestErrorsGolden shows, in testdata/errors.golden, everything Parse
// reports for a file with many problems: the format operators see.
func TestErrorsGolden(t *testing.T) {
	data, err := os.ReadFile("testdata/errors.toml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Parse("errors.toml", data)
	if err == nil {
		t.Fatal("errors.toml parses without error")
	}
	golden(t, "errors.golden", []byte(err.Error()+"\n"))
}

// TestExampleDocumentsEveryKey fails when the schema has a key that
// lvsd.toml.example does not show, set or commented out.
func TestExampleDocumentsEveryKey(t *testing.T) {
	data, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	x, err := buildIndex(data)
	if err != nil {
		t.Fatal(err)
	}
	set := make(map[string]bool)
	for _, e := range x.entries {
		set[plainKey(e.parts)] = true
	}
	// A key the example only shows commented out is found by its text, as
	// far as a comment can be checked.
	text := string(data)
	var walk func(prefix []string, n *schemaNode)
	walk = func(prefix []string, n *schemaNode) {
		for _, name := range n.names {
			c := n.children[name]
			p := append(append([]string{}, prefix...), name)
			if set[plainKey(p)] {
				walk(p, c)
				continue
			}
			var show string
			switch c.kind {
			case schemaLeaf:
				if !containsLine(text, name+" = ") {
					t.Errorf("lvsd.toml.example does not document %s", plainKey(p))
				}
				continue
			case schemaTable:
				show = "[" + plainKey(p) + "]"
			case schemaArrayTables:
				show = "[[" + plainKey(p) + "]]"
			}
			if !containsLine(text, show) {
				t.Errorf("lvsd.toml.example does not document %s", show)
			}
			walk(p, c)
		}
	}
	walk(nil, schema)
}

// containsLine reports whether some line of text, after leading blanks and
// comment signs, starts with s.
func containsLine(text, s string) bool {
	for line := range strings.Lines(text) {
		if strings.HasPrefix(strings.TrimLeft(line, " #"), s) {
			return true
		}
	}
	return false
}
