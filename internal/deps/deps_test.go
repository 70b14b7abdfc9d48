package deps

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/parser"
	"go/token"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

const module = "github.com/lvsd/lvsd"

// pkg is the part of `go list -json` the rules read.
type pkg struct {
	ImportPath   string
	Imports      []string // direct, of the package's own files
	TestImports  []string // direct, of its _test.go files in the package
	XTestImports []string // direct, of its _test.go files in package X_test
	Deps         []string // everything the package links, recursively
}

// allImports are the direct imports of the package and its tests.
func (p *pkg) allImports() []string {
	return slices.Concat(p.Imports, p.TestImports, p.XTestImports)
}

var listed struct {
	once sync.Once
	pkgs map[string]*pkg
	err  error
}

// listPackages runs `go list -json` over the module (for this platform's
// build tags), once per test binary, and returns its packages by import
// path.
func listPackages(t *testing.T) map[string]*pkg {
	t.Helper()
	listed.once.Do(func() { listed.pkgs, listed.err = goList() })
	if listed.err != nil {
		t.Fatal(listed.err)
	}
	for _, need := range []string{"stack", "forward", "realserver", "device", "cmd/lvsd"} {
		if listed.pkgs[module+"/"+need] == nil {
			t.Fatalf("go list lists no package %s/%s: the rules would check nothing", module, need)
		}
	}
	return listed.pkgs
}

func goList() (map[string]*pkg, error) {
	// go test puts its own GOROOT/bin first on PATH.
	cmd := exec.Command("go", "list", "-json", module+"/...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list: %w\n%s", err, stderr.Bytes())
	}
	pkgs := make(map[string]*pkg)
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		p := new(pkg)
		if err := dec.Decode(p); err == io.EOF {
			break
		} else if err != nil {
			return nil, fmt.Errorf("go list output: %w", err)
		}
		pkgs[p.ImportPath] = p
	}
	return pkgs, nil
}

// isNetstack reports whether path is one of gVisor's netstack packages,
// which only package stack may import.
func isNetstack(path string) bool {
	for _, p := range []string{"stack", "link", "network", "transport", "adapters"} {
		pre := "gvisor.dev/gvisor/pkg/tcpip/" + p
		if path == pre || strings.HasPrefix(path, pre+"/") {
			return true
		}
	}
	return false
}

func isGopacket(path string) bool {
	return path == "github.com/gopacket/gopacket" || strings.HasPrefix(path, "github.com/gopacket/gopacket/") ||
		path == "github.com/google/gopacket" || strings.HasPrefix(path, "github.com/google/gopacket/")
}

// TestOnlyStackImportsNetstack: no package but stack imports gVisor's
// netstack, in its code or its tests.
func TestOnlyStackImportsNetstack(t *testing.T) {
	for path, p := range listPackages(t) {
		if path == module+"/stack" {
			continue
		}
		for _, imp := range p.allImports() {
			if isNetstack(imp) {
				t.Errorf("%s imports %s: only %s/stack may import gVisor's netstack", path, imp, module)
			}
		}
	}
}

// TestNoNetstackLinked: the data plane and the real server's decapsulator
// link no netstack, directly or through another package.
func TestNoNetstackLinked(t *testing.T) {
	pkgs := listPackages(t)
	for _, name := range []string{"forward", "realserver", "device"} {
		p := pkgs[module+"/"+name]
		var bad []string
		for _, dep := range p.Deps {
			if dep == module+"/stack" || isNetstack(dep) {
				bad = append(bad, dep)
			}
		}
		if len(bad) > 0 {
			t.Errorf("%s links %d netstack packages (%s): it must not depend on a netstack", name, len(bad), strings.Join(bad[:min(len(bad), 3)], ", "))
		}
	}
}

// TestDaemonLinksNoTestCode: the lvsd binary links no package testing,
// and of gopacket only what lvsd capture and lvsd trace use: pcapgo, which
// writes the capture's pcapng (the issue asks for it rather than a writer
// of our own), and the pure-Go layers it and the trace's header decoding
// need; never its test helpers or anything with cgo (pcap, pfring).
func TestDaemonLinksNoTestCode(t *testing.T) {
	p := listPackages(t)[module+"/cmd/lvsd"]
	allowed := map[string]bool{
		"github.com/gopacket/gopacket":        true,
		"github.com/gopacket/gopacket/endian": true,
		"github.com/gopacket/gopacket/layers": true,
		"github.com/gopacket/gopacket/pcapgo": true,
	}
	for _, dep := range p.Deps {
		if dep == "testing" || isGopacket(dep) && !allowed[dep] {
			t.Errorf("cmd/lvsd links %s: test code must stay out of the daemon", dep)
		}
	}
}

// TestGopacketFork: the maintained fork replaces github.com/google/gopacket.
func TestGopacketFork(t *testing.T) {
	for path, p := range listPackages(t) {
		for _, imp := range p.allImports() {
			if imp == "github.com/google/gopacket" || strings.HasPrefix(imp, "github.com/google/gopacket/") {
				t.Errorf("%s imports %s: use github.com/gopacket/gopacket%s (the maintained fork)", path, imp, strings.TrimPrefix(imp, "github.com/google/gopacket"))
			}
		}
	}
}

// TestUnsafeOnlyInUnsafeFiles: every Go file of the module that imports
// unsafe is named *_unsafe.go or *_unsafe_test.go, whatever its build tags.
func TestUnsafeOnlyInUnsafeFiles(t *testing.T) {
	root := filepath.Join("..", "..")
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not at %s: %v", root, err)
	}
	fset := token.NewFileSet()
	files := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != root && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "testdata" || name == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(name, ".go") {
			return nil
		}
		files++
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		for _, imp := range f.Imports {
			if p, _ := strconv.Unquote(imp.Path.Value); p != "unsafe" {
				continue
			}
			if !strings.HasSuffix(name, "_unsafe.go") && !strings.HasSuffix(name, "_unsafe_test.go") {
				rel, _ := filepath.Rel(root, path)
				t.Errorf("%s imports unsafe: move that code into a file named *_unsafe.go", rel)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 100 {
		t.Fatalf("walked %d Go files under %s: not the module", files, root)
	}
}
