package config

import (
	"os"
	"path/filepath"
	"testing"
)

// TestFormatRoundTrip checks that every valid file of testdata/ and the
// example come back equal through Format and Parse.
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
			continue // the files of bad examples
		}
		n++
		t.Run(filepath.Base(f), func(t *testing.T) { checkFormat(t, cfg) })
	}
	if n < 5 {
		t.Errorf("only %d valid files; the test proves little", n)
	}
}
