// Package realserver is the real-server half of lvsd's TUN forwarding
// (ipvsadm -i) for hosts whose kernel has no ipip module (nor ip_gre, fou),
// so that it cannot decapsulate IPIP (GRE, GUE) itself.
//
// A Server receives the tunnelled packets that the director sends to this
// host through raw IPv4 and IPv6 sockets of protocol 4 (IPv4 inside) and 41
// (IPv6 inside): IPv4 outer headers (ip_vs_tunnel_xmit) and IPv6 ones
// (ip_vs_tunnel_xmit_v6, next header 41 or 4, as the kernel's ip6tnl
// decapsulates them); raw sockets of protocol 47 receive GRE (--tun-type
// gre), and with Options.GUEPort a UDP socket receives GUE (--tun-type gue).
// It strips the outer headers, and writes the inner packet, addressed to a
// virtual address (VIP), into a local TUN device (IFF_TUN, IFF_NO_PI). The
// host's own kernel takes it as received on that device: it must hold the
// VIP (on lo or on the TUN) and accept a client address arriving there
// (rp_filter 0 or 2), and answers the client directly, as with the kernel's
// tunl0. docs/modes.md describes the setup, and the kernel alternative.
//
// A raw socket gets a copy of every packet of its protocol addressed to the
// host, after the kernel has reassembled fragments; with no ipip module the
// kernel has no handler of its own for them and, since a raw socket took
// them, sends no ICMP protocol-unreachable either. Only inner packets to a
// configured VIP are written to the TUN (and, with Options.Directors, only
// from the director's addresses): nothing else can be injected into the host
// this way.
//
// Each socket is read a batch at a time (recvmmsg, up to 64 packets), and
// the TUN is opened with a virtio-net header (IFF_VNET_HDR): the consecutive
// inner TCP segments of a flow within a batch are joined into one
// super-frame written once as a GSO frame with a partial checksum (GRO in
// user space, gro.go), so that the host's kernel takes the director's
// segments of one TSO frame as one packet again. Other packets are written
// as they came, one write each.
//
// A Server owns its sockets, its TUN queue and one goroutine per socket plus
// one that drains the TUN (the kernel may route packets into it; they are
// counted and discarded). Run stops them all when its context ends. Each
// receiving goroutine owns its batch of receive buffers (64 of 64 KiB, 4 MiB
// per socket; a super-frame is built in the buffer of its first segment) and its coalescer; packets are
// not retained past the batch. The receive path does not allocate.
package realserver
