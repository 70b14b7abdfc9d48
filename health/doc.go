// Package health decides which real servers may receive new connections:
// it runs one monitor per checked real server, probes it with a checker
// (tcp, http, https, udp, dns, exec, ping: keepalived's TCP_CHECK, HTTP_GET,
// SSL_GET, UDP_CHECK, DNS_CHECK, MISC_CHECK and PING_CHECK), counts
// consecutive results against rise and fall, and reports edges only (up to
// down, down to up, and exec checks' dynamic weights) to a Sink, which
// applies them to the running table.
//
// Passive (passive.go) is the other way to find a dead server: it takes
// the failed handshakes the fast path counted and ejects a server whose
// failures reach a threshold within a window, for a back-off that doubles
// on repeats, within a service's share; it probes nothing.
//
// Probes leave from the director's own netstack through the Net the caller
// gives (the DIP of the route is their source); only exec checks run on
// the host, as child processes. Every probe is bounded by its timeout and
// by read limits, and runs in its monitor's goroutine, so a slow or hostile
// server delays nothing but its own next check.
//
// Goroutines: a Manager starts one goroutine per monitor in Sync (once Run
// has been called) and stops it when the monitor is dropped by a later
// Sync or when Run's context ends; Run waits for all of them. Notify
// commands run in goroutines of their own, bounded by a timeout, that Run
// also waits for.
//
// The packet path never waits on this package: a Sink's methods change
// atomics and snapshots that the fast path reads.
package health
