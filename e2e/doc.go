// Package e2e holds lvsd's end-to-end tests: the real lvsd binary, real
// servers and a client in network namespaces built by internal/lab, with
// traffic going through the kernel's veths and bridge and lvsd's TAP or TUN.
//
// The tests need root, /dev/net/tun and iproute2 (and iputils-ping for
// TestARPAndPing); without them they skip, unless LVSD_E2E=1, which makes a
// skip a failure (CI sets it). `go test -short` skips them.
//
// # Parallel labs
//
// A lab test mostly waits (for lvsd, real servers, timers), so most tests
// call t.Parallel: each builds its own lab (namespaces lvt-<pid>-<n>-*,
// links only inside them, its own scratch directory and control socket),
// and nothing they touch is shared but the binaries, built once. `go test`
// runs the serial tests first, then the parallel ones, -parallel at a time
// (`make test` runs four at a time). Serial stay the tests whose assertions are about
// load or time and would measure their neighbours too: the floods
// (TestUDPFlood, TestSYNFloodEstablished), TestAdmChangesUnderLoad,
// TestHealthScale, the detection bounds of TestHealthKillHTTP and
// TestHealthPassive (its two labs run side by side), and the headless browser
// of TestStatusPageBrowser.
package e2e
