// Package forward is lvsd's data plane: pure functions over byte slices that
// parse an inbound frame, find or create its connection, rewrite it in place
// for NAT, DR or TUN forwarding, and return a verdict.
//
// It performs no I/O and owns no goroutines. Each reader goroutine of the
// link gets its own Worker (Forwarder.NewWorker) and calls Worker.Process for
// every frame; a Worker keeps its counters and scratch space to itself, and
// Forwarder.Counters sums them. A reader that receives frames in batches
// calls Worker.Warm on a batch of more than one first (warm.go): a hint
// that overlaps the connection table's cache misses of the batch's
// lookups, which reads the frames, never retains them, and decides
// nothing.
//
// The caller (package stack) owns every buffer: a Packet's Buf belongs to the
// reader that filled it and is valid only for the duration of Process;
// Process never retains it. A Transmit verdict means the frame, rewritten in
// place inside Buf[Off:Off+Len] (Off may move back into the headroom for
// encapsulation, see TunnelHeadroom), must be written to the same link, with
// Packet.VNet, before the buffer is reused. A ToStack verdict leaves the frame
// and its virtio header untouched.
//
// Configuration is read through an atomic pointer to an immutable Config
// snapshot that a reload replaces whole. For packets of known connections
// Process takes one connection-table shard read lock and allocates nothing;
// the first packet of a connection allocates nothing either once the table
// has grown to its working size (it recycles entries). For a
// persistent service (Service.Persist) the first packet also looks up the
// client's persistence template (one shard read lock of the persist.Table, no
// allocation), or creates one (an allocation) when the scheduler chose; a
// datagram of a one-packet service (Service.OnePacket) leaves no entry and
// allocates nothing.
//
// What goes where:
//   - ARP, VLAN-tagged frames, broadcast and multicast frames, ICMP (but
//     errors about connections), IPv6 with ESP or no next header, TCP/UDP
//     not addressed to a virtual service, and TCP segments to one other than
//     a SYN without a connection (the netstack answers them with a RST, as
//     the kernel's stack does behind IPVS): to the netstack. IPv6 extension
//     headers before TCP/UDP are skipped as IPVS skips them (ipv6ext.go).
//   - IPv4 and IPv6 fragments addressed to the director: held (verdict
//     Held) until their datagram is complete, which is then processed as
//     any packet and, forwarded, re-fragmented (frag.go). The fragments wait
//     in one reassembler per Forwarder, locked by fragments only, in memory
//     allocated at New (Options.FragMemory).
//   - Unicast frames for another MAC, malformed headers, fragments that
//     make no datagram: dropped and counted by DropReason.
//   - Packets of virtual services and NAT replies: forwarded, their TTL
//     decremented (ttl.go); at TTL 1 answered with ICMP time exceeded built
//     in place instead (icmpgen.go). TUN-mode packets go inside an outer
//     IPv4 header to an IPv4 real server (tunnel.go), an outer IPv6 one to
//     an IPv6 real server (tunnel6.go). A packet too
//     big for a TUN-mode tunnel is answered with ICMP fragmentation-needed
//     (packet-too-big) built in place (icmpgen.go), or leaves as fragments of
//     the outer packet; a TCP super-frame for a TUN-mode real server is
//     segmented in place (gso.go). Frames beyond the one a Transmit verdict
//     writes go out through Packet.Emit during Process.
//   - TCP segments of a service with Service.Synproxy: a SYN is answered
//     by the director with a SYN cookie and leaves no entry; the client's
//     ACK with a valid cookie opens the connection and becomes the SYN to
//     the real server; afterwards sequence numbers are translated
//     (synproxy.go, synproxy_cookie.go). The SYN-ACK, the SYN, the ACK to
//     the real server and the client's window update are written in the
//     frame's buffer or the worker's scratch, without allocation.
//   - ICMP errors (unreachable, fragmentation needed / packet too big, time
//     exceeded) whose quoted packet belongs to a connection: forwarded to
//     the side that sent the quoted packet, with the outer and quoted
//     headers un-NATed and every checksum updated (icmperr.go).
//
// Forwarder.Explain runs Process on a copy of a frame in a dry run, for
// `lvsd trace -packet`: the same decisions, none committed (trace.go).
//
// Not implemented yet (the frames are dropped and counted, see each
// function): ICMP port unreachable for a packet without a destination,
// SCTP.
package forward
