package config

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
)

// Why two TOML libraries: BurntSushi/toml is the project's decoder (it
// decodes, checks TOML's semantic rules such as duplicate keys, and its
// MetaData.Undecoded finds unknown keys), but its MetaData keeps one position
// per key path without array indices, so every [[virtual_server]] entry would
// report the line of the last one. go-toml's unstable parser exposes the byte
// range of every key and value, from which this file builds an exact index
// keyed by the indexed path (virtual_server[1].real_server[0].weight). The
// two parse the same bytes, and both walk arrays of tables in document order,
// so index i here is element i of the decoded slice.

// shape is what a key holds, as far as the structure of the document goes.
type shape uint8

const (
	shapeValue       shape = iota // a string, number, boolean or date
	shapeTable                    // [header], inline table, or dotted-key table
	shapeArrayTables              // [[header]]
	shapeArray                    // a static array (possibly of inline tables)
)

// entry is the first definition of one key of the document.
type entry struct {
	key    string   // indexed path: virtual_server[0].real_server[1].weight
	parts  []string // the same path without indices, one element per key part
	parent string   // key of the enclosing table or array; "" at the top
	line   int
	shape  shape
	kind   string // TOML type name when shape is shapeValue
}

// index maps every key of a document, tables and array elements included, to
// the line that defines it.
type index struct {
	entries  []entry        // document order
	byKey    map[string]int // entry.key → position in entries
	newlines []int          // offsets of '\n' in the document, ascending
	// deep is the first key nested more than MaxNesting levels, if any:
	// nothing below that level is indexed.
	deep *nestingError
}

// MaxNesting is how deep keys may nest: every key part (a table, a dotted
// key's part) and every array level counts one. lvsd's own keys nest five
// deep (virtual_server[0].real_server[0].address); the limit keeps the work
// per key bounded, so that checking a document takes time linear in its
// size (every key's indexed path is as long as its depth).
const MaxNesting = 16

// nestingError is a document nested more than MaxNesting levels.
type nestingError struct {
	line int
	key  string // the outermost key of the deep value
}

func (e *nestingError) Error() string {
	return fmt.Sprintf("%s: nested more than %d levels deep", e.key, MaxNesting)
}

// path is a key path under construction, both indexed and plain.
type path struct {
	key    string
	parts  []string
	parent string
	depth  int // key parts and array levels
}

func (p path) child(name string) path {
	k := quoteKey(name)
	if p.key != "" {
		k = p.key + "." + k
	}
	return path{key: k, parts: append(p.parts[:len(p.parts):len(p.parts)], name), parent: p.key, depth: p.depth + 1}
}

func (p path) elem(i int) path {
	return path{key: fmt.Sprintf("%s[%d]", p.key, i), parts: p.parts, parent: p.key, depth: p.depth + 1}
}

// tooDeep reports whether p is nested deeper than MaxNesting and records the
// first such key, found on line.
func (x *index) tooDeep(p path, line int) bool {
	if p.depth <= MaxNesting {
		return false
	}
	if x.deep == nil {
		x.deep = &nestingError{line: line, key: quoteKey(p.parts[0])}
	}
	return true
}

// quoteKey writes a key part as TOML would need it: bare when it can be.
func quoteKey(s string) string {
	if s == "" {
		return `""`
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return fmt.Sprintf("%q", s)
		}
	}
	return s
}

// plainKey is the index-free key of parts, as BurntSushi/toml's Key.String
// would write it (both quote exactly the parts that are not bare).
func plainKey(parts []string) string {
	q := make([]string, len(parts))
	for i, p := range parts {
		q[i] = quoteKey(p)
	}
	return strings.Join(q, ".")
}

// syntaxError is a TOML syntax error with its line.
type syntaxError struct {
	line int
	msg  string
}

func (e *syntaxError) Error() string { return e.msg }

// buildIndex parses data with go-toml's unstable parser and records where
// every key is defined. It returns a *syntaxError when data is not TOML, and
// a *nestingError when it nests deeper than MaxNesting.
func buildIndex(data []byte) (*index, error) {
	// Size everything once: a document of 100 000 real servers has over a
	// million keys, and growing the slices and the map key by key was most
	// of the time Parse took (each growth copies every entry so far).
	lines := bytes.Count(data, []byte{'\n'})
	x := &index{newlines: make([]int, 0, lines)}
	for i, c := range data {
		if c == '\n' {
			x.newlines = append(x.newlines, i)
		}
	}
	// About one key a line, a little more for [[headers]] (two each) and
	// inline tables: a guess, not a bound.
	x.entries = make([]entry, 0, lines+lines/4+16)
	x.byKey = make(map[string]int, cap(x.entries))

	var p unstable.Parser
	p.Reset(data)
	// arrays counts the elements of each array of tables so far, by indexed
	// path: a header names a path without indices and means its last element.
	arrays := make(map[string]int)
	var cur path // the table that key/value lines go into
	for p.NextExpression() {
		n := p.Expression()
		switch n.Kind {
		case unstable.Table, unstable.ArrayTable:
			parts, line := x.keyParts(n)
			cur = path{}
			for i, name := range parts {
				if cur = cur.child(name); x.tooDeep(cur, line) {
					break
				}
				switch {
				case i == len(parts)-1 && n.Kind == unstable.ArrayTable:
					x.add(cur, line, shapeArrayTables, "")
					k := arrays[cur.key]
					arrays[cur.key] = k + 1
					cur = cur.elem(k)
					x.add(cur, line, shapeTable, "")
				case i == len(parts)-1:
					// An explicit [header] wins over an earlier implicit
					// definition by a longer header ([a.b] before [a]).
					x.set(cur, line, shapeTable)
				default:
					if k, ok := arrays[cur.key]; ok {
						cur = cur.elem(k - 1)
					}
					x.add(cur, line, shapeTable, "")
				}
			}
		case unstable.KeyValue:
			x.keyValue(cur, n)
		}
	}
	if err := p.Error(); err != nil {
		return nil, x.parserError(data, err)
	}
	if x.deep != nil {
		return nil, x.deep
	}
	return x, nil
}

// parserError converts go-toml's error, whose position is a slice of the
// input, to a line. It computes the offset itself rather than calling
// Parser.Range, which panics on a slice outside the input.
func (x *index) parserError(data []byte, err error) error {
	var perr *unstable.ParserError
	if !errors.As(err, &perr) {
		return &syntaxError{msg: err.Error()}
	}
	off := cap(data) - cap(perr.Highlight)
	if perr.Highlight == nil || off < 0 || off > len(data) {
		off = len(data)
	}
	return &syntaxError{line: x.lineAt(off), msg: perr.Message}
}

// keyParts returns the parts of the key of a table header or key/value node
// and the line of its first part.
func (x *index) keyParts(n *unstable.Node) ([]string, int) {
	var parts []string
	line := 0
	it := n.Key()
	for it.Next() {
		k := it.Node()
		if line == 0 {
			line = x.line(k.Raw)
		}
		parts = append(parts, string(k.Data))
	}
	return parts, line
}

// keyValue records a key/value node under base: the dotted key's implicit
// tables, the key, and whatever its value holds.
func (x *index) keyValue(base path, n *unstable.Node) {
	parts, line := x.keyParts(n)
	p := base
	for i, name := range parts {
		if p = p.child(name); x.tooDeep(p, line) {
			return
		}
		if i < len(parts)-1 {
			x.add(p, line, shapeTable, "")
		}
	}
	x.value(p, n.Value(), line)
}

// value records the value v found at p on line.
func (x *index) value(p path, v *unstable.Node, line int) {
	switch v.Kind {
	case unstable.InlineTable:
		x.add(p, line, shapeTable, "")
		it := v.Children()
		for it.Next() {
			if kv := it.Node(); kv.Kind == unstable.KeyValue {
				x.keyValue(p, kv)
			}
		}
	case unstable.Array:
		x.add(p, line, shapeArray, "")
		i := 0
		it := v.Children()
		for it.Next() {
			e := it.Node()
			if e.Kind == unstable.Comment {
				continue
			}
			el := line
			if e.Raw.Length > 0 { // arrays carry no range; keep the parent's line
				el = x.line(e.Raw)
			}
			pe := p.elem(i)
			if x.tooDeep(pe, el) {
				return
			}
			x.value(pe, e, el)
			i++
		}
	default:
		x.add(p, line, shapeValue, kindName(v.Kind))
	}
}

func kindName(k unstable.Kind) string {
	switch k {
	case unstable.String:
		return "string"
	case unstable.Bool:
		return "boolean"
	case unstable.Integer:
		return "integer"
	case unstable.Float:
		return "float"
	case unstable.LocalDate, unstable.LocalTime, unstable.LocalDateTime, unstable.DateTime:
		return "datetime"
	}
	return strings.ToLower(k.String())
}

// add records p unless it is already known: the first definition of a key is
// where it is.
func (x *index) add(p path, line int, s shape, kind string) {
	if _, ok := x.byKey[p.key]; ok {
		return
	}
	x.byKey[p.key] = len(x.entries)
	x.entries = append(x.entries, entry{key: p.key, parts: p.parts, parent: p.parent, line: line, shape: s, kind: kind})
}

// set records p, replacing an earlier record.
func (x *index) set(p path, line int, s shape) {
	if i, ok := x.byKey[p.key]; ok {
		x.entries[i].line = line
		x.entries[i].shape = s
		return
	}
	x.add(p, line, s, "")
}

// line returns the line of the start of r. Shape would give the same, but it
// scans the input from its start on each call, which is quadratic over a
// document; the newline table makes each lookup logarithmic.
func (x *index) line(r unstable.Range) int { return x.lineAt(int(r.Offset)) }

func (x *index) lineAt(off int) int { return sort.SearchInts(x.newlines, off) + 1 }

// lookup returns the line of key, or of its nearest ancestor present in the
// document (a missing key is reported at its table's header), or 0.
func (x *index) lookup(key string) int {
	for key != "" {
		if i, ok := x.byKey[key]; ok {
			return x.entries[i].line
		}
		key = parentKey(key)
	}
	return 0
}

// parentKey strips the last part or index of an indexed key made of bare
// parts (the keys of the schema all are).
func parentKey(key string) string {
	if strings.HasSuffix(key, "]") {
		if i := strings.LastIndexByte(key, '['); i >= 0 {
			return key[:i]
		}
	}
	if i := strings.LastIndexByte(key, '.'); i >= 0 {
		return key[:i]
	}
	return ""
}
