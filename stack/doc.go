// Package stack attaches lvsd to its packet devices and owns the director's
// host stack.
//
// It is the only package that imports gVisor's stack and link packages. Over
// the queues of a device (package device opens them), it runs one reader
// goroutine per queue in its own link endpoint (Link), decodes the
// virtio-net header, hands every inbound frame to the fast path
// (package forward) and delivers what the fast path does not take to a
// gVisor netstack. The netstack holds the director's addresses (DIPs and
// VIPs), answers ARP, NDP and ICMP echo, resolves neighbours, and dials
// health checks. Netstack errors (tcpip.Error) become Go errors here, once.
//
// Checks through the forwarding path (DR and TUN real servers) cannot use
// that netstack, which owns the VIPs: a tcp probe is a SYN built here
// (through.go), and a whole connection (an http check) comes from a second,
// private netstack that holds the DIPs only (through_conn.go), made at its
// first use and closed by Close. The Link hands the answers, TCP to the
// probe ports, to them instead of the director's netstack.
//
// Buffers: each reader owns one batch of buffers for its whole life; a frame
// is valid only while the fast path processes it and, if forwarded, until
// it is written. With a sender per queue (LinkOptions.Sender, sender.go) the
// reader has two batches, and lends each to the sender until its frames are
// written. Frames for the netstack are copied
// into a PacketBuffer that the netstack owns; the reader releases its
// reference after delivery. A frame that waits for its neighbour's MAC
// (forward.AwaitNeighbor) is copied into that neighbour's hold queue
// (lvs.Neighbor.Hold), which owns the copy until the netstack resolves the
// neighbour (the copy is then written out) or fails to (dropped): see
// neighq.go.
//
// Goroutines: a Link's readers start when the netstack attaches the Link and
// stop when the Link is closed (a reader's sender, if any, writes what was
// handed to it and stops before its reader does); Stack.Run stops with its context; Close
// waits for all of them.
package stack
