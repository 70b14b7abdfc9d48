package config

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestFormatKeepsEveryKey: every key a valid file of testdata/ or the
// example sets is written by Format, so a key that Format forgets (which a
// runtime change or `lvsd config dump` would silently reset to its default)
// fails here even when the file sets it to its default value, which the
// round trip of TestFormatRoundTrip cannot see. A virtual server's check
// key is written into each of its real servers' check tables.
func TestFormatKeepsEveryKey(t *testing.T) {
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
		t.Run(filepath.Base(f), func(t *testing.T) {
			in, err := buildIndex(data)
			if err != nil {
				t.Fatal(err)
			}
			outData := Format(cfg)
			out, err := buildIndex(outData)
			if err != nil {
				t.Fatalf("Format's output: %v", err)
			}
			for _, e := range in.entries {
				for _, want := range formattedAs(cfg, e.key) {
					if _, ok := out.byKey[want]; !ok {
						t.Errorf("%s:%d: %s is not in Format's output (as %s)", f, e.line, e.key, want)
					}
				}
			}
			if t.Failed() {
				t.Logf("Format's output:\n%s", outData)
			}
		})
	}
	if n < 5 {
		t.Errorf("only %d valid files; the test proves little", n)
	}
}

// formattedAs returns the keys of Format's output that stand for key of
// the input: key itself; for a virtual server's method or check key, that
// key of each of its real servers (a check table is written as its own
// table, and a real server's that comes to its service's is not written); the hex form of a check's text payload or expect. The
// elements of a static array are not compared (status = [200, "300-399"]
// is written as ranges), the array's key is.
func formattedAs(cfg *Config, key string) []string {
	if strings.HasSuffix(key, "]") && !elemOfTables.MatchString(key) {
		return nil
	}
	key = checkAlias.ReplaceAllString(key, "${1}_hex")
	if m := realCheck.FindStringSubmatch(key); m != nil {
		// A real server's own check table that comes to its service's
		// check is not written: the service's table stands for it.
		i, _ := strconv.Atoi(m[1])
		j, _ := strconv.Atoi(m[2])
		sc := &cfg.Services[i]
		if r := sc.Reals[j]; r.Check != nil && reflect.DeepEqual(r.Check, sc.Health.Check) {
			return []string{fmt.Sprintf("virtual_server[%d].check%s", i, m[3])}
		}
		return []string{key}
	}
	m := serviceDefault.FindStringSubmatch(key)
	if m == nil || m[2] == "check" {
		// The service's check is written as its own table.
		return []string{key}
	}
	i, _ := strconv.Atoi(m[1])
	var keys []string
	for j := range cfg.Services[i].Reals {
		keys = append(keys, fmt.Sprintf("virtual_server[%d].real_server[%d].%s%s", i, j, m[2], m[3]))
	}
	return keys
}

var (
	// serviceDefault matches the keys of a virtual server that are the
	// defaults of its real servers: method and the check table.
	serviceDefault = regexp.MustCompile(`^virtual_server\[(\d+)\]\.(method|check)(\..*)?$`)
	// realCheck matches the keys of a real server's own check table.
	realCheck = regexp.MustCompile(`^virtual_server\[(\d+)\]\.real_server\[(\d+)\]\.check(\..*)?$`)
	// elemOfTables matches the elements of lvsd's arrays of tables.
	elemOfTables = regexp.MustCompile(`^(interface|virtual_server)\[\d+\](\.(route|real_server)\[\d+\])?$`)
	// checkAlias matches the check keys that Format writes in hex.
	checkAlias = regexp.MustCompile(`(\.check\.(?:payload|expect))$`)
)
