// Package pkttest is lvsd's packet test kit: the documentation addresses
// the unit tests use (192.0.2.0/24, 2001:db8::/32), a frame builder (Frame),
// a checksum verifier written from the RFCs without gVisor's optimised code
// (CheckSums), a summary of a frame for cmp.Diff (Summarize), checkers in
// the spirit of gVisor's checker package (Check), and the packet scenarios
// of the repository's testdata/packets (Scenarios): one JSON file per mode
// and edge case, each an input frame, the verdict it must get and the frame
// lvsd must write, read by forward's unit tests and the director's
// in-memory tests.
//
// Only tests import it; lvsd never links it. Builders return fresh slices
// that the caller owns.
package pkttest
