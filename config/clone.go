package config

import "slices"

// Clone returns a deep copy of c: it shares no slice, array or check with
// c, so that either may be changed without the other seeing it (the
// director's running table hands out copies; ipvsadm's commands edit one).
func (c *Config) Clone() *Config {
	n := *c
	n.Interfaces = slices.Clone(c.Interfaces)
	for i := range n.Interfaces {
		ic := &n.Interfaces[i]
		ic.Addresses = slices.Clone(ic.Addresses)
		ic.Routes = slices.Clone(ic.Routes)
	}
	n.Services = slices.Clone(c.Services)
	for i := range n.Services {
		sc := &n.Services[i]
		sc.Ports = slices.Clone(sc.Ports)
		sc.SchedFlags = slices.Clone(sc.SchedFlags)
		sc.Reals = slices.Clone(sc.Reals)
		sc.Health.Check = sc.Health.Check.Clone()
		for j := range sc.Reals {
			rc := &sc.Reals[j]
			rc.Check = rc.Check.Clone()
		}
	}
	return &n
}

// Clone returns a deep copy of c (nil for nil).
func (c *Check) Clone() *Check {
	if c == nil {
		return nil
	}
	ck := *c
	ck.Status = slices.Clone(ck.Status)
	ck.Payload = slices.Clone(ck.Payload)
	ck.Expect = slices.Clone(ck.Expect)
	return &ck
}
