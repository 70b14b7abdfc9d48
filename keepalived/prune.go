package keepalived

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/lvsd/lvsd/config"
)

// The converter leaves out, with a note, each value it knows lvsd would
// refuse. What it does not foresee (a VIP that is an address of the
// director, two virtual servers of one address and port, a real server
// that is the VIP...) prune catches: it checks the whole output as lvsd
// check does and leaves out, with a note naming lvsd check's message, each
// real server or virtual server the message is about, until the output
// passes. So an import with an interface and addresses always passes lvsd
// check, or fails with an error (its problem is then in the interface the
// options gave, not in keepalived.conf), but for one thing: an exec check's
// program that is not on the importing host is kept (the import may be made
// elsewhere than on the director) and reported; lvsd check refuses it until
// it is there (CommandNotHere).

// CommandNotHere reports whether e is lvsd check's refusal of an exec
// check's program that is not on this host.
func CommandNotHere(e *config.Error) bool {
	return strings.HasSuffix(e.Key, ".check.command") && strings.Contains(e.Msg, "cannot be run")
}

// block is one [[virtual_server]] or [[virtual_server.real_server]] of the
// output, with the keepalived.conf line its header comment names.
type block struct {
	text  string
	real  bool
	line  int
	reals []*block // of a virtual server
}

// blockHead matches the header line the converter writes for each table
// of the array, with the keepalived.conf line it comes from.
var blockHead = regexp.MustCompile(`^\[\[virtual_server(\.real_server)?\]\]  # (\d+)$`)

// errKey matches the keys of lvsd check's messages: the virtual server's
// index and, for a key inside one, the real server's.
var errKey = regexp.MustCompile(`^virtual_server\[(\d+)\](?:\.real_server\[(\d+)\])?`)

// split cuts out into its preamble and its virtual servers.
func split(out string) (string, []*block) {
	var (
		pre strings.Builder
		vss []*block
		cur *block
	)
	for _, ln := range strings.SplitAfter(out, "\n") {
		if m := blockHead.FindStringSubmatch(strings.TrimSuffix(ln, "\n")); m != nil {
			line, _ := strconv.Atoi(m[2])
			b := &block{real: m[1] != "", line: line}
			switch {
			case !b.real:
				vss = append(vss, b)
			case len(vss) > 0:
				last := vss[len(vss)-1]
				last.reals = append(last.reals, b)
			default:
				b = nil // a real server before any virtual server: not the converter's
			}
			if b != nil {
				cur = b
			}
		}
		switch {
		case cur == nil:
			pre.WriteString(ln)
		default:
			cur.text += ln
		}
	}
	return pre.String(), vss
}

func join(pre string, vss []*block) string {
	var b strings.Builder
	b.WriteString(pre)
	for _, vs := range vss {
		b.WriteString(vs.text)
		for _, r := range vs.reals {
			b.WriteString(r.text)
		}
	}
	return b.String()
}

// prune leaves out of out what lvsd check refuses (see above) and adds a
// note for each.
func (c *converter) prune(file string, out []byte) ([]byte, error) {
	pre, vss := split(string(out))
	for range len(vss) + 1 {
		text := join(pre, vss)
		_, err := config.Parse("imported.toml", []byte(text))
		if err == nil {
			return []byte(text), nil
		}
		var list config.ErrorList
		if !errors.As(err, &list) {
			return nil, fmt.Errorf("%s: the import does not pass lvsd check: %w", file, err)
		}
		dropVS := map[int]string{}
		dropReal := map[[2]int]string{}
		for _, e := range list {
			if CommandNotHere(e) {
				continue
			}
			m := errKey.FindStringSubmatch(e.Key)
			if m == nil {
				return nil, fmt.Errorf("%s: the import does not pass lvsd check (check the interface and addresses given): %w", file, err)
			}
			i, _ := strconv.Atoi(m[1])
			if i >= len(vss) {
				return nil, fmt.Errorf("%s: the import does not pass lvsd check: %w", file, err)
			}
			msg := strings.TrimPrefix(e.Key, m[0])
			msg = strings.TrimPrefix(msg, ".")
			if msg != "" {
				msg += ": "
			}
			msg += e.Msg
			if m[2] != "" {
				if j, _ := strconv.Atoi(m[2]); j < len(vss[i].reals) {
					if _, seen := dropReal[[2]int{i, j}]; !seen {
						dropReal[[2]int{i, j}] = msg
					}
					continue
				}
			}
			if _, seen := dropVS[i]; !seen {
				dropVS[i] = msg
			}
		}
		if len(dropVS) == 0 && len(dropReal) == 0 {
			// Only commands to install on the director: kept, and
			// reported by the converter.
			return []byte(text), nil
		}
		var keep []*block
		for i, vs := range vss {
			if msg, drop := dropVS[i]; drop {
				c.notes = append(c.notes, Note{Line: vs.line, Key: "virtual_server", Msg: "lvsd check refuses it (" + msg + "): left out"})
				continue
			}
			var reals []*block
			for j, r := range vs.reals {
				if msg, drop := dropReal[[2]int{i, j}]; drop {
					c.notes = append(c.notes, Note{Line: r.line, Key: "real_server", Msg: "lvsd check refuses it (" + msg + "): left out"})
					continue
				}
				reals = append(reals, r)
			}
			vs.reals = reals
			keep = append(keep, vs)
		}
		vss = keep
	}
	return nil, fmt.Errorf("%s: the import does not pass lvsd check", file)
}
