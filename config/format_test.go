package config

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// TestFormatRoundTrip: what Format writes parses back into the same
// Config, for the example and every valid file in testdata.
func TestFormatRoundTrip(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.toml")
	files = append(files, examplePath)
	n := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := Parse(f, data)
		if err != nil {
			continue // the files of errors
		}
		n++
		out := Format(cfg)
		back, err := Parse("dump", out)
		if err != nil {
			t.Errorf("%s: the dump does not parse: %v\n%s", f, err, out)
			continue
		}
		if diff := cmp.Diff(cfg, back, cmpopts.IgnoreFields(Config{}, "File"), cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})); diff != "" {
			t.Errorf("%s: dump round trip (-file +dump):\n%s", f, diff)
		}
	}
	if n < 3 {
		t.Fatalf("only %d valid files to dump", n)
	}
}
