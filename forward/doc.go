// Package forward is lvsd's data plane: pure functions over byte slices that
// parse an inbound frame, find or create its connection, rewrite it in place
// for NAT, DR or TUN forwarding, and return a verdict.
//
// It performs no I/O and owns no goroutines. The caller (package stack) owns
// every buffer: a Packet's Buf belongs to the reader that filled it and is
// valid only for the duration of Process; Process never retains it. A
// Transmit verdict means the frame, rewritten in place inside Buf[Off:Off+Len]
// (Off may move back into the headroom for encapsulation), must be written to
// the same link before the buffer is reused.
//
// Configuration is read through an atomic pointer to an immutable Config
// snapshot that a reload replaces whole; Process takes no lock and allocates
// nothing for packets of established connections.
package forward
