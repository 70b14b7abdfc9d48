package config

import (
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lvsd/lvsd/lvs"
	"github.com/miekg/dns"
)

// rawCheck mirrors a `check` table, of a virtual server (the default of
// its real servers) or of a real server (overriding it key by key).
type rawCheck struct {
	Type             any `toml:"type"`
	Address          any `toml:"address"`
	Port             any `toml:"port"`
	Interval         any `toml:"interval"`
	Timeout          any `toml:"timeout"`
	Rise             any `toml:"rise"`
	Fall             any `toml:"fall"`
	DelayBeforeRetry any `toml:"delay_before_retry"`
	Warmup           any `toml:"warmup"`
	Alpha            any `toml:"alpha"`
	InhibitOnFailure any `toml:"inhibit_on_failure"`
	NotifyUp         any `toml:"notify_up"`
	NotifyDown       any `toml:"notify_down"`
	Path             any `toml:"path"`
	Host             any `toml:"host"`
	Status           any `toml:"status"`
	Digest           any `toml:"digest"`
	Contains         any `toml:"contains"`
	Regexp           any `toml:"regexp"`
	SNI              any `toml:"sni"`
	CAFile           any `toml:"ca_file"`
	Payload          any `toml:"payload"`
	PayloadHex       any `toml:"payload_hex"`
	Expect           any `toml:"expect"`
	ExpectHex        any `toml:"expect_hex"`
	RequireReply     any `toml:"require_reply"`
	QueryType        any `toml:"query_type"`
	QueryName        any `toml:"query_name"`
	Command          any `toml:"command"`
	Dynamic          any `toml:"dynamic"`
	ThroughVIP       any `toml:"through_vip"`
	ReuseConnection  any `toml:"reuse_connection"`
}

// checkTypes are the check types; "none" in a real server's table turns
// off a check its virtual server gives.
var checkTypes = []string{"tcp", "http", "https", "udp", "dns", "exec", "ping", "none"}

const checkTypeHelp = "tcp (TCP_CHECK), http (HTTP_GET), https (SSL_GET), udp (UDP_CHECK), dns (DNS_CHECK), exec (MISC_CHECK), ping (PING_CHECK), none"

// checkKeyTypes lists, for the keys that apply to some types only, the
// types they apply to.
var checkKeyTypes = map[string][]string{
	"port":             {"tcp", "http", "https", "udp", "dns"},
	"path":             {"http", "https"},
	"host":             {"http", "https"},
	"status":           {"http", "https"},
	"digest":           {"http", "https"},
	"contains":         {"http", "https"},
	"regexp":           {"http", "https"},
	"sni":              {"https"},
	"ca_file":          {"https"},
	"payload":          {"udp"},
	"payload_hex":      {"udp"},
	"expect":           {"udp"},
	"expect_hex":       {"udp"},
	"require_reply":    {"udp"},
	"query_type":       {"dns"},
	"query_name":       {"dns"},
	"command":          {"exec"},
	"dynamic":          {"exec"},
	"through_vip":      {"tcp", "http", "https"},
	"reuse_connection": {"http", "https"},
}

// Limits of check keys.
const (
	minCheckDuration = 10 * time.Millisecond
	maxCheckDuration = time.Hour
)

// mergeCheck returns the check table of a real server: the service's keys
// overridden by the real server's. keys maps each field name (its toml
// tag) to the key that gave it, for messages. Both nil: nil.
func mergeCheck(skey string, svc *rawCheck, rkey string, real *rawCheck) (*rawCheck, map[string]string) {
	if svc == nil && real == nil {
		return nil, nil
	}
	out := new(rawCheck)
	keys := make(map[string]string)
	ov := reflect.ValueOf(out).Elem()
	for _, src := range []struct {
		key string
		raw *rawCheck
	}{{skey + ".check", svc}, {rkey + ".check", real}} {
		if src.raw == nil {
			continue
		}
		v := reflect.ValueOf(src.raw).Elem()
		for i := range v.NumField() {
			if f := v.Field(i); !f.IsNil() {
				ov.Field(i).Set(f)
				name, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("toml"), ",")
				keys[name] = src.key + "." + name
			}
		}
	}
	return out, keys
}

// check validates the merged check table of real server r of svc. It
// returns nil when the server is not checked.
func (c *checker) check(skey string, svcRaw *rawCheck, rkey string, realRaw *rawCheck, svc *Service, r *Real) *Check {
	raw, keys := mergeCheck(skey, svcRaw, rkey, realRaw)
	if raw == nil {
		return nil
	}
	k := func(name string) string {
		if s, ok := keys[name]; ok {
			return s
		}
		if realRaw != nil {
			return rkey + ".check." + name
		}
		return skey + ".check." + name
	}
	typ, good := c.choice(k("type"), raw.Type, "check type", checkTypes, checkTypeHelp)
	if raw.Type == nil {
		c.missing(k("type"))
		return nil
	}
	if !good || typ == "none" {
		return nil
	}
	ch := &Check{
		Type: typ, Interval: DefaultCheckInterval, Timeout: DefaultCheckTimeout,
		Rise: DefaultCheckRise, Fall: DefaultCheckFall, DelayBeforeRetry: DefaultRetryDelay,
	}
	// Keys that do not apply to the type.
	rv := reflect.ValueOf(raw).Elem()
	for i := range rv.NumField() {
		name, _, _ := strings.Cut(rv.Type().Field(i).Tag.Get("toml"), ",")
		types, limited := checkKeyTypes[name]
		if !limited || rv.Field(i).IsNil() || slices.Contains(types, typ) {
			continue
		}
		if realRaw != nil && realRaw.Type != nil && keys[name] == skey+".check."+name {
			// The real server changed the type: the service's keys of
			// the other type are not its.
			rv.Field(i).SetZero()
			continue
		}
		c.errorf(k(name), "applies to check type %s only, and this check is %s", strings.Join(types, ", "), typ)
	}

	if s, good := c.str(k("address"), raw.Address); good {
		if a, why := parseHost(s); why != "" {
			c.errorf(k("address"), "%q %s", s, why)
		} else {
			ch.Addr = a
		}
	}
	if n, good := c.integer(k("port"), raw.Port, 1, 65535); good {
		ch.Port = uint16(n)
	}
	if slices.Contains(checkKeyTypes["port"], typ) && ch.Port == 0 && r.Port == 0 {
		c.errorf(k("type"), "a %s check of %s needs a port: the real server has none (its service spans several ports); set check.port", typ, r.Addr)
	}
	if d, good := c.checkDuration(k("interval"), raw.Interval); good {
		ch.Interval = d
	}
	if d, good := c.checkDuration(k("timeout"), raw.Timeout); good {
		ch.Timeout = d
	}
	if d, good := c.checkDuration(k("delay_before_retry"), raw.DelayBeforeRetry); good {
		ch.DelayBeforeRetry = d
	}
	ch.Warmup = ch.Interval
	if raw.Warmup != nil {
		if b, isBool := raw.Warmup.(bool); isBool {
			if !b {
				ch.Warmup = minCheckDuration
			}
		} else if d, good := c.checkDuration(k("warmup"), raw.Warmup); good {
			ch.Warmup = d
		}
	}
	if n, good := c.integer(k("rise"), raw.Rise, 1, maxCheckRiseFall); good {
		ch.Rise = int(n)
	}
	if n, good := c.integer(k("fall"), raw.Fall, 1, maxCheckRiseFall); good {
		ch.Fall = int(n)
	}
	ch.Alpha, _ = c.boolean(k("alpha"), raw.Alpha)
	ch.InhibitOnFailure, _ = c.boolean(k("inhibit_on_failure"), raw.InhibitOnFailure)
	ch.NotifyUp, _ = c.checkString(k("notify_up"), raw.NotifyUp)
	ch.NotifyDown, _ = c.checkString(k("notify_down"), raw.NotifyDown)

	ch.Path, _ = c.checkString(k("path"), raw.Path)
	if ch.Path != "" && !strings.HasPrefix(ch.Path, "/") {
		c.errorf(k("path"), "%q must start with /", ch.Path)
	}
	ch.Host, _ = c.checkString(k("host"), raw.Host)
	if raw.Status != nil {
		ch.Status = c.statusRanges(k("status"), raw.Status)
	}
	if s, good := c.checkString(k("digest"), raw.Digest); good {
		s = strings.ToLower(s)
		if _, err := hex.DecodeString(s); err != nil || len(s) != 32 {
			c.errorf(k("digest"), "%q is not an MD5 digest in hex (32 hex digits, as genhash prints)", s)
		}
		ch.Digest = s
	}
	ch.Contains, _ = c.checkString(k("contains"), raw.Contains)
	if s, good := c.checkString(k("regexp"), raw.Regexp); good {
		if _, err := regexp.Compile(s); err != nil {
			c.errorf(k("regexp"), "%q is not a regular expression: %v", s, err)
		}
		ch.Regexp = s
	}
	ch.SNI, _ = c.checkString(k("sni"), raw.SNI)
	if s, good := c.checkString(k("ca_file"), raw.CAFile); good {
		if _, err := os.Stat(s); err != nil {
			c.errorf(k("ca_file"), "%q cannot be read: %v", s, err)
		}
		ch.CAFile = s
	}

	ch.Payload = c.bytesKey(k("payload"), raw.Payload, k("payload_hex"), raw.PayloadHex)
	ch.Expect = c.bytesKey(k("expect"), raw.Expect, k("expect_hex"), raw.ExpectHex)
	ch.RequireReply, _ = c.boolean(k("require_reply"), raw.RequireReply)
	if s, good := c.checkString(k("query_type"), raw.QueryType); good {
		s = strings.ToUpper(s)
		if _, known := dns.StringToType[s]; !known {
			c.errorf(k("query_type"), "%q is not a DNS record type (A, AAAA, NS, SOA, MX, TXT, SRV, ...)", s)
		}
		ch.QueryType = s
	}
	if s, good := c.checkString(k("query_name"), raw.QueryName); good {
		if _, ok := dns.IsDomainName(s); !ok {
			c.errorf(k("query_name"), "%q is not a domain name", s)
		}
		ch.QueryName = s
	}
	if typ == "dns" {
		if ch.QueryType == "" {
			ch.QueryType = DefaultDNSQueryType
		}
		if ch.QueryName == "" {
			ch.QueryName = DefaultDNSQueryName
		}
	}
	ch.Command, _ = c.checkString(k("command"), raw.Command)
	if typ == "exec" {
		if raw.Command == nil {
			c.missing(k("command"))
		} else if prog := strings.Fields(ch.Command); len(prog) == 0 {
			c.errorf(k("command"), "is empty")
		} else if strings.Contains(prog[0], "/") {
			// A path: it must be there now (keepalived's misc_path).
			if fi, err := os.Stat(prog[0]); err != nil {
				c.errorf(k("command"), "%q cannot be run: %v", prog[0], err)
			} else if fi.Mode()&0o111 == 0 || fi.IsDir() {
				c.errorf(k("command"), "%q is not an executable file", prog[0])
			}
		}
	}
	ch.Dynamic, _ = c.boolean(k("dynamic"), raw.Dynamic)
	ch.ThroughVIP, _ = c.boolean(k("through_vip"), raw.ThroughVIP)
	if ch.ThroughVIP && r.Addr.IsValid() { // not the service's own pseudo server
		switch {
		case r.Method != lvs.DR && r.Method != lvs.TUN:
			c.errorf(k("through_vip"), "needs a real server forwarded by dr or tun: %s is %s (its RIP answers for itself; check it directly)", r.Addr, r.Method)
		case !svc.Addr.IsValid():
			c.errorf(k("through_vip"), "needs a virtual address: a firewall-mark service has none to probe")
		case ch.Addr.IsValid():
			c.errorf(k("through_vip"), "probes the virtual address: it excludes check.address")
		case svc.Addr.Unmap().Is4() != r.Addr.Unmap().Is4():
			c.errorf(k("through_vip"), "needs a real server of the virtual address's family")
		}
	}
	ch.ReuseConnection, _ = c.boolean(k("reuse_connection"), raw.ReuseConnection)
	if ch.ReuseConnection && ch.ThroughVIP {
		c.errorf(k("reuse_connection"), "not with through_vip: a kept connection through the forwarding path would hold one of its 1024 probe ports between checks")
	}
	return ch
}

// checkString reads a string of at most maxCheckStringSetting bytes.
func (c *checker) checkString(key string, v any) (string, bool) {
	s, good := c.str(key, v)
	if good && len(s) > maxCheckStringSetting {
		c.errorf(key, "is %d bytes long; at most %d", len(s), maxCheckStringSetting)
		return "", false
	}
	return s, good
}

// checkDuration reads a check's duration: a Go duration string or an
// integer of seconds, in minCheckDuration..maxCheckDuration.
func (c *checker) checkDuration(key string, v any) (time.Duration, bool) {
	var d time.Duration
	switch x := v.(type) {
	case nil:
		return 0, false
	case int64:
		if x < 1 || x > int64(maxCheckDuration/time.Second) {
			c.errorf(key, "%d is out of range 1..%d (seconds)", x, int64(maxCheckDuration/time.Second))
			return 0, false
		}
		return time.Duration(x) * time.Second, true
	case string:
		var err error
		if d, err = time.ParseDuration(x); err != nil {
			c.errorf(key, "%q is not a duration (write \"500ms\", \"2s\" or an integer of seconds)", x)
			return 0, false
		}
	default:
		c.wrongType(key, v, `a duration string such as "2s" or an integer of seconds`)
		return 0, false
	}
	if d < minCheckDuration || d > maxCheckDuration {
		c.errorf(key, "%q is out of range %s..%s", v, minCheckDuration, maxCheckDuration)
		return 0, false
	}
	return d, true
}

// statusRanges reads HTTP status codes: an array of integers (200) and
// ranges ("200-299").
func (c *checker) statusRanges(key string, v any) []StatusRange {
	arr, ok := v.([]any)
	if !ok {
		c.wrongType(key, v, `an array of status codes and ranges, such as [200, "300-399"]`)
		return nil
	}
	var out []StatusRange
	for i, e := range arr {
		ek := fmt.Sprintf("%s[%d]", key, i)
		var lo, hi int64
		switch x := e.(type) {
		case int64:
			lo, hi = x, x
		case string:
			a, b, isRange := strings.Cut(x, "-")
			var err1, err2 error
			lo, err1 = strconv.ParseInt(strings.TrimSpace(a), 10, 64)
			hi, err2 = lo, nil
			if isRange {
				hi, err2 = strconv.ParseInt(strings.TrimSpace(b), 10, 64)
			}
			if err1 != nil || err2 != nil {
				c.errorf(ek, "%q is not a status code or a range such as \"200-299\"", x)
				continue
			}
		default:
			c.wrongType(ek, e, `a status code or a range such as "200-299"`)
			continue
		}
		if lo < 100 || hi > 599 || lo > hi {
			c.errorf(ek, "%s is not a range of status codes within 100..599", show(e))
			continue
		}
		out = append(out, StatusRange{Lo: int(lo), Hi: int(hi)})
	}
	if len(out) == 0 && len(arr) == 0 {
		c.errorf(key, "is empty; remove it for the default 200-299")
	}
	return out
}

// bytesKey reads a payload given as text (key) or as hex (hexKey); not
// both.
func (c *checker) bytesKey(key string, v any, hexKey string, hv any) []byte {
	if v != nil && hv != nil {
		c.errorf(hexKey, "give either %s or %s, not both", key[strings.LastIndexByte(key, '.')+1:], hexKey[strings.LastIndexByte(hexKey, '.')+1:])
		return nil
	}
	if s, good := c.str(key, v); good {
		if len(s) > maxCheckPayload {
			c.errorf(key, "is %d bytes long; at most %d", len(s), maxCheckPayload)
			return nil
		}
		if s == "" {
			return nil
		}
		return []byte(s)
	}
	if s, good := c.str(hexKey, hv); good {
		b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
		if err != nil {
			c.errorf(hexKey, "%q is not hex", s)
			return nil
		}
		if len(b) > maxCheckPayload {
			c.errorf(hexKey, "is %d bytes long; at most %d", len(b), maxCheckPayload)
			return nil
		}
		if len(b) == 0 {
			return nil
		}
		return b
	}
	return nil
}

// health validates a virtual server's sorry_server and quorum keys.
func (c *checker) health(key string, raw *rawService, svc *Service) Health {
	var h Health
	if s, good := c.str(key+".sorry_server", raw.SorryServer); good {
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			if a, why := parseHost(s); why == "" {
				ap = netip.AddrPortFrom(a, svc.Port)
			} else {
				c.errorf(key+".sorry_server", "%q is not an address or address:port", s)
			}
		}
		switch {
		case !ap.IsValid():
		case ap.Port() == 0:
			c.errorf(key+".sorry_server", "%q needs a port: the service spans several ports", s)
		case svc.Addr.IsValid() && ap.Addr().Is4() != svc.Addr.Is4():
			c.errorf(key+".sorry_server", "%s is %s but the VIP %s is %s", ap.Addr(), family(ap.Addr()), svc.Addr, family(svc.Addr))
		default:
			h.SorryServer = ap
		}
	}
	if n, good := c.integer(key+".quorum", raw.Quorum, 0, 1<<31-1); good {
		h.Quorum = int(n)
	}
	if n, good := c.integer(key+".hysteresis", raw.Hysteresis, 0, 1<<31-1); good {
		h.Hysteresis = int(n)
		if h.Quorum > 0 && h.Hysteresis >= h.Quorum {
			c.errorf(key+".hysteresis", "%d must be below quorum %d", n, h.Quorum)
		}
	}
	h.QuorumUp, _ = c.checkString(key+".quorum_up", raw.QuorumUp)
	h.QuorumDown, _ = c.checkString(key+".quorum_down", raw.QuorumDown)
	h.Passive = c.passive(key+".passive", raw.Passive)
	return h
}

// rawPassive mirrors a virtual server's `passive` table.
type rawPassive struct {
	Enabled           any `toml:"enabled"`
	Failures          any `toml:"failures"`
	Interval          any `toml:"interval"`
	BaseEjectionTime  any `toml:"base_ejection_time"`
	MaxEjectionTime   any `toml:"max_ejection_time"`
	MaxEjectedPercent any `toml:"max_ejected_percent"`
}

// passive validates a `passive` table; without one, detection is off.
func (c *checker) passive(key string, raw *rawPassive) Passive {
	if raw == nil {
		return Passive{}
	}
	p := Passive{
		Failures: DefaultPassiveFailures, Interval: DefaultPassiveInterval,
		BaseEjection: DefaultPassiveBaseEjection, MaxEjection: DefaultPassiveMaxEjection,
		MaxEjectedPercent: DefaultPassiveMaxEjected,
	}
	p.Enabled, _ = c.boolean(key+".enabled", raw.Enabled)
	if n, good := c.integer(key+".failures", raw.Failures, 1, 1<<20); good {
		p.Failures = int(n)
	}
	if d, good := c.checkDuration(key+".interval", raw.Interval); good {
		p.Interval = d
	}
	if d, good := c.checkDuration(key+".base_ejection_time", raw.BaseEjectionTime); good {
		p.BaseEjection = d
	}
	if d, good := c.checkDuration(key+".max_ejection_time", raw.MaxEjectionTime); good {
		p.MaxEjection = d
	}
	if p.MaxEjection < p.BaseEjection {
		c.errorf(key+".max_ejection_time", "%s is below base_ejection_time %s", p.MaxEjection, p.BaseEjection)
	}
	if n, good := c.integer(key+".max_ejected_percent", raw.MaxEjectedPercent, 1, 100); good {
		p.MaxEjectedPercent = int(n)
	}
	return p
}

// formatHealth writes a virtual server's sorry_server and quorum keys, for
// Format.
func formatHealth(b *strings.Builder, h *Health) {
	if h.SorryServer.IsValid() {
		fmt.Fprintf(b, "sorry_server = %s\n", q(h.SorryServer.String()))
	}
	if h.Quorum > 0 {
		fmt.Fprintf(b, "quorum = %d\nhysteresis = %d\n", h.Quorum, h.Hysteresis)
	}
	if h.QuorumUp != "" {
		fmt.Fprintf(b, "quorum_up = %s\n", q(h.QuorumUp))
	}
	if h.QuorumDown != "" {
		fmt.Fprintf(b, "quorum_down = %s\n", q(h.QuorumDown))
	}
	if p := h.Passive; p.Enabled {
		fmt.Fprintf(b, "passive = { enabled = true, failures = %d, interval = %s, base_ejection_time = %s, max_ejection_time = %s, max_ejected_percent = %d }\n",
			p.Failures, q(p.Interval.String()), q(p.BaseEjection.String()), q(p.MaxEjection.String()), p.MaxEjectedPercent)
	}
}

// formatCheck writes a check as a complete check table named table, for
// Format: every value explicit, so that a real server's does not depend on
// its virtual server's (the keys it leaves out are empty in c, and so in a
// check merged from the file's tables, which cannot empty a key).
func formatCheck(b *strings.Builder, table string, c *Check) {
	fmt.Fprintf(b, "    [%s]\n    type = %s\n", table, q(c.Type))
	fmt.Fprintf(b, "    interval = %s\n    timeout = %s\n    delay_before_retry = %s\n    warmup = %s\n",
		q(c.Interval.String()), q(c.Timeout.String()), q(c.DelayBeforeRetry.String()), q(c.Warmup.String()))
	fmt.Fprintf(b, "    rise = %d\n    fall = %d\n    alpha = %t\n    inhibit_on_failure = %t\n",
		c.Rise, c.Fall, c.Alpha, c.InhibitOnFailure)
	str := func(key, v string) {
		if v != "" {
			fmt.Fprintf(b, "    %s = %s\n", key, q(v))
		}
	}
	if c.Addr.IsValid() {
		str("address", c.Addr.String())
	}
	if c.Port != 0 {
		fmt.Fprintf(b, "    port = %d\n", c.Port)
	}
	str("notify_up", c.NotifyUp)
	str("notify_down", c.NotifyDown)
	switch c.Type {
	case "http", "https":
		str("path", c.Path)
		str("host", c.Host)
		if len(c.Status) > 0 {
			rs := make([]string, len(c.Status))
			for i, r := range c.Status {
				rs[i] = q(fmt.Sprintf("%d-%d", r.Lo, r.Hi))
			}
			fmt.Fprintf(b, "    status = [%s]\n", strings.Join(rs, ", "))
		}
		str("digest", c.Digest)
		str("contains", c.Contains)
		str("regexp", c.Regexp)
		if c.Type == "https" {
			str("sni", c.SNI)
			str("ca_file", c.CAFile)
		}
	case "udp":
		if c.Payload != nil {
			str("payload_hex", hex.EncodeToString(c.Payload))
		}
		if c.Expect != nil {
			str("expect_hex", hex.EncodeToString(c.Expect))
		}
		fmt.Fprintf(b, "    require_reply = %t\n", c.RequireReply)
	case "dns":
		str("query_type", c.QueryType)
		str("query_name", c.QueryName)
	case "exec":
		fmt.Fprintf(b, "    command = %s\n    dynamic = %t\n", q(c.Command), c.Dynamic)
	}
	// Booleans are written false too: a real server's table that leaves
	// one out would take its virtual server's.
	if slices.Contains(checkKeyTypes["through_vip"], c.Type) {
		fmt.Fprintf(b, "    through_vip = %t\n", c.ThroughVIP)
	}
	if slices.Contains(checkKeyTypes["reuse_connection"], c.Type) {
		fmt.Fprintf(b, "    reuse_connection = %t\n", c.ReuseConnection)
	}
}
