// Package config turns lvsd's TOML configuration file into a validated,
// immutable model: the director's interfaces (TAP or TUN devices with the
// addresses and routes the netstack holds), the global IPVS timeouts, and the
// virtual services with their real servers.
//
// The flow is parse → validate → Config. Parse never returns a partially
// valid Config: either every rule holds (see the checks in validate.go) or
// it returns an ErrorList naming every problem found, each as
//
//	FILE:LINE: KEY: message
//
// where KEY is the full key path with array indices
// (virtual_server[0].real_server[1].weight) and LINE is the exact line of
// that key, or of its table's header when the key is missing.
//
// What the package does not do: it opens no device, resolves no name, and
// does not check the host (whether an interface exists, whether the process
// may create one). Those checks belong to stack/ at start-up. It also keeps no
// state: every Parse returns a fresh Config that shares no memory with any
// other, so the caller owns it; by contract nobody mutates a Config after
// Parse returns it, which is what lets a reload publish it whole through an
// atomic pointer.
//
// Defaults live in one table, see DefaultValues. Scheduler names are checked
// against package sched, the single authority on them.
package config
