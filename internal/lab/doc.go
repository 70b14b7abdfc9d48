// Package lab builds network-namespace labs for lvsd's end-to-end tests and
// its demo: namespaces, a bridge, veths, a persistent TAP or TUN device for
// lvsd to attach to, real servers, a client, and lvsd itself, all torn down
// on every exit path.
//
// # Rules every lab keeps
//
//   - Addresses come only from 198.18.0.0/15 and 2001:2::/48, and exist only
//     inside namespaces the lab created.
//   - Every namespace is named lvt-<pid>-<n>-<role> (pid of the test process,
//     n counting the labs of that process); every link name starts with lvt
//     (or is a namespace's own lo) and has at most 15 bytes.
//   - Nothing is ever created in the root namespace: veths are created with
//     both ends placed directly in their namespaces, and the TAP/TUN and the
//     bridge are created with `ip -n NS`.
//   - Everything is removed on every exit path: the Lab registers its
//     teardown with T.Cleanup (tests) or with a Session (programs, which
//     call Session.Close from a defer that also runs on panic and signal).
//     Because a SIGKILLed or timed-out `go test` runs no cleanup, New first
//     removes the namespaces and scratch directories of lab processes that
//     are no longer alive (lvt-<pid>-* with a dead pid); it never touches a
//     live process's.
//   - Labs of one process share nothing but the binaries (built once, under
//     a lock): each has its own namespaces, scratch directory and control
//     socket, so tests may run their labs in parallel (t.Parallel).
//
// # Reference NAT lab (TAP, L2): Lab.NATLab
//
//	client  lvt-P-N-cli            real servers lvt-P-N-rs1 .. rs3
//	lvteth0 198.18.1.10/24         lvteth0 198.18.2.11-13/24
//	[2001:2:0:1::10/64]            [2001:2:0:2::11-13/64]
//	default via 198.18.1.1         default via 198.18.2.1 (a DIP held by lvsd)
//	     |                               |      |      |
//	  veth pair                       veth pairs (one per real server)
//	     |                               |      |      |
//	+----+-------------------------------+------+------+----- lvt-P-N-dir -+
//	|  lvtcli                         lvtrs1 lvtrs2 lvtrs3                 |
//	|     \______________ lvtbr0 (bridge, no address) ____/                |
//	|                          |                                           |
//	|                  lvttap0 (persistent TAP, owner uid configurable,    |
//	|                          up, bridge port, no address)                |
//	+--------------------------|-------------------------------------------+
//	                           | fd (create = false)
//	                         lvsd: gVisor netstack with MAC 02:00:5e:10:00:01,
//	                         DIPs 198.18.1.1/24 198.18.2.1/24, VIP 198.18.1.100
//
// The kernel of the director namespace holds no address: only lvsd's
// netstack answers ARP and ping for the DIPs and the VIP. The client reaches
// the VIP on-link (same /24), so its neighbour table shows lvsd's MAC for
// 198.18.1.100.
//
// # NAT over TUN (L3): Lab.TUNLab
//
// A TUN has no link layer, so the director namespace's kernel does the
// routing around it and lvsd sees bare IP packets:
//
//	client lvt-P-N-cli                   real servers lvt-P-N-rs1 .. rs3
//	lvteth0 198.18.1.10/24               lvteth0 198.18.2.11-13/24
//	default via 198.18.1.1               default via 198.18.2.1 (director kernel)
//	     |                                    |      |      |
//	+----+------------------------------------+------+------+-- lvt-P-N-dir -+
//	| lvtcli 198.18.1.1/24               lvtrs1 lvtrs2 lvtrs3                |
//	|   proxy_arp=1, proxy_delay=0          \____ lvtbr0 ____/               |
//	|   (answers the client's ARP for           198.18.2.1/24                |
//	|    the VIP: its route is lvttun0)                                      |
//	|                                                                        |
//	| ip_forward=1, rp_filter=0, no IPv6                                     |
//	| route 198.18.1.100/32 dev lvttun0   (client -> VIP into lvsd)          |
//	| route 198.18.3.0/24   dev lvttun0   (lvsd's own netstack address)      |
//	| rule  from 198.18.2.0/24 iif lvtbr0 lookup 100                         |
//	| table 100: default dev lvttun0      (real servers' replies into lvsd)  |
//	|                                                                        |
//	| lvttun0 (persistent TUN, owner uid configurable, up, no address)       |
//	+------------|-----------------------------------------------------------+
//	             | fd (create = false)
//	           lvsd: netstack 198.18.3.1/24 (for health checks and ICMP),
//	           VIP 198.18.1.100, route 0.0.0.0/0 on-link through the TUN
//
// A client packet to VIP:80 is routed into lvttun0; lvsd rewrites it to
// RIP:8080 and writes it back into lvttun0, and the kernel forwards it to
// the real server (rp_filter is off because the client's address arrives on
// the TUN). The real server's reply, from 198.18.2.0/24 arriving on lvtbr0,
// is policy-routed into lvttun0; lvsd rewrites its source to VIP:80 and
// writes it back, and the kernel forwards it to the client. The policy rule
// sits below the local table, so traffic to 198.18.2.1 itself stays local.
// 198.18.3.0/24 is the TUN link's own subnet: lvsd's netstack sources health
// checks from 198.18.3.1, and the real servers' replies come back through
// the same rule.
//
// # Processes
//
// Lab.Start runs a command inside a namespace (`ip netns exec NS cmd...`) in
// its own process group, with stdout and stderr going to a log file in the
// lab's scratch directory; the teardown stops it (SIGTERM, then SIGKILL to
// the group). When a test has failed, the teardown first prints each
// process's log.
//
// Lab.StartLvsd runs `lvsd run -c FILE`, optionally as another uid (for
// example nobody, 65534). The device node /dev/net/tun of this machine may
// be root-only; such an lvsd then gets its own node with mode 0666,
// bind-mounted over /dev/net/tun inside the private mount namespace that
// `ip netns exec` gives each command. The host's node is never changed.
package lab
