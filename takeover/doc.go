// Package takeover is the wire protocol of a graceful restart: a running
// lvsd (the giver) hands its devices' descriptors and its connection table
// to a new lvsd (the taker) over a connected Unix socket, descriptors
// passed with SCM_RIGHTS as HAProxy's seamless reload passes its
// listeners. It owns only the protocol: opening the socket, adopting the
// descriptors and restoring the table are its callers'.
//
// The exchange, in order:
//
//  1. giver → taker: a manifest (JSON, at most MaxManifest bytes, after a
//     4-byte length) naming each device and how many descriptors it has,
//     with every descriptor attached to the same message (SCM_RIGHTS).
//  2. taker → giver: one byte, ackDevices: it holds the descriptors. Until
//     then the giver keeps forwarding.
//  3. giver: stops reading its devices, takes the table's snapshot;
//     giver → taker: the snapshot, after a 4-byte length (at most
//     MaxTable).
//  4. taker → giver: one byte, ackRunning: it restored the table and reads
//     the devices. The giver exits; a failure before this point leaves the
//     giver to resume (its descriptors are still open).
//
// Received descriptors belong to the taker (Received.Devices): it closes
// those it does not adopt.
package takeover
