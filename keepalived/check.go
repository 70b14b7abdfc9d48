package keepalived

import (
	"encoding/hex"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// checkTypes maps the keepalived checkers lvsd has to its check types.
var checkTypes = map[string]string{
	"TCP_CHECK": "tcp", "HTTP_GET": "http", "SSL_GET": "https", "UDP_CHECK": "udp",
	"DNS_CHECK": "dns", "MISC_CHECK": "exec", "PING_CHECK": "ping",
}

// portTypes are the check types that take a port (config's checkKeyTypes).
var portTypes = []string{"tcp", "http", "https", "udp", "dns"}

// Bounds of lvsd's check keys (config/check.go): what falls outside is
// reported rather than written, so that the output passes lvsd check.
const (
	minDuration = 10 * time.Millisecond
	maxDuration = time.Hour
	maxFall     = 100
	maxPayload  = 1024
)

// tomlKeys is an ordered set of TOML assignments of a check table; set
// replaces a key's earlier value, so that a narrower keepalived block (the
// checker) overrides a wider one (the real server, the virtual server).
type tomlKeys struct{ keys, vals []string }

func (t *tomlKeys) set(k, v string) {
	if i := slices.Index(t.keys, k); i >= 0 {
		t.vals[i] = v
		return
	}
	t.keys = append(t.keys, k)
	t.vals = append(t.vals, v)
}

func (t *tomlKeys) clone() tomlKeys {
	return tomlKeys{keys: slices.Clone(t.keys), vals: slices.Clone(t.vals)}
}

// checkDefault translates a keyword keepalived allows around its checkers
// (in virtual_server and real_server blocks, and in the checker itself)
// into dst; false means it is not one of them.
func (c *converter) checkDefault(k *node, dst *tomlKeys) bool {
	switch k.key {
	case "delay_loop":
		c.duration(k, dst, "interval")
	case "connect_timeout":
		c.duration(k, dst, "timeout")
	case "delay_before_retry":
		c.duration(k, dst, "delay_before_retry")
	case "warmup":
		if f, err := strconv.ParseFloat(firstOr(k.args, ""), 64); err == nil && f == 0 {
			dst.set("warmup", "false")
		} else {
			c.duration(k, dst, "warmup")
		}
	case "retry", "nb_get_retry":
		// keepalived's retry counts the failures after the first; lvsd's
		// fall counts them all.
		n, err := strconv.Atoi(firstOr(k.args, ""))
		if err != nil || n < 0 || n+1 > maxFall {
			c.note(k, "%s: not a number of retries lvsd takes (fall = retry + 1, 1..%d)", strings.Join(k.args, " "), maxFall)
			return true
		}
		dst.set("fall", strconv.Itoa(n+1))
	case "alpha", "inhibit_on_failure":
		if b, ok := flag(k.args); ok {
			dst.set(k.key, strconv.FormatBool(b))
		} else {
			c.note(k, "%s: not true or false", strings.Join(k.args, " "))
		}
	case "notify_up", "notify_down":
		if len(k.args) == 0 {
			c.note(k, "no command")
			return true
		}
		dst.set(k.key, strconv.Quote(strings.Join(k.args, " ")))
	default:
		return false
	}
	return true
}

// flag reads keepalived's optional boolean argument: the keyword alone is
// true.
func flag(args []string) (bool, bool) {
	if len(args) == 0 {
		return true, true
	}
	switch strings.ToLower(args[0]) {
	case "true", "on", "yes":
		return true, true
	case "false", "off", "no":
		return false, true
	}
	return false, false
}

// duration writes keepalived's seconds (a decimal number) as an lvsd
// duration string.
func (c *converter) duration(k *node, dst *tomlKeys, key string) {
	f, err := strconv.ParseFloat(firstOr(k.args, ""), 64)
	if err != nil || len(k.args) != 1 || !(f >= minDuration.Seconds() && f <= maxDuration.Seconds()) {
		c.note(k, "%s: not a number of seconds lvsd takes for %s (%s..%s)", strings.Join(k.args, " "), key, minDuration, maxDuration)
		return
	}
	dst.set(key, strconv.Quote(time.Duration(f*float64(time.Second)).String()))
}

// checker translates one keepalived checker block into the keys of an lvsd
// check table over the defaults of its virtual and real server; ok is false
// when nothing of it can be imported (reported).
func (c *converter) checker(n *node, defaults tomlKeys) (keys tomlKeys, ok bool) {
	typ, known := checkTypes[n.key]
	if !known {
		c.note(n, "checker not imported: lvsd has no equivalent (docs/health.md lists its check types)")
		return keys, false
	}
	keys = tomlKeys{}
	keys.set("type", strconv.Quote(typ))
	for i, k := range defaults.keys {
		keys.set(k, defaults.vals[i])
	}
	var url *node
	for _, k := range n.children {
		if c.checkDefault(k, &keys) {
			continue
		}
		switch {
		case k.key == "connect_ip":
			if a := firstOr(k.args, ""); len(k.args) == 1 && validAddr(a) {
				keys.set("address", strconv.Quote(a))
			} else {
				c.note(k, "%s: not an address", strings.Join(k.args, " "))
			}
		case k.key == "connect_port" && slices.Contains(portTypes, typ):
			if p, err := strconv.ParseUint(firstOr(k.args, ""), 10, 16); err == nil && p > 0 {
				keys.set("port", strconv.FormatUint(p, 10))
			} else {
				c.note(k, "%s: not a port", strings.Join(k.args, " "))
			}
		case k.key == "url" && (typ == "http" || typ == "https"):
			if url != nil {
				c.note(k, "lvsd's check has one path: only the url of line %d is imported", url.line)
				continue
			}
			url = k
			c.url(k, &keys)
		case k.key == "virtualhost" && (typ == "http" || typ == "https"):
			keys.set("host", strconv.Quote(firstOr(k.args, "")))
		case k.key == "enable_sni" && typ == "https":
			// lvsd sends the host as the server name whenever there is one.
		case k.key == "payload" && typ == "udp":
			c.hexKey(k, &keys, "payload_hex")
		case k.key == "require_reply" && typ == "udp":
			keys.set("require_reply", "true")
			if len(k.args) > 0 {
				c.hexKey(k, &keys, "expect_hex")
			}
		case k.key == "type" && typ == "dns":
			if t := strings.ToUpper(firstOr(k.args, "")); dns.StringToType[t] != 0 {
				keys.set("query_type", strconv.Quote(t))
			} else {
				c.note(k, "%s: not a DNS record type", strings.Join(k.args, " "))
			}
		case k.key == "name" && typ == "dns":
			if s := firstOr(k.args, ""); isDomain(s) {
				keys.set("query_name", strconv.Quote(s))
			} else {
				c.note(k, "%s: not a domain name", strings.Join(k.args, " "))
			}
		case k.key == "misc_path" && typ == "exec":
			cmd := strings.Join(k.args, " ")
			keys.set("command", strconv.Quote(cmd))
			if prog := firstOr(strings.Fields(cmd), ""); strings.Contains(prog, "/") {
				if _, err := os.Stat(prog); err != nil {
					c.note(k, "%s is not on this host: lvsd check refuses the command until it is", prog)
				}
			}
		case k.key == "misc_timeout" && typ == "exec":
			c.duration(k, &keys, "timeout")
		case k.key == "misc_dynamic" && typ == "exec":
			keys.set("dynamic", "true")
		default:
			c.note(k, "no equivalent in lvsd's %s check", typ)
		}
	}
	if typ == "exec" && !slices.Contains(keys.keys, "command") {
		c.note(n, "MISC_CHECK without misc_path: not imported")
		return keys, false
	}
	return keys, true
}

func validAddr(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil
}

func isDomain(s string) bool {
	_, ok := dns.IsDomainName(s)
	return ok && s != ""
}

// url translates an HTTP_GET or SSL_GET url block.
func (c *converter) url(n *node, keys *tomlKeys) {
	for _, k := range n.children {
		switch k.key {
		case "path":
			if p := firstOr(k.args, ""); strings.HasPrefix(p, "/") {
				keys.set("path", strconv.Quote(p))
			} else {
				c.note(k, "%s: lvsd's path starts with /", p)
			}
		case "status_code":
			var codes []string
			for _, a := range k.args {
				if lo, hi, isRange := strings.Cut(a, "-"); isRange {
					if statusCode(lo) && statusCode(hi) {
						codes = append(codes, strconv.Quote(a))
						continue
					}
				} else if statusCode(a) {
					codes = append(codes, a)
					continue
				}
				c.note(k, "%s: not a status code or a range of them", a)
			}
			if len(codes) > 0 {
				keys.set("status", "["+strings.Join(codes, ", ")+"]")
			}
		case "digest":
			d := strings.ToLower(firstOr(k.args, ""))
			if _, err := hex.DecodeString(d); err != nil || len(d) != 32 {
				c.note(k, "%s: not an MD5 digest in hex", d)
				continue
			}
			keys.set("digest", strconv.Quote(d))
		case "regex":
			re := firstOr(k.args, "")
			if _, err := regexp.Compile(re); err != nil {
				c.note(k, "%q: not a regular expression of Go's syntax", re)
				continue
			}
			keys.set("regexp", strconv.Quote(re))
		default:
			c.note(k, "no equivalent in lvsd's http check")
		}
	}
}

func statusCode(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n >= 100 && n <= 599
}

// hexKey writes keepalived's hex payload (UDP_CHECK) as an lvsd _hex key.
func (c *converter) hexKey(k *node, keys *tomlKeys, key string) {
	h := strings.Join(k.args, "")
	if b, err := hex.DecodeString(h); err != nil || h == "" || len(b) > maxPayload {
		c.note(k, "%s: not hex", strings.Join(k.args, " "))
		return
	}
	keys.set(key, strconv.Quote(h))
}

// writeCheck writes a real server's check table; it must follow the real
// server's own keys.
func (c *converter) writeCheck(line int, keys tomlKeys) {
	c.w("\n  [virtual_server.real_server.check]  # %d\n", line)
	for i, k := range keys.keys {
		c.w("  %s = %s\n", k, keys.vals[i])
	}
}
