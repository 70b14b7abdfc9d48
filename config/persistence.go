package config

import (
	"fmt"
	"math/bits"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Readers of the keys of persistence, services over several ports and slow
// start. Like the readers in parse.go they take the decoded value v of key
// (nil when absent) and return ok=false when it is absent or bad; a bad value
// has been reported.

// portList reads ports = [...]: at least one port, each 1..65535, none twice.
func (c *checker) portList(key string, v any) ([]uint16, bool) {
	arr, isArr := v.([]any)
	if !isArr {
		c.wrongType(key, v, "an array of ports such as [80, 443]")
		return nil, false
	}
	if len(arr) == 0 {
		c.errorf(key, "is empty; list at least one port, such as [80, 443]")
		return nil, false
	}
	ok := true
	var ports []uint16
	seen := make(map[int64]bool)
	for i, e := range arr {
		k := fmt.Sprintf("%s[%d]", key, i)
		n, good := c.integer(k, e, 1, 65535)
		switch {
		case !good:
			ok = false
		case seen[n]:
			c.errorf(k, "%d is given twice", n)
			ok = false
		default:
			seen[n] = true
			ports = append(ports, uint16(n))
		}
	}
	return ports, ok
}

// isZeroDuration reports whether v is 0 or a duration string of zero length
// ("0", "0s"): the way to switch a duration key off.
func isZeroDuration(v any) bool {
	switch x := v.(type) {
	case int64:
		return x == 0
	case string:
		d, err := time.ParseDuration(x)
		return err == nil && d == 0
	}
	return false
}

// optDuration reads a duration that may be 0 (off), otherwise as duration
// does.
func (c *checker) optDuration(key string, v any) (time.Duration, bool) {
	if v != nil && isZeroDuration(v) {
		return 0, true
	}
	negative := false
	switch x := v.(type) {
	case int64:
		negative = x < 0
	case string:
		d, err := time.ParseDuration(x)
		negative = err == nil && d < 0
	}
	if negative {
		c.errorf(key, "%s is negative; 0 switches it off", show(v))
		return 0, false
	}
	return c.duration(key, v)
}

// persistenceTimeout reads persistence_timeout: a duration as optDuration
// does, or true for ipvsadm's default of -p without a value (300 s), or
// false for none.
func (c *checker) persistenceTimeout(key string, v any) (time.Duration, bool) {
	if b, isBool := v.(bool); isBool {
		if b {
			return defaults.PersistenceTimeout, true
		}
		return 0, true
	}
	switch v.(type) {
	case nil, int64, string:
		return c.optDuration(key, v)
	}
	c.wrongType(key, v, `a duration such as "300s", an integer of seconds, or true (300 s, as ipvsadm -p without a value)`)
	return 0, false
}

// netmask reads persistence_netmask for a service whose VIP is vip (invalid
// when bad): a prefix length (24, "24" or "/24"), or for IPv4 a dotted mask
// ("255.255.255.0"). It returns the prefix length: 0..32 for IPv4 and
// 1..128 for IPv6, as IPVS accepts.
func (c *checker) netmask(key string, v any, vip netip.Addr) (int, bool) {
	var n int64
	switch x := v.(type) {
	case int64:
		n = x
	case string:
		if strings.Contains(x, ".") {
			m, err := netip.ParseAddr(x)
			if err != nil || !m.Is4() {
				c.errorf(key, "%q is not a netmask such as \"255.255.255.0\" or a prefix length such as 24", x)
				return 0, false
			}
			if vip.Is6() {
				c.errorf(key, "%q is an IPv4 netmask, but the VIP %s is IPv6; give a prefix length such as 64", x, vip)
				return 0, false
			}
			b := m.As4()
			u := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
			ones := bits.LeadingZeros32(^u)
			if ones < 32 && u<<ones != 0 {
				c.errorf(key, "%q is not a contiguous netmask (ones, then zeros)", x)
				return 0, false
			}
			return ones, true
		}
		p, err := strconv.ParseInt(strings.TrimPrefix(x, "/"), 10, 32)
		if err != nil {
			c.errorf(key, "%q is not a netmask such as \"255.255.255.0\" or a prefix length such as 24", x)
			return 0, false
		}
		n = p
	default:
		c.wrongType(key, v, `a prefix length such as 24, or a netmask such as "255.255.255.0"`)
		return 0, false
	}
	lo, hi := int64(0), int64(128)
	switch {
	case vip.Is4():
		hi = 32
	case vip.Is6():
		lo = 1
	}
	if n < lo || n > hi {
		fam := ""
		if vip.IsValid() {
			fam = " for an " + family(vip) + " VIP"
		}
		c.errorf(key, "prefix length %d is out of range %d..%d%s", n, lo, hi, fam)
		return 0, false
	}
	return int(n), true
}
