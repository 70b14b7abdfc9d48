package config

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestParseNesting: documents nested deeper than MaxNesting, however they
// nest (arrays, inline tables, dotted keys, table headers), are refused with
// the line of the deep value and its outermost key; at the limit they are
// checked as any other document.
func TestParseNesting(t *testing.T) {
	deep := MaxNesting + 1
	tests := []struct {
		name string
		doc  []byte
		want *Error // the only error
	}{
		{
			name: "arrays",
			doc:  lines("[connections]", "max = 5", "deep = "+strings.Repeat("[", deep)+strings.Repeat("]", deep)),
			want: &Error{File: "t.toml", Line: 3, Key: "connections", Msg: "nested more than 16 levels deep"},
		},
		{
			name: "inline tables",
			doc:  lines("", "x = "+strings.Repeat("{a = ", deep)+"1"+strings.Repeat("}", deep)),
			want: &Error{File: "t.toml", Line: 2, Key: "x", Msg: "nested more than 16 levels deep"},
		},
		{
			name: "dotted key",
			doc:  lines("y" + strings.Repeat(".k", deep) + " = 1"),
			want: &Error{File: "t.toml", Line: 1, Key: "y", Msg: "nested more than 16 levels deep"},
		},
		{
			name: "table header",
			doc:  lines("[z" + strings.Repeat(".k", deep) + "]"),
			want: &Error{File: "t.toml", Line: 1, Key: "z", Msg: "nested more than 16 levels deep"},
		},
		{
			// At the limit, the document is checked: an unknown key.
			name: "arrays at the limit",
			doc:  lines("x = "+strings.Repeat("[", MaxNesting-1)+strings.Repeat("]", MaxNesting-1), minimalDoc),
			want: &Error{File: "t.toml", Line: 1, Key: "x", Msg: "unknown key; valid keys here: connections, interface, metrics, sysctl, timeouts, virtual_server"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("t.toml", tc.doc)
			var list ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("Parse: %v, want an ErrorList", err)
			}
			if diff := cmp.Diff(ErrorList{tc.want}, list); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
		})
	}
}

// minimalDoc is a valid document, for tests that add a line to it.
const minimalDoc = `[[interface]]
name = "lvttap0"
addresses = ["192.0.2.1/24"]`

// TestParseNestingLinear: a 16 KB document of nested arrays took 38 s to
// check (the unknown-key check climbed from every level to the top, hashing
// keys as long as the depth). It must now be refused at once, and a
// document of as many arrays at the limit must be checked in time linear in
// its size.
func TestParseNestingLinear(t *testing.T) {
	d := 8000
	docs := map[string][]byte{
		"deep": []byte("x = " + strings.Repeat("[", d) + strings.Repeat("]", d) + "\n"),
		"wide": []byte("x = [" + strings.Repeat(strings.Repeat("[", MaxNesting-2)+strings.Repeat("]", MaxNesting-2)+",", d/MaxNesting) + "]\n" + minimalDoc),
	}
	for name, doc := range docs {
		start := time.Now()
		_, err := Parse("t.toml", doc)
		if err == nil {
			t.Fatalf("%s: Parse accepted a document with an unknown key", name)
		}
		if want := "nested more"; strings.Contains(err.Error(), want) != (name == "deep") {
			t.Errorf("%s: Parse: %v", name, err)
		}
		// A bound, not a speed figure: the quadratic check took minutes
		// on these, a linear one takes well under a second, and a
		// shared machine under the race detector has been seen at 9 s.
		if el := time.Since(start); el > 45*time.Second {
			t.Errorf("%s: Parse took %v on %d bytes", name, el, len(doc))
		}
	}
}
