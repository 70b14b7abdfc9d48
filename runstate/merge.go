package runstate

import (
	"fmt"
	"net/netip"
	"reflect"

	"github.com/lvsd/lvsd/config"
)

// svcKey identifies a service across tables: protocol, VIP and its port or
// list of ports.
func svcKey(s *config.Service) string {
	if s.Ports != nil {
		return fmt.Sprintf("%s %s %v", s.Proto, s.Addr, s.Ports)
	}
	return fmt.Sprintf("%s %s %d", s.Proto, s.Addr, s.Port)
}

func realKey(r *config.Real) netip.AddrPort { return netip.AddrPortFrom(r.Addr, r.Port) }

// fields is a service without its real servers, for comparing a service's
// own settings.
func fields(s *config.Service) config.Service {
	f := *s
	f.Reals = nil
	return f
}

func index(cfg *config.Config) map[string]*config.Service {
	m := make(map[string]*config.Service, len(cfg.Services))
	if cfg == nil {
		return m
	}
	for i := range cfg.Services {
		m[svcKey(&cfg.Services[i])] = &cfg.Services[i]
	}
	return m
}

// sameService compares two services' own settings (nil: absent).
func sameService(a, b *config.Service) bool {
	if a == nil || b == nil {
		return a == b
	}
	return reflect.DeepEqual(fields(a), fields(b))
}

func sameReal(a, b *config.Real) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// Merge returns the table to run when file is loaded while running holds
// runtime changes made over base: for each object (the timeouts, a
// service's own settings, a real server), the file's version if the file
// changed it since base, else the running one. The interfaces, sysctls and
// connection limits always come from file. Neither input is changed.
//
// A service that the file changed but that was deleted at run time comes
// back whole, as the file has it.
func Merge(base, running, file *config.Config) *config.Config {
	out := *file
	out.Services = nil
	if base.Timeouts == file.Timeouts {
		out.Timeouts = running.Timeouts
	}
	bi, ri, fi := index(base), index(running), index(file)

	// Services in the file's order, then those added at run time.
	var keys []string
	seen := map[string]bool{}
	for i := range file.Services {
		k := svcKey(&file.Services[i])
		keys, seen[k] = append(keys, k), true
	}
	for i := range running.Services {
		if k := svcKey(&running.Services[i]); !seen[k] {
			keys, seen[k] = append(keys, k), true
		}
	}
	for _, k := range keys {
		b, r, f := bi[k], ri[k], fi[k]
		var svc config.Service
		realsFrom := r
		switch {
		case !sameService(b, f) && f == nil:
			continue // the file deleted it
		case !sameService(b, f):
			svc = fields(f)
			if r == nil {
				realsFrom = f
			}
		case r == nil:
			continue // deleted at run time, untouched by the file
		default:
			svc = fields(r)
		}
		svc.Reals = mergeReals(b, realsFrom, f, realsFrom == f)
		out.Services = append(out.Services, svc)
	}
	return &out
}

// mergeReals merges the real servers of one service; whole: take f's as
// they are. A real server added at run time (in neither b nor f) that has
// b's service check gets f's: it was given its service's check, and the
// file changes that.
func mergeReals(b, r, f *config.Service, whole bool) []config.Real {
	if whole {
		return append([]config.Real(nil), f.Reals...)
	}
	find := func(s *config.Service, k netip.AddrPort) *config.Real {
		if s == nil {
			return nil
		}
		for i := range s.Reals {
			if realKey(&s.Reals[i]) == k {
				return &s.Reals[i]
			}
		}
		return nil
	}
	var keys []netip.AddrPort
	seen := map[netip.AddrPort]bool{}
	for _, s := range []*config.Service{f, r} {
		if s == nil {
			continue
		}
		for i := range s.Reals {
			if k := realKey(&s.Reals[i]); !seen[k] {
				keys, seen[k] = append(keys, k), true
			}
		}
	}
	var out []config.Real
	for _, k := range keys {
		bb, rr, ff := find(b, k), find(r, k), find(f, k)
		pick := rr
		if !sameReal(bb, ff) {
			pick = ff
		}
		if pick == nil {
			continue
		}
		rs := *pick
		if bb == nil && ff == nil && b != nil && f != nil && reflect.DeepEqual(rs.Check, b.Health.Check) {
			// Added at run time with its service's check: it follows the
			// service's check as the file has it now.
			rs.Check = f.Health.Check.Clone()
		}
		out = append(out, rs)
	}
	return out
}

// Differs reports whether running holds anything the file does not: when
// it does not, there is no runtime change to keep.
func Differs(file, running *config.Config) bool {
	if file.Timeouts != running.Timeouts || len(file.Services) != len(running.Services) {
		return true
	}
	fi := index(file)
	for i := range running.Services {
		f := fi[svcKey(&running.Services[i])]
		if f == nil || !reflect.DeepEqual(*f, running.Services[i]) {
			return true
		}
	}
	return false
}
