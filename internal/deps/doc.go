// Package deps holds no code: its tests check the import rules that the
// design states in prose (docs/architecture.md, STYLE), so that breaking one
// fails `make test` instead of waiting for a reviewer.
//
//   - Only package stack imports gVisor's netstack: its stack, link,
//     network, transport and adapters packages (forward may use header and
//     checksum over byte slices).
//   - forward links no netstack: neither package stack nor gVisor's.
//   - realserver links no netstack: it opens its TUN with package device.
//   - cmd/lvsd links no testing, and of gopacket only pcapgo and the pure-Go
//     layers (lvsd capture's pcapng, lvsd trace's header decoding).
//   - Nothing imports github.com/google/gopacket: the maintained fork
//     github.com/gopacket/gopacket replaces it.
//   - Only files named *_unsafe.go (or *_unsafe_test.go) import unsafe.
package deps
