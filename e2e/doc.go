// Package e2e holds lvsd's end-to-end tests: the real lvsd binary, real
// servers and a client in network namespaces built by internal/lab, with
// traffic going through the kernel's veths and bridge and lvsd's TAP or TUN.
//
// The tests need root, /dev/net/tun and iproute2 (and iputils-ping for
// TestARPAndPing); without them they skip, unless LVSD_E2E=1, which makes a
// skip a failure (CI sets it). `go test -short` skips them.
package e2e
