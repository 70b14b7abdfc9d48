// Package takeover is the wire protocol of a graceful restart: a running
// lvsd (the giver) hands its devices' descriptors and its state to a new
// lvsd (the taker) over a connected Unix socket, descriptors passed with
// SCM_RIGHTS as HAProxy's seamless reload passes its listeners. It owns
// the protocol and the handoff socket (Listen, Accept, Dial; Path puts it
// beside the control socket); stopping, adopting the descriptors and
// restoring the state are its callers' (package director, cmd/lvsd).
//
// The exchange, in order:
//
//  1. giver → taker: a manifest (JSON, at most MaxManifest bytes, after a
//     4-byte length) naming each device, its kind, its MAC and how many
//     descriptors it has (one per TAP or TUN queue, three per packet
//     queue), with every descriptor attached to the same message
//     (SCM_RIGHTS).
//  2. taker → giver: one byte, ackDevices: it holds the descriptors (and
//     has built its director on them, not reading yet). Until then the
//     giver keeps forwarding.
//  3. giver: stops reading its devices (frames wait in their queues),
//     takes the state's snapshot; giver → taker: the state, after a 4-byte
//     length (at most MaxTable).
//  4. taker → giver: one byte, ackRunning: it restored the state and reads
//     the devices. The giver exits; a failure before this point (the
//     connection closed, a protocol error, a wait past DevicesWait or
//     RunningWait) leaves the giver to resume (its descriptors are still
//     open).
//
// Received descriptors belong to the taker (Received.Devices): it closes
// those it does not adopt. Only a process of the giver's user, or root,
// may connect (the socket's mode and SO_PEERCRED).
package takeover
