package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/lvsd/lvsd/conntrack"
)

// Load reads the file at path and parses it. An I/O error is returned
// wrapped; a bad file gives the ErrorList of Parse.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load config: %w", err)
	}
	return Parse(path, data)
}

// Parse parses and validates the TOML document data; file names it in error
// messages and in Config.File. On failure the error is an ErrorList holding
// every problem found, and the Config is nil. Parse does not retain data.
func Parse(file string, data []byte) (*Config, error) {
	c := &checker{file: file}

	// Both parsers read the whole input; see index.go for why there are two.
	idx, ierr := buildIndex(data)
	// Too deep a document is refused before the decoder and the checks
	// walk it (see MaxNesting).
	var nerr *nestingError
	if errors.As(ierr, &nerr) {
		return nil, ErrorList{{File: file, Line: nerr.line, Key: nerr.key, Msg: fmt.Sprintf("nested more than %d levels deep", MaxNesting)}}
	}
	var raw rawFile
	md, derr := toml.Decode(string(data), &raw)

	// A syntax error: BurntSushi's message first, as the decoder of record
	// (it also enforces TOML's rules on redefinition that go-toml's parser
	// leaves to its decoder); go-toml's if only it refuses the document.
	var perr toml.ParseError
	if errors.As(derr, &perr) {
		return nil, ErrorList{{File: file, Line: perr.Position.Line, Msg: "invalid TOML: " + perr.Message}}
	}
	var serr *syntaxError
	if errors.As(ierr, &serr) {
		return nil, ErrorList{{File: file, Line: serr.line, Msg: "invalid TOML: " + serr.msg}}
	}
	c.idx = idx

	// Tables where the schema wants tables, before anything else: the
	// decoder stops at the first such mismatch, and the rest of the checks
	// assume the shape is right.
	c.checkShape()
	if len(c.errs) > 0 {
		c.errs.sort()
		return nil, c.errs
	}
	if derr != nil {
		// checkShape should leave nothing for the decoder to reject; keep
		// the decoder's message if it does.
		return nil, ErrorList{{File: file, Msg: derr.Error()}}
	}

	c.unknownKeys(&md)
	cfg := c.build(&raw)
	if len(c.errs) > 0 {
		c.errs.sort()
		return nil, c.errs
	}
	cfg.File = file
	return cfg, nil
}

// The raw* types mirror the file. Every leaf is `any` so that a value of the
// wrong type becomes one error among others instead of stopping the decoder;
// the tables and arrays of tables are structs so that MetaData.Undecoded
// reports keys the schema does not have. The toml tags are the schema: the
// shape check, the unknown-key check and its suggestions all read them.
type rawFile struct {
	Timeouts      rawTimeouts    `toml:"timeouts"`
	Sysctl        rawSysctl      `toml:"sysctl"`
	Connections   rawConnections `toml:"connections"`
	Metrics       rawMetrics     `toml:"metrics"`
	Interface     []rawInterface `toml:"interface"`
	VirtualServer []rawService   `toml:"virtual_server"`
}

type rawSysctl struct {
	ExpireQuiescentTemplate any `toml:"expire_quiescent_template"`
	ExpireNodestConn        any `toml:"expire_nodest_conn"`
	SecureTCP               any `toml:"secure_tcp"`
	SloppyTCP               any `toml:"sloppy_tcp"`
}

type rawConnections struct {
	Max                any `toml:"max"`
	ReserveEstablished any `toml:"reserve_established"`
	PerSource          any `toml:"per_source"`
	PerSourceRate      any `toml:"per_source_rate"`
	SourcePrefixV4     any `toml:"source_prefix_v4"`
	SourcePrefixV6     any `toml:"source_prefix_v6"`
	CheckRST           any `toml:"check_rst"`
}

type rawTimeouts struct {
	TCP    any `toml:"tcp"`
	TCPFin any `toml:"tcp_fin"`
	UDP    any `toml:"udp"`

	TCPTimeWait any `toml:"tcp_time_wait"`
	TCPClose    any `toml:"tcp_close"`
}

type rawInterface struct {
	Name      any        `toml:"name"`
	Type      any        `toml:"type"`
	Create    any        `toml:"create"`
	MTU       any        `toml:"mtu"`
	MAC       any        `toml:"mac"`
	Addresses any        `toml:"addresses"`
	Queues    any        `toml:"queues"`
	Offload   any        `toml:"offload"`
	Sender    any        `toml:"sender"`
	Persist   any        `toml:"persist"`
	Bridge    any        `toml:"bridge"`
	OnLoss    any        `toml:"on_loss"`
	Route     []rawRoute `toml:"route"`
}

type rawRoute struct {
	Destination any `toml:"destination"`
	Gateway     any `toml:"gateway"`
}

type rawService struct {
	Name            any         `toml:"name"`
	Protocol        any         `toml:"protocol"`
	Address         any         `toml:"address"`
	Port            any         `toml:"port"`
	Ports           any         `toml:"ports"`
	Fwmark          any         `toml:"fwmark"`
	Scheduler       any         `toml:"scheduler"`
	SchedulerFlags  any         `toml:"scheduler_flags"`
	Method          any         `toml:"method"`
	Interface       any         `toml:"interface"`
	Persistence     any         `toml:"persistence_timeout"`
	Netmask         any         `toml:"persistence_netmask"`
	OnePacket       any         `toml:"one_packet"`
	Synproxy        any         `toml:"synproxy"`
	SlowStart       any         `toml:"slow_start"`
	MaglevTableSize any         `toml:"maglev_table_size"`
	SorryServer     any         `toml:"sorry_server"`
	Quorum          any         `toml:"quorum"`
	Hysteresis      any         `toml:"hysteresis"`
	QuorumUp        any         `toml:"quorum_up"`
	QuorumDown      any         `toml:"quorum_down"`
	Check           *rawCheck   `toml:"check"`
	Passive         *rawPassive `toml:"passive"`
	RealServer      []rawReal   `toml:"real_server"`
}

type rawReal struct {
	Address        any       `toml:"address"`
	Port           any       `toml:"port"`
	Weight         any       `toml:"weight"`
	Method         any       `toml:"method"`
	UpperThreshold any       `toml:"upper_threshold"`
	LowerThreshold any       `toml:"lower_threshold"`
	SlowStart      any       `toml:"slow_start"`
	TunType        any       `toml:"tun_type"`
	TunPort        any       `toml:"tun_port"`
	TunCsum        any       `toml:"tun_csum"`
	Check          *rawCheck `toml:"check"`
}

// schemaKind is what the schema expects at a key.
type schemaKind uint8

const (
	schemaLeaf        schemaKind = iota // a value; its type is checked when it is read
	schemaTable                         // a struct field
	schemaArrayTables                   // a slice-of-struct field
)

type schemaNode struct {
	kind     schemaKind
	children map[string]*schemaNode
	names    []string // sorted keys of children, for messages
}

// schema is the tree of keys that the raw types accept.
var schema = schemaOf(reflect.TypeFor[rawFile](), schemaTable)

func schemaOf(t reflect.Type, kind schemaKind) *schemaNode {
	n := &schemaNode{kind: kind, children: make(map[string]*schemaNode)}
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch {
		case ft.Kind() == reflect.Struct:
			n.children[name] = schemaOf(ft, schemaTable)
		case f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct:
			n.children[name] = schemaOf(f.Type.Elem(), schemaArrayTables)
		default:
			n.children[name] = &schemaNode{kind: schemaLeaf}
		}
		n.names = append(n.names, name)
	}
	slices.Sort(n.names)
	return n
}

// find returns the schema node at parts. When fold is set, names match
// without regard to case, as BurntSushi/toml matches struct fields.
func (n *schemaNode) find(parts []string, fold bool) *schemaNode {
	for _, p := range parts {
		c := n.children[p]
		if c == nil && fold {
			for name, cc := range n.children {
				if strings.EqualFold(name, p) {
					c = cc
					break
				}
			}
		}
		if c == nil {
			return nil
		}
		n = c
	}
	return n
}

// checker collects the problems of one document.
type checker struct {
	file string
	idx  *index
	errs ErrorList
	seen map[string]bool // key+msg already reported
}

// errorf reports a problem at key (an indexed path), on the line of key or
// of its nearest ancestor in the document. A problem reported twice (the
// same key and message) is kept once.
func (c *checker) errorf(key, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if c.seen == nil {
		c.seen = make(map[string]bool)
	}
	if id := key + "\x00" + msg; !c.seen[id] {
		c.seen[id] = true
		c.errs = append(c.errs, &Error{File: c.file, Line: c.idx.lookup(key), Key: key, Msg: msg})
	}
}

// checkShape reports tables and arrays of tables that the document writes
// as something else, such as [interface] for [[interface]] or timeouts = 5.
func (c *checker) checkShape() {
	for _, e := range c.idx.entries {
		n := schema.find(e.parts, true)
		if n == nil {
			continue
		}
		elem := strings.HasSuffix(e.key, "]")
		switch {
		case n.kind == schemaTable && e.shape != shapeTable:
			c.errorf(e.key, "must be a table ([%s]), not %s", plainKey(e.parts), describe(e))
		case n.kind == schemaArrayTables && elem && e.shape != shapeTable:
			c.errorf(e.key, "must be a table, not %s", describe(e))
		case n.kind == schemaArrayTables && !elem && e.shape != shapeArrayTables && e.shape != shapeArray:
			c.errorf(e.key, "must be an array of tables ([[%s]]), not %s", plainKey(e.parts), describe(e))
		}
	}
}

func describe(e entry) string {
	switch e.shape {
	case shapeTable:
		return "a table"
	case shapeArrayTables:
		return "an array of tables"
	case shapeArray:
		return "an array"
	}
	return article(e.kind)
}

// article prefixes a TOML type name with its indefinite article.
func article(typ string) string {
	if typ == "integer" || typ == "array" {
		return "an " + typ
	}
	return "a " + typ
}

// unknownKeys reports the keys the schema does not have: those the decoder
// left undecoded, and those it matched to a field only by ignoring case
// (TOML keys are case-sensitive, and `Weight` next to `weight` would make the
// decoder pick one at random). Each is reported where it occurs, in every
// table that has it, and only once per subtree: at its outermost key that
// the schema does not have (`weight` for `weight.x = 1`).
func (c *checker) unknownKeys(md *toml.MetaData) {
	unknown := make(map[string]bool)
	for _, k := range md.Undecoded() {
		unknown[plainKey(k)] = true
	}
	for _, k := range md.Keys() {
		if schema.find(k, false) == nil {
			unknown[plainKey(k)] = true
		}
	}
	if len(unknown) == 0 {
		return
	}
	for _, e := range c.idx.entries {
		if !unknown[plainKey(e.parts)] {
			continue
		}
		// Climb to the outermost key that the schema does not have.
		top, underLeaf := e, false
		for {
			i, ok := c.idx.byKey[top.parent]
			if !ok {
				break
			}
			up := c.idx.entries[i]
			if len(up.parts) == len(top.parts) { // top is an array element
				top = up
				continue
			}
			if n := schema.find(up.parts, false); n != nil {
				underLeaf = n.kind == schemaLeaf
				break
			}
			top = up
		}
		// Keys inside a value that should not be a table (mtu = {x = 1})
		// are covered by that value's type error.
		if !underLeaf {
			c.errorf(top.key, "unknown key%s", suggest(top.parts))
		}
	}
}

// suggest names the key that parts probably meant, or lists the valid ones.
func suggest(parts []string) string {
	parent := schema.find(parts[:len(parts)-1], false)
	if parent == nil || parent.kind == schemaLeaf {
		return ""
	}
	name := parts[len(parts)-1]
	best, bestDist := "", 3 // suggest only within two edits
	for _, cand := range parent.names {
		d := editDistance(strings.ToLower(name), cand)
		if d < bestDist {
			best, bestDist = cand, d
		}
	}
	if best != "" {
		return fmt.Sprintf("; did you mean %s?", best)
	}
	return "; valid keys here: " + strings.Join(parent.names, ", ")
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// typeName is the TOML name of the type of a decoded value.
func typeName(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case int64:
		return "integer"
	case float64:
		return "float"
	case bool:
		return "boolean"
	case time.Time:
		return "datetime"
	case map[string]any:
		return "table"
	case []any, []map[string]any:
		return "array"
	}
	return fmt.Sprintf("%T", v)
}

// show formats a decoded value for a message: strings quoted, scalars as
// written, containers by type only.
func show(v any) string {
	switch v := v.(type) {
	case string:
		return fmt.Sprintf("%q", v)
	case int64, float64, bool:
		return fmt.Sprint(v)
	case time.Time:
		return v.Format(time.RFC3339Nano)
	}
	return article(typeName(v))
}

// The readers below take the decoded value v of key (nil when the key is
// absent) and return ok=false when it is absent or bad; a bad value has been
// reported.

func (c *checker) wrongType(key string, v any, want string) {
	switch v.(type) {
	case map[string]any, []any, []map[string]any:
		c.errorf(key, "is %s, want %s", article(typeName(v)), want)
	default:
		c.errorf(key, "%s is %s, want %s", show(v), article(typeName(v)), want)
	}
}

func (c *checker) str(key string, v any) (string, bool) {
	if v == nil {
		return "", false
	}
	s, ok := v.(string)
	if !ok {
		c.wrongType(key, v, "a string")
	}
	return s, ok
}

func (c *checker) boolean(key string, v any) (bool, bool) {
	if v == nil {
		return false, false
	}
	b, ok := v.(bool)
	if !ok {
		c.wrongType(key, v, "true or false")
	}
	return b, ok
}

// integer reads an integer in lo..hi.
func (c *checker) integer(key string, v any, lo, hi int64) (int64, bool) {
	if v == nil {
		return 0, false
	}
	n, ok := v.(int64)
	if !ok {
		c.wrongType(key, v, "an integer")
		return 0, false
	}
	if n < lo || n > hi {
		c.errorf(key, "%d is out of range %d..%d", n, lo, hi)
		return 0, false
	}
	return n, true
}

// maxTimeout is the longest timeout the connection table keeps (24 days),
// a little below IPVS's own limit (INT_MAX/HZ seconds at HZ=1000, 596h):
// a longer one would be clamped there without a word, so it is refused
// here.
const maxTimeout = conntrack.MaxTimeout

// duration reads a timeout: a Go duration string or an integer of seconds,
// a whole number of seconds in 1s..maxTimeout (IPVS counts in seconds).
func (c *checker) duration(key string, v any) (time.Duration, bool) {
	switch x := v.(type) {
	case nil:
		return 0, false
	case int64:
		if x < 1 || x > int64(maxTimeout/time.Second) {
			c.errorf(key, "%d is out of range 1..%d (seconds)", x, maxTimeout/time.Second)
			return 0, false
		}
		return time.Duration(x) * time.Second, true
	case string:
		d, err := time.ParseDuration(x)
		switch {
		case err != nil:
			c.errorf(key, "%q is not a duration (write \"900s\", \"15m\" or an integer of seconds)", x)
		case d < time.Second || d > maxTimeout:
			c.errorf(key, "%q is out of range 1s..%s", x, maxTimeout)
		case d%time.Second != 0:
			c.errorf(key, "%q is not a whole number of seconds", x)
		default:
			return d, true
		}
		return 0, false
	}
	c.wrongType(key, v, `a duration string such as "900s" or an integer of seconds`)
	return 0, false
}

// strList reads an array of strings; it reports each bad element and
// returns the good ones with their keys.
func (c *checker) strList(key string, v any) (vals, keys []string, ok bool) {
	if v == nil {
		return nil, nil, false
	}
	arr, isArr := v.([]any)
	if !isArr {
		c.wrongType(key, v, "an array of strings")
		return nil, nil, false
	}
	ok = true
	for i, e := range arr {
		k := fmt.Sprintf("%s[%d]", key, i)
		s, isStr := e.(string)
		if !isStr {
			c.wrongType(k, e, "a string")
			ok = false
			continue
		}
		vals = append(vals, s)
		keys = append(keys, k)
	}
	return vals, keys, ok
}

// choice reads a string that must be one of names (listed in the message,
// with their meanings when given).
func (c *checker) choice(key string, v any, what string, names []string, help string) (string, bool) {
	s, ok := c.str(key, v)
	if !ok {
		return "", false
	}
	if !slices.Contains(names, s) {
		if help == "" {
			help = strings.Join(names, ", ")
		}
		c.errorf(key, "%q is not a %s; valid: %s", s, what, help)
		return "", false
	}
	return s, true
}

func (c *checker) missing(key string) { c.errorf(key, "required key is missing") }
