package config

import (
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/lvsd/lvsd/lvs"
)

// cmpOpts compares netip values by value (they have unexported fields).
var cmpOpts = []cmp.Option{
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
	cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b }),
}

// lines joins its arguments as the lines of a document, so that a test's
// line numbers can be counted from its arguments.
func lines(ls ...string) []byte { return []byte(strings.Join(ls, "\n") + "\n") }

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func addr(s string) netip.Addr  { return netip.MustParseAddr(s) }

// tap returns an interface with every default and the given name and
// addresses.
func tap(name string, addrs ...string) Interface {
	ifc := Interface{Name: name, Type: TAP, Create: true, MTU: 1500, MAC: DefaultMAC(name), Queues: 1, Offload: true}
	for _, a := range addrs {
		ifc.Addresses = append(ifc.Addresses, pfx(a))
	}
	return ifc
}

var defaultTimeouts = Timeouts{TCP: 900 * time.Second, TCPFin: 120 * time.Second, UDP: 300 * time.Second}

func TestParseValid(t *testing.T) {
	methods0 := tap("lvttap0", "198.18.1.1/24")
	methods0.MAC = [6]byte{0x02, 0x00, 0x5e, 0x00, 0x53, 0x01}
	dual := tap("lvttap0", "198.18.1.1/24", "2001:2::1/64")
	dual.Create, dual.MTU, dual.Queues, dual.Offload = false, 9000, 4, false
	dual.Routes = []Route{
		{Destination: pfx("0.0.0.0/0"), Gateway: addr("198.18.1.254")},
		{Destination: pfx("2001:2:0:1::/64"), Gateway: addr("2001:2::fe")},
		{Destination: pfx("198.19.0.0/16")},
	}
	inline := tap("lvttap0", "198.18.1.1/24", "198.18.2.1/24")
	inline.Routes = []Route{{Destination: pfx("198.19.0.0/16"), Gateway: addr("198.18.2.254")}}

	tests := []struct {
		name string
		file string // under testdata/
		want *Config
	}{
		{
			name: "minimal file takes every default",
			file: "minimal.toml",
			want: &Config{
				Timeouts:   defaultTimeouts,
				Interfaces: []Interface{tap("lvttap0", "198.18.1.1/24")},
			},
		},
		{
			name: "packet attach mode",
			file: "packet.toml",
			want: &Config{
				Timeouts: defaultTimeouts,
				Interfaces: []Interface{{
					Name: "lvtveth0", Type: PACKET, MTU: 1500, Queues: 2, Offload: true,
					Addresses: []netip.Prefix{pfx("198.18.1.1/24")},
				}},
			},
		},
		{
			name: "dual stack with routes and integer seconds",
			file: "dualstack.toml",
			want: &Config{
				Timeouts:   Timeouts{TCP: time.Hour, TCPFin: 2 * time.Minute, UDP: time.Minute},
				Interfaces: []Interface{dual},
				Services: []Service{{
					Name: "web6", Proto: lvs.TCP, Addr: addr("2001:2::100"), Port: 443,
					Scheduler: "mh", SchedFlags: []string{"mh-port", "mh-fallback"}, Interface: "lvttap0",
					Reals: []Real{
						{Addr: addr("2001:2::11"), Port: 8443, Weight: 1, Method: lvs.NAT},
						{Addr: addr("2001:2::12"), Port: 8443, Weight: 0, Method: lvs.NAT},
					},
				}},
			},
		},
		{
			name: "dr by default, nat override, tun from a tun device",
			file: "methods.toml",
			want: &Config{
				Timeouts: defaultTimeouts,
				Interfaces: []Interface{methods0, {
					Name: "lvttun0", Type: TUN, Create: true, MTU: 1480, Queues: 1, Offload: true,
					Addresses: []netip.Prefix{pfx("198.18.3.1/24")},
				}},
				Services: []Service{
					{
						Proto: lvs.TCP, Addr: addr("198.18.1.101"), Port: 443, Scheduler: "sh",
						SchedFlags: []string{"sh-port"}, Interface: "lvttap0",
						Reals: []Real{
							{Addr: addr("198.18.1.21"), Port: 443, Weight: 1, Method: lvs.DR, UpperThreshold: 100, LowerThreshold: 50},
							{Addr: addr("198.18.1.22"), Port: 8443, Weight: 1, Method: lvs.NAT},
						},
					},
					{
						Proto: lvs.UDP, Addr: addr("198.18.3.100"), Port: 4789, Scheduler: "wlc", Interface: "lvttun0",
						Reals: []Real{{Addr: addr("198.18.4.11"), Port: 4789, Weight: 1, Method: lvs.TUN}},
					},
				},
			},
		},
		{
			name: "inline tables and arrays of inline tables",
			file: "inline.toml",
			want: &Config{
				Timeouts:   Timeouts{TCP: 15 * time.Minute, TCPFin: 120 * time.Second, UDP: 5 * time.Minute},
				Interfaces: []Interface{inline},
				Services: []Service{{
					Proto: lvs.TCP, Addr: addr("198.18.1.100"), Port: 80, Scheduler: "wlc", Interface: "lvttap0",
					Reals: []Real{
						{Addr: addr("198.18.2.11"), Port: 8080, Weight: 3, Method: lvs.NAT},
						{Addr: addr("198.18.2.12"), Port: 8080, Weight: 2, Method: lvs.NAT},
					},
				}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join("testdata", tt.file)
			got, err := Load(path)
			if err != nil {
				t.Fatalf("Load(%q): %v", path, err)
			}
			tt.want.File = path
			// None of these files sets [connections] or these sysctls.
			tt.want.Sysctl.ExpireNodestConn = defaults.ExpireNodestConn
			tt.want.Connections = Connections{Max: defaults.MaxConnections, ReserveEstablished: defaults.ReserveEstablished,
				SourcePrefixV4: defaults.SourcePrefixV4, SourcePrefixV6: defaults.SourcePrefixV6, CheckRST: defaults.CheckRST}
			tt.want.Timeouts.TCPTimeWait = defaults.TCPTimeWaitTimeout
			tt.want.Timeouts.TCPClose = defaults.TCPCloseTimeout
			if diff := cmp.Diff(tt.want, got, cmpOpts...); diff != "" {
				t.Errorf("Load(%q) mismatch (-want +got):\n%s", path, diff)
			}
		})
	}
}

// iface is the interface most error cases start with (lines 1 to 3).
var iface = []string{
	`[[interface]]`,
	`name = "lvttap0"`,
	`addresses = ["198.18.1.1/24", "198.18.2.1/24"]`,
}

// withIface returns the lines of iface followed by ls (so ls[0] is line 4).
func withIface(ls ...string) []byte { return lines(append(append([]string{}, iface...), ls...)...) }

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		data []byte
		// want holds a prefix of each error line, in order: at least
		// "FILE:LINE: KEY:", usually the start of the message too.
		want []string
	}{
		{
			name: "syntax error",
			data: lines(`[[interface]]`, `name = `, `addresses = ["198.18.1.1/24"]`),
			want: []string{"t.toml:2: invalid TOML: "},
		},
		{
			name: "key defined twice",
			data: lines(`[[interface]]`, `name = "lvttap0"`, `name = "lvttap1"`),
			want: []string{"t.toml:3: invalid TOML: Key 'interface.name' has already been defined"},
		},
		{
			name: "no interface",
			data: lines(`[timeouts]`, `tcp = "1h"`),
			want: []string{"t.toml: interface: at least one [[interface]] is required"},
		},
		{
			name: "unknown table with suggestion",
			data: withIface(`[timeout]`, `tcp = 5`),
			want: []string{"t.toml:4: timeout: unknown key; did you mean timeouts?"},
		},
		{
			name: "unknown key lists the valid ones",
			data: withIface(`colour = "blue"`),
			want: []string{"t.toml:4: interface[0].colour: unknown key; valid keys here: addresses, bridge, create, mac, mtu, name, offload, on_loss, persist, queues, route, sender, type"},
		},
		{
			name: "keys are case-sensitive",
			data: withIface(`MTU = 1400`),
			want: []string{"t.toml:4: interface[0].MTU: unknown key; did you mean mtu?"},
		},
		{
			name: "dotted unknown key is reported once, at its outermost key",
			data: withIface(`colour.name = "blue"`, `colour.code = 4`),
			want: []string{"t.toml:4: interface[0].colour: unknown key; valid keys here: "},
		},
		{
			name: "unknown key in an inline table that is not the last",
			data: lines(
				`interface = [`,
				`  { name = "lvttap0", addresses = ["198.18.1.1/24"], wieght = 1 },`,
				`  { name = "lvttap1", addresses = ["198.18.2.1/24"] },`,
				`]`,
			),
			want: []string{"t.toml:2: interface[0].wieght: unknown key; valid keys here: "},
		},
		{
			name: "table for a value",
			data: withIface(`mtu = { value = 1500 }`),
			want: []string{
				"t.toml:4: interface[0].mtu: is a table, want an integer",
			},
		},
		{
			name: "table for an array of tables",
			data: lines(`[interface]`, `name = "lvttap0"`),
			want: []string{"t.toml:1: interface: must be an array of tables ([[interface]]), not a table"},
		},
		{
			name: "value for a table",
			data: lines(`timeouts = 5`, iface[0], iface[1], iface[2]),
			want: []string{"t.toml:1: timeouts: must be a table ([timeouts]), not an integer"},
		},
		{
			name: "value in an array of tables",
			data: lines(`interface = [{ name = "lvttap0", addresses = ["198.18.1.1/24"] },`, `  "lvttap1"]`),
			want: []string{"t.toml:2: interface[1]: must be a table, not a string"},
		},
		{
			name: "wrong types",
			data: withIface(`mtu = "1500"`, `create = 1`, `[[virtual_server]]`, `protocol = "tcp"`, `address = "198.18.1.100"`, `port = 80.0`),
			want: []string{
				`t.toml:4: interface[0].mtu: "1500" is a string, want an integer`,
				`t.toml:5: interface[0].create: 1 is an integer, want true or false`,
				`t.toml:9: virtual_server[0].port: 80 is a float, want an integer`,
			},
		},
		{
			name: "missing keys point at their table",
			data: lines(`[[interface]]`, `type = "tap"`, ``, `[[virtual_server]]`, `port = 80`),
			want: []string{
				"t.toml:1: interface[0].name: required key is missing",
				"t.toml:1: interface[0].addresses: required key is missing",
				"t.toml:4: virtual_server[0].protocol: required key is missing",
				"t.toml:4: virtual_server[0].address: required key is missing",
			},
		},
		{
			name: "bad timeouts",
			data: withIface(`[timeouts]`, `tcp = "15x"`, `tcp_fin = "1500ms"`, `udp = 0`),
			want: []string{
				`t.toml:5: timeouts.tcp: "15x" is not a duration`,
				`t.toml:6: timeouts.tcp_fin: "1500ms" is not a whole number of seconds`,
				`t.toml:7: timeouts.udp: 0 is out of range 1..2073600 (seconds)`,
			},
		},
		{
			name: "timeouts out of range",
			data: withIface(`[timeouts]`, `tcp = "0s"`, `tcp_fin = -1`, `udp = "1000h"`),
			want: []string{
				`t.toml:5: timeouts.tcp: "0s" is out of range 1s..576h0m0s`,
				`t.toml:6: timeouts.tcp_fin: -1 is out of range 1..2073600 (seconds)`,
				`t.toml:7: timeouts.udp: "1000h" is out of range 1s..576h0m0s`,
			},
		},
		{
			name: "bad interface values",
			data: lines(
				`[[interface]]`,
				`name = "lvttap0-too-long"`,
				`type = "tup"`,
				`mtu = 65536`,
				`queues = 17`,
				`mac = "01:00:5e:00:00:01"`,
				`addresses = ["198.18.1.1", "224.0.0.1/4", "nonsense"]`,
			),
			want: []string{
				`t.toml:2: interface[0].name: "lvttap0-too-long" is not a valid interface name: 16 bytes long, the limit is 15`,
				`t.toml:3: interface[0].type: "tup" is not a link type; valid: tap (L2, Ethernet), tun (L3, IP only)`,
				`t.toml:4: interface[0].mtu: 65536 is out of range 576..65535`,
				`t.toml:5: interface[0].queues: 17 is out of range 1..16`,
				`t.toml:6: interface[0].mac: "01:00:5e:00:00:01" is a multicast MAC`,
				`t.toml:7: interface[0].addresses[0]: "198.18.1.1" has no prefix length; write it as "198.18.1.1/24"`,
				`t.toml:7: interface[0].addresses[1]: "224.0.0.1/4" is a multicast address`,
				`t.toml:7: interface[0].addresses[2]: "nonsense" is not an address with a prefix length`,
			},
		},
		{
			name: "names with slash, colon, space",
			data: lines(
				`[[interface]]`, `name = "lvt/0"`, `addresses = ["198.18.1.1/24"]`,
				`[[interface]]`, `name = "lvt:0"`, `addresses = ["198.18.2.1/24"]`,
				`[[interface]]`, `name = "lvt 0"`, `addresses = ["198.18.3.1/24"]`,
				`[[interface]]`, `name = ".."`, `addresses = ["198.18.4.1/24"]`,
			),
			want: []string{
				`t.toml:2: interface[0].name: "lvt/0" is not a valid interface name: contains '/'`,
				`t.toml:5: interface[1].name: "lvt:0" is not a valid interface name: contains ':'`,
				`t.toml:8: interface[2].name: "lvt 0" is not a valid interface name: contains white space`,
				`t.toml:11: interface[3].name: ".." is not a valid interface name: reserved`,
			},
		},
		{
			name: "IPv6 needs an MTU of 1280",
			data: lines(`[[interface]]`, `name = "lvttap0"`, `mtu = 1000`, `addresses = ["198.18.1.1/24", "2001:2::1/64"]`),
			want: []string{"t.toml:3: interface[0].mtu: 1000 is below 1280, the minimum MTU of IPv6, and the interface has address 2001:2::1/64"},
		},
		{
			name: "mac on a tun",
			data: lines(`[[interface]]`, `name = "lvttun0"`, `type = "tun"`, `mac = "02:00:5e:00:53:01"`, `addresses = ["198.18.1.1/24"]`),
			want: []string{`t.toml:4: interface[0].mac: "02:00:5e:00:53:01": a tun interface has no MAC`},
		},
		{
			name: "duplicate interface names, addresses and MACs",
			data: lines(
				`[[interface]]`, `name = "lvttap0"`, `mac = "02:00:5e:00:53:01"`, `addresses = ["198.18.1.1/24"]`,
				`[[interface]]`, `name = "lvttap0"`, `mac = "02:00:5e:00:53:01"`, `addresses = ["198.18.2.1/24", "198.18.1.1/16"]`,
			),
			want: []string{
				`t.toml:6: interface[1].name: "lvttap0" is already the name of interface[0]`,
				`t.toml:7: interface[1].mac: "02:00:5e:00:53:01" is already the MAC of interface[0]`,
				`t.toml:8: interface[1].addresses[1]: 198.18.1.1 is already a director address (interface[0].addresses[0])`,
			},
		},
		{
			name: "routes",
			data: withIface(
				`[[interface.route]]`, `destination = "198.18.9.5/24"`, `gateway = "198.18.9.1"`,
				`[[interface.route]]`, `destination = "2001:2::/48"`, `gateway = "198.18.1.254"`,
				`[[interface.route]]`, `destination = "0.0.0.0/0"`, `gateway = "198.18.1.1"`,
				`[[interface.route]]`, `destination = "0.0.0.0/0"`,
				`[[interface.route]]`, `gateway = "198.18.1.254"`,
			),
			want: []string{
				`t.toml:5: interface[0].route[0].destination: "198.18.9.5/24" has host bits set; did you mean "198.18.9.0/24"?`,
				`t.toml:6: interface[0].route[0].gateway: 198.18.9.1 is not on-link: it is in no prefix of interface lvttap0 (198.18.1.1/24, 198.18.2.1/24)`,
				`t.toml:9: interface[0].route[1].gateway: 198.18.1.254 is IPv4 but the destination 2001:2::/48 is IPv6`,
				`t.toml:12: interface[0].route[2].gateway: 198.18.1.1 is an address of this interface, not a neighbour`,
				`t.toml:14: interface[0].route[3].destination: "0.0.0.0/0" is already the destination of interface[0].route[2]`,
				`t.toml:15: interface[0].route[4].destination: required key is missing`,
			},
		},
		{
			name: "unknown choices list the valid ones",
			data: withIface(
				`[[virtual_server]]`, `protocol = "sctp"`, `address = "198.18.1.100"`, `port = 80`,
				`scheduler = "wrrr"`, `method = "masq"`, `interface = "lvttap1"`,
				`  [[virtual_server.real_server]]`, `  address = "198.18.2.11"`, `  method = "gate"`,
			),
			want: []string{
				`t.toml:5: virtual_server[0].protocol: "sctp" is not a protocol; valid: tcp, udp`,
				`t.toml:8: virtual_server[0].scheduler: "wrrr" is not a known scheduler; valid: dh, fo, lblc, lblcr, lc, maglev, mh, nq, ovf, rr, sed, sh, twos, wlc, wrr`,
				`t.toml:9: virtual_server[0].method: "masq" is not a forwarding method; valid: nat (ipvsadm -m), dr (-g), tun (-i)`,
				`t.toml:10: virtual_server[0].interface: "lvttap1" is not the name of an [[interface]]; defined: lvttap0`,
				`t.toml:13: virtual_server[0].real_server[0].method: "gate" is not a forwarding method; valid: nat (ipvsadm -m), dr (-g), tun (-i)`,
			},
		},
		{
			name: "scheduler flags",
			data: withIface(
				`[[virtual_server]]`, `protocol = "tcp"`, `address = "198.18.1.100"`, `port = 80`, `scheduler = "sh"`,
				`scheduler_flags = ["sh-port", "mh-port", "sh-port", "flag-1", 7]`,
			),
			want: []string{
				`t.toml:9: virtual_server[0].scheduler_flags[4]: 7 is an integer, want a string`,
				`t.toml:9: virtual_server[0].scheduler_flags[1]: "mh-port" applies to scheduler mh only, and this service uses sh`,
				`t.toml:9: virtual_server[0].scheduler_flags[2]: "sh-port" is given twice`,
				`t.toml:9: virtual_server[0].scheduler_flags[3]: "flag-1" is not a scheduler flag`,
			},
		},
		{
			name: "bad VIP and ports",
			data: withIface(
				`[[virtual_server]]`, `protocol = "tcp"`, `address = "198.18.1.1"`, `port = 0`,
				`[[virtual_server]]`, `protocol = "udp"`, `address = "198.18.1.100/32"`, `port = 65536`,
				`[[virtual_server]]`, `protocol = "udp"`, `address = "fe80::1%lvttap0"`, `port = 53`,
			),
			want: []string{
				`t.toml:6: virtual_server[0].address: 198.18.1.1 is a director address (interface[0].addresses[0]); the VIP must be an address of its own`,
				`t.toml:7: virtual_server[0].port: 0 (all ports) needs persistence_timeout`,
				`t.toml:10: virtual_server[1].address: "198.18.1.100/32" is not an address: write it without prefix length`,
				`t.toml:11: virtual_server[1].port: 65536 is out of range 0..65535`,
				`t.toml:14: virtual_server[2].address: "fe80::1%lvttap0" has a zone`,
			},
		},
		{
			name: "duplicate services, names and real servers",
			data: withIface(
				`[[virtual_server]]`, `name = "web"`, `protocol = "tcp"`, `address = "198.18.1.100"`, `port = 80`,
				`  [[virtual_server.real_server]]`, `  address = "198.18.2.11"`,
				`  [[virtual_server.real_server]]`, `  address = "198.18.2.11"`, `  port = 80`,
				`[[virtual_server]]`, `name = "web"`, `protocol = "tcp"`, `address = "198.18.1.100"`, `port = 80`,
				`[[virtual_server]]`, `protocol = "udp"`, `address = "198.18.1.100"`, `port = 80`,
			),
			want: []string{
				`t.toml:11: virtual_server[0].real_server[1]: 198.18.2.11:80 is already defined by virtual_server[0].real_server[0]`,
				`t.toml:14: virtual_server[1]: tcp 198.18.1.100:80 is already defined by virtual_server[0]`,
				`t.toml:15: virtual_server[1].name: "web" is already the name of virtual_server[0]`,
			},
		},
		{
			name: "port mapping needs nat",
			data: withIface(
				`[[virtual_server]]`, `protocol = "tcp"`, `address = "198.18.1.100"`, `port = 80`,
				`  [[virtual_server.real_server]]`, `  address = "198.18.1.11"`, `  port = 8080`,
				`  [[virtual_server.real_server]]`, `  address = "198.18.1.12"`, `  port = 8080`, `  method = "tun"`,
				`  [[virtual_server.real_server]]`, `  address = "198.18.1.13"`, `  port = 8080`, `  method = "nat"`,
			),
			want: []string{
				`t.toml:10: virtual_server[0].real_server[0].port: 8080: port mapping (virtual port 80) is not possible with method dr (the default method); remove port or use nat`,
				`t.toml:13: virtual_server[0].real_server[1].port: 8080: port mapping (virtual port 80) is not possible with method tun; remove port or use nat`,
			},
		},
		{
			name: "dr needs an L2 link",
			data: lines(
				`[[interface]]`, `name = "lvttun0"`, `type = "tun"`, `addresses = ["198.18.1.1/24"]`,
				`[[virtual_server]]`, `protocol = "tcp"`, `address = "198.18.1.100"`, `port = 80`,
				`  [[virtual_server.real_server]]`, `  address = "198.18.1.11"`,
				`  [[virtual_server.real_server]]`, `  address = "198.18.1.12"`,
				`[[virtual_server]]`, `protocol = "tcp"`, `address = "198.18.1.101"`, `port = 80`, `method = "dr"`,
				`  [[virtual_server.real_server]]`, `  address = "198.18.1.11"`,
				`  [[virtual_server.real_server]]`, `  address = "198.18.1.12"`, `  method = "dr"`,
				`  [[virtual_server.real_server]]`, `  address = "198.18.1.13"`, `  method = "tun"`,
			),
			want: []string{
				// Inherited: blamed once, on the service; the default has no
				// key, so its header.
				`t.toml:5: virtual_server[0].method: dr (the default method) needs an L2 link, but interface lvttun0 is type tun; use nat or tun`,
				`t.toml:17: virtual_server[1].method: dr needs an L2 link, but interface lvttun0 is type tun`,
				`t.toml:22: virtual_server[1].real_server[1].method: dr needs an L2 link, but interface lvttun0 is type tun`,
			},
		},
		{
			name: "address families",
			data: withIface(
				`[[virtual_server]]`, `protocol = "tcp"`, `address = "198.18.1.100"`, `port = 80`, `method = "nat"`,
				`  [[virtual_server.real_server]]`, `  address = "2001:2::11"`,
				`  [[virtual_server.real_server]]`, `  address = "2001:2::12"`, `  method = "tun"`,
			),
			want: []string{
				`t.toml:10: virtual_server[0].real_server[0].address: 2001:2::11 is IPv6 but the VIP 198.18.1.100 is IPv4; method nat needs one family`,
				// TUN may cross families, but needs a director address of
				// the real server's.
				`t.toml:12: virtual_server[0].real_server[1].address: 2001:2::12 is IPv6 but interface lvttap0 has no IPv6 address (198.18.1.1/24, 198.18.2.1/24) to send to it from`,
			},
		},
		{
			name: "real server is the director or the VIP",
			data: withIface(
				`[[virtual_server]]`, `protocol = "tcp"`, `address = "198.18.1.100"`, `port = 80`,
				`  [[virtual_server.real_server]]`, `  address = "198.18.2.1"`,
				`  [[virtual_server.real_server]]`, `  address = "198.18.1.100"`,
			),
			want: []string{
				`t.toml:9: virtual_server[0].real_server[0].address: 198.18.2.1 is a director address (interface[0].addresses[1]), not a real server`,
				`t.toml:11: virtual_server[0].real_server[1].address: 198.18.1.100 is the VIP of this service`,
			},
		},
		{
			name: "weights and thresholds",
			data: withIface(
				`[[virtual_server]]`, `protocol = "tcp"`, `address = "198.18.1.100"`, `port = 80`,
				`  [[virtual_server.real_server]]`, `  address = "198.18.1.11"`, `  weight = 65536`,
				`  [[virtual_server.real_server]]`, `  address = "198.18.1.12"`, `  weight = -3`,
				`  [[virtual_server.real_server]]`, `  address = "198.18.1.13"`, `  upper_threshold = 10`, `  lower_threshold = 20`,
				`  [[virtual_server.real_server]]`, `  address = "198.18.1.14"`, `  upper_threshold = 70000`,
			),
			want: []string{
				`t.toml:10: virtual_server[0].real_server[0].weight: 65536 is out of range 0..65535`,
				`t.toml:13: virtual_server[0].real_server[1].weight: -3 is out of range 0..65535`,
				`t.toml:17: virtual_server[0].real_server[2].lower_threshold: 20 is above upper_threshold 10`,
				`t.toml:20: virtual_server[0].real_server[3].upper_threshold: 70000 is out of range 0..65535`,
			},
		},
		{
			name: "packet interface: no create, no mac",
			data: lines(`[[interface]]`, `name = "lvtveth0"`, `type = "packet"`, `create = true`,
				`mac = "02:00:5e:00:53:01"`, `addresses = ["198.18.1.1/24"]`),
			want: []string{
				`t.toml:4: interface[0].create: true: a packet interface attaches to an interface that exists`,
				`t.toml:5: interface[0].mac: "02:00:5e:00:53:01": a packet interface uses the interface's own MAC`,
			},
		},
		{
			name: "interface required with several",
			data: withIface(
				`[[interface]]`, `name = "lvttap1"`, `addresses = ["198.18.3.1/24"]`,
				`[[virtual_server]]`, `protocol = "tcp"`, `address = "198.18.1.100"`, `port = 80`,
			),
			want: []string{`t.toml:7: virtual_server[0].interface: required key is missing: there is more than one [[interface]]`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse("t.toml", tt.data)
			if err == nil {
				t.Fatalf("Parse succeeded, want errors; got %+v", cfg)
			}
			var list ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("Parse error is %T, want ErrorList: %v", err, err)
			}
			if diff := cmp.Diff(tt.want, prefixes(list, tt.want)); diff != "" {
				t.Errorf("errors mismatch (-want +got):\n%s\nfull errors:\n%v", diff, err)
			}
		})
	}
}

// prefixes returns each error of list as a line, cut to the length of the
// matching want line when it starts with it, so that cmp.Diff shows both
// missing and unexpected errors.
func prefixes(list ErrorList, want []string) []string {
	got := make([]string, len(list))
	for i, e := range list {
		got[i] = e.Error()
		if i < len(want) && strings.HasPrefix(got[i], want[i]) {
			got[i] = want[i]
		}
	}
	return got
}

// TestExactLineInArrayOfTables is why the go-toml index exists: a problem in
// an entry of an array of tables that is not the last one is reported on
// that entry's line (BurntSushi's MetaData would give the last entry's).
func TestExactLineInArrayOfTables(t *testing.T) {
	data := withIface(
		`[[virtual_server]]`, // 4
		`protocol = "tcp"`,
		`address = "198.18.1.100"`,
		`port = 80`,
		`  [[virtual_server.real_server]]`, // 8
		`  address = "198.18.1.11"`,
		`  weight = -3`, // 10: bad, first of three
		`  [[virtual_server.real_server]]`,
		`  address = "198.18.1.12"`,
		`  wieght = 3`, // 13: typo, second of three
		`  [[virtual_server.real_server]]`,
		`  address = "198.18.1.13"`,
		`  weight = 1`, // 16
		`[[virtual_server]]`,
		`protocol = "udp"`,
		`address = "198.18.1.100"`,
		`port = 53`,
		`  [[virtual_server.real_server]]`,
		`  address = "198.18.1.11"`,
		`  weight = 2`, // 23
	)
	_, err := Parse("lvsd.toml", data)
	want := ErrorList{
		{File: "lvsd.toml", Line: 10, Key: "virtual_server[0].real_server[0].weight", Msg: "-3 is out of range 0..65535"},
		{File: "lvsd.toml", Line: 13, Key: "virtual_server[0].real_server[1].wieght", Msg: "unknown key; did you mean weight?"},
	}
	var got ErrorList
	if !errors.As(err, &got) {
		t.Fatalf("Parse error = %v, want an ErrorList", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("errors mismatch (-want +got):\n%s", diff)
	}
	if s, w := got.Error(), "lvsd.toml:10: virtual_server[0].real_server[0].weight: -3 is out of range 0..65535\n"+
		"lvsd.toml:13: virtual_server[0].real_server[1].wieght: unknown key; did you mean weight?"; s != w {
		t.Errorf("Error() = %q, want %q", s, w)
	}
}

func TestIndexLines(t *testing.T) {
	data := lines(
		`a.b = 1`,                   // 1
		`[[t]]`,                     // 2
		`x = [`,                     // 3
		`  "p",`,                    // 4
		`  { y = 2 },`,              // 5
		`]`,                         // 6
		`[[t]]`,                     // 7
		`[t.u]`,                     // 8
		`"q.r" = 3`,                 // 9
		`[[t.v]]`,                   // 10
		`[[t]]`,                     // 11
		`[[t.v]]`,                   // 12
		`[[t.v]]`,                   // 13
		`z = { w = [[1], [2, 3]] }`, // 14
	)
	x, err := buildIndex(data)
	if err != nil {
		t.Fatal(err)
	}
	got := make(map[string]int)
	for _, e := range x.entries {
		got[e.key] = e.line
	}
	want := map[string]int{
		"a": 1, "a.b": 1,
		"t": 2, "t[0]": 2, "t[0].x": 3, "t[0].x[0]": 4, "t[0].x[1]": 5, "t[0].x[1].y": 5,
		"t[1]": 7, "t[1].u": 8, `t[1].u."q.r"`: 9, "t[1].v": 10, "t[1].v[0]": 10,
		"t[2]": 11, "t[2].v": 12, "t[2].v[0]": 12, "t[2].v[1]": 13,
		"t[2].v[1].z": 14, "t[2].v[1].z.w": 14, "t[2].v[1].z.w[0]": 14, "t[2].v[1].z.w[0][0]": 14,
		"t[2].v[1].z.w[1]": 14, "t[2].v[1].z.w[1][0]": 14, "t[2].v[1].z.w[1][1]": 14,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("index mismatch (-want +got):\n%s", diff)
	}
	if l := x.lookup("t[2].v[1].missing"); l != 13 {
		t.Errorf("lookup of a missing key = line %d, want its table's 13", l)
	}
}

func TestErrorFormat(t *testing.T) {
	tests := []struct {
		name string
		err  *Error
		want string
	}{
		{name: "full", err: &Error{File: "f", Line: 3, Key: "k", Msg: "m"}, want: "f:3: k: m"},
		{name: "no line", err: &Error{File: "f", Key: "k", Msg: "m"}, want: "f: k: m"},
		{name: "no key", err: &Error{File: "f", Line: 3, Msg: "m"}, want: "f:3: m"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, tt.err.Error()); diff != "" {
				t.Errorf("Error() mismatch (-want +got):\n%s", diff)
			}
		})
	}

	_, err := Parse("t.toml", lines(`[[interface]]`, `name = 5`, `addresses = 6`))
	var one *Error
	if !errors.As(err, &one) || one.Line != 2 || one.Key != "interface[0].name" {
		t.Errorf("errors.As(*Error) = %+v, want the first problem, interface[0].name on line 2", one)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "absent.toml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load of a missing file: %v, want fs.ErrNotExist", err)
	}
}

func TestDefaultMAC(t *testing.T) {
	a, b := DefaultMAC("lvttap0"), DefaultMAC("lvttap1")
	if a != DefaultMAC("lvttap0") {
		t.Errorf("DefaultMAC is not stable")
	}
	if a == b {
		t.Errorf("DefaultMAC(lvttap0) == DefaultMAC(lvttap1) == %x", a)
	}
	for _, m := range [][6]byte{a, b, DefaultMAC("")} {
		if m[0]&0x01 != 0 || m[0]&0x02 == 0 {
			t.Errorf("DefaultMAC gave %x, want unicast and locally administered", m)
		}
	}
	// The derivation is a contract (deployed MACs depend on it).
	if want := [6]byte{0xd6, 0x03, 0xb2, 0xe1, 0x9c, 0x3b}; a != want {
		t.Errorf("DefaultMAC(lvttap0) = %x, want %x: changing the derivation changes every director's MAC", a, want)
	}
}

func TestDefaultValues(t *testing.T) {
	d := DefaultValues()
	d.MTU = 9000 // a copy: must not change what Parse does
	cfg, err := Parse("t.toml", lines(iface...))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Interfaces[0].MTU != 1500 || DefaultValues().MTU != 1500 {
		t.Errorf("DefaultValues is not a copy")
	}
}

func TestTestdataSeedsAreValid(t *testing.T) {
	files, err := filepath.Glob("testdata/*.toml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	for _, f := range files {
		_, err := Load(f)
		if bad := strings.HasPrefix(filepath.Base(f), "errors"); bad != (err != nil) {
			t.Errorf("Load(%q) = %v", f, err)
		}
	}
	if _, err := os.Stat("testdata/errors.golden"); err != nil {
		t.Errorf("errors.golden: %v", err)
	}
}

func TestFwmark(t *testing.T) {
	const head = `
[[interface]]
name = "lvt0"
addresses = ["192.0.2.1/24"]
`
	svc := func(port, extra string) string {
		return "[[virtual_server]]\nprotocol = \"tcp\"\naddress = \"192.0.2.100\"\n" + port + "\n" + extra + "\n"
	}
	tests := []struct {
		name  string
		body  string
		marks []uint32
		err   string
	}{
		{name: "auto in file order", body: svc("ports = [80, 443]", "") + svc("ports = [25, 587]", ""), marks: []uint32{1, 2}},
		{name: "given marks are skipped", body: svc("ports = [80, 443]", "") + svc("ports = [25, 587]", "fwmark = 1"), marks: []uint32{2, 1}},
		{name: "one port has none", body: svc("port = 80", ""), marks: []uint32{0}},
		{name: "needs ports", body: svc("port = 80", "fwmark = 3"), err: "virtual_server[0].fwmark: applies to a service over a list of ports"},
		{name: "unique", body: svc("ports = [80, 443]", "fwmark = 7") + svc("ports = [25, 587]", "fwmark = 7"), err: "virtual_server[1].fwmark: 7 is already the mark of virtual_server[0]"},
		{name: "range", body: svc("ports = [80, 443]", "fwmark = 0"), err: "virtual_server[0].fwmark"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse("t.toml", []byte(head+tt.body))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []uint32
			for _, s := range cfg.Services {
				got = append(got, s.Mark)
			}
			if diff := cmp.Diff(tt.marks, got); diff != "" {
				t.Errorf("marks (-want +got):\n%s", diff)
			}
		})
	}
}
