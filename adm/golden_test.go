package adm

import (
	"bytes"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/lvsd/lvsd/config"
	"github.com/lvsd/lvsd/lvs"
)

var (
	update     = flag.Bool("update", false, "rewrite the golden files (with -ipvsadm: from ipvsadm's own output)")
	ipvsadmBin = flag.String("ipvsadm", "", "ipvsadm 1.31 built over testdata/ipvsadm-shim; with -update, the goldens are its output")
)

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
func ip(s string) netip.Addr     { return netip.MustParseAddr(s) }

func svc(proto lvs.Proto, addr string, port uint16, sched string, dests ...Dest) Service {
	return Service{Service: config.Service{Proto: proto, Addr: ip(addr), Port: port, Scheduler: sched, Interface: "lvt0"}, Dests: dests}
}

func dest(addr string, port uint16, m lvs.Method, w int32, active, inact uint32) Dest {
	return Dest{Real: config.Real{Addr: ip(addr), Port: port, Method: m, Weight: w}, ActiveConns: active, InactConns: inact}
}

func persist(s Service, secs, mask int) Service {
	s.Persistence = config.Persistence{Timeout: time.Duration(secs) * time.Second, Netmask: mask}
	return s
}

func mark(s Service, m uint32, ports ...uint16) Service {
	s.Mark, s.Ports, s.Port = m, ports, ports[0]
	return s
}

func counted(c Counters, d Dest) Dest { d.Stats, d.Rates = c, c; return d }

// big spans print_largenum's ranges: plain, K, M, G, T and their edges.
var big = []uint64{0, 99999999, 100000000, 999999999, 1000000000, 99999999999, 100000000000, 99999999999999, 100000000000000, 18446744073709551615}

type goldenTable struct {
	name  string
	t     Table
	conns []Conn
	// services named by -L -t/-u/-f in the goldens.
	lookups [][]string
}

func goldenTables() []goldenTable {
	th := dest("192.0.2.33", 80, lvs.DR, 3, 7, 2)
	th.UpperThreshold, th.LowerThreshold, th.PersistConns = 100, 50, 4
	tun := dest("192.0.2.41", 443, lvs.TUN, 5, 1, 0)
	sh := persist(svc(lvs.TCP, "192.0.2.100", 443, "sh", tun, dest("192.0.2.42", 443, lvs.TUN, 5, 0, 0)), 600, 24)
	sh.SchedFlags = []string{"sh-fallback", "sh-port"}
	ops := svc(lvs.UDP, "192.0.2.100", 53, "rr", dest("192.0.2.51", 53, lvs.DR, 1, 0, 9), dest("192.0.2.52", 53, lvs.DR, 1, 0, 8))
	ops.OnePacket = true

	cnt := svc(lvs.TCP, "192.0.2.200", 80, "wlc")
	cnt.Stats = Counters{big[1], big[2], big[3], big[4], big[5]}
	cnt.Rates = Counters{big[6], big[7], big[8], big[9], big[0]}
	cnt2 := svc(lvs.UDP, "192.0.2.200", 53, "rr")
	cnt2.Stats = Counters{12, 3456, 78901234, 567890123456, 1}
	cnt2.Rates = Counters{1, 22, 333, 4444, 55555}
	for i := range 5 {
		cnt.Dests = append(cnt.Dests, counted(Counters{big[i], big[i+1], big[i+2], big[i+3], big[i+4]}, dest(fmt.Sprintf("192.0.2.%d", 210+i), 80, lvs.NAT, 1, uint32(i), 0)))
		cnt2.Dests = append(cnt2.Dests, counted(Counters{big[9-i], big[8-i], big[7-i], big[6-i], big[5-i]}, dest(fmt.Sprintf("192.0.2.%d", 220+i), 53, lvs.DR, 1, 0, uint32(i))))
	}

	return []goldenTable{{
		name: "nat",
		t: Table{Services: []Service{
			svc(lvs.TCP, "192.0.2.100", 80, "wrr",
				dest("192.0.2.22", 8080, lvs.NAT, 1, 0, 3),
				dest("192.0.2.21", 8080, lvs.NAT, 2, 12, 1),
				dest("10.0.0.5", 8080, lvs.NAT, 0, 1, 0), // more than 2^31 below: ipvsadm sorts it last
				dest("192.0.2.21", 80, lvs.NAT, 65535, 0, 0)),
			ops,
			svc(lvs.TCP, "192.0.2.99", 443, "lc", dest("192.0.2.61", 443, lvs.DR, 1, 2, 2)),
			svc(lvs.TCP, "203.0.113.7", 80, "wlc"),
			svc(lvs.TCP, "10.1.2.3", 8080, "rr", dest("10.1.2.10", 8080, lvs.DR, 1, 0, 0)),
		}, Timeouts: config.Timeouts{TCP: 900 * time.Second, TCPFin: 120 * time.Second, UDP: 300 * time.Second}},
		conns:   conns(),
		lookups: [][]string{{"-t", "192.0.2.100:80"}, {"-u", "192.0.2.100:53"}},
	}, {
		name: "persist",
		t: Table{Services: []Service{
			sh,
			persist(svc(lvs.TCP, "192.0.2.101", 0, "wlc", dest("192.0.2.31", 0, lvs.DR, 1, 0, 0)), 300, 32),
			mark(persist(svc(lvs.TCP, "192.0.2.110", 80, "wrr", th, dest("192.0.2.34", 0, lvs.DR, 1, 0, 0)), 300, 24), 1, 80, 443),
			mark(persist(svc(lvs.TCP, "2001:db8::110", 80, "rr", dest("2001:db8::34", 0, lvs.DR, 1, 0, 0)), 1800, 64), 2, 80, 443),
			mark(svc(lvs.UDP, "192.0.2.111", 500, "sed", dest("192.0.2.35", 0, lvs.DR, 2, 0, 1)), 100000, 500, 4500),
			persist(svc(lvs.UDP, "192.0.2.112", 1812, "lblc", dest("192.0.2.36", 1812, lvs.DR, 1, 0, 0)), 86400, 16),
		}, Timeouts: config.Timeouts{TCP: 7200 * time.Second, TCPFin: 30 * time.Second, UDP: 10 * time.Second}},
		lookups: [][]string{{"-f", "1"}, {"-f", "2", "-6"}},
	}, {
		name: "ipv6",
		t: Table{Services: []Service{
			persist(svc(lvs.TCP, "2001:db8::100", 80, "wrr",
				dest("2001:db8::21", 80, lvs.DR, 1, 0, 0),
				dest("2001:db8:0:ffff:ffff:ffff:ffff:fffe", 8080, lvs.NAT, 3, 4, 5),
				dest("2001:db8::20", 8080, lvs.NAT, 2, 1, 1)), 300, 64),
			svc(lvs.UDP, "2001:db8::100", 53, "rr", dest("2001:db8::21", 53, lvs.DR, 1, 0, 0)),
			svc(lvs.TCP, "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", 65535, "lc", dest("2001:db8:ffff:ffff:ffff:ffff:ffff:fffe", 65535, lvs.NAT, 1, 0, 0)),
			svc(lvs.TCP, "255.255.255.254", 65535, "nq", dest("255.255.255.253", 65535, lvs.DR, 1, 0, 0)),
		}, Timeouts: config.Timeouts{TCP: 900 * time.Second, TCPFin: 120 * time.Second, UDP: 300 * time.Second}},
		lookups: [][]string{{"-t", "[2001:db8::100]:80"}},
	}, {
		name: "counters",
		t:    Table{Services: []Service{cnt, cnt2}, Timeouts: config.Timeouts{TCP: 900 * time.Second, TCPFin: 120 * time.Second, UDP: 300 * time.Second}},
	}}
}

// conns holds a connection in every TCP state and a few others.
func conns() []Conn {
	states := []string{"NONE", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT", "TIME_WAIT", "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "SYNACK"}
	var cs []Conn
	for i, st := range states {
		cs = append(cs, Conn{Proto: lvs.TCP, Client: ap(fmt.Sprintf("198.51.100.%d:%d", 10+i, 40000+i)), Virtual: ap("192.0.2.100:80"),
			Dest: ap("192.0.2.21:8080"), State: st, Expires: time.Duration(i*37) * time.Second})
	}
	cs = append(cs,
		Conn{Proto: lvs.UDP, Client: ap("198.51.100.50:5353"), Virtual: ap("192.0.2.100:53"), Dest: ap("192.0.2.51:53"), State: "UDP", Expires: 299 * time.Second},
		Conn{Proto: lvs.TCP, Client: ap("198.51.100.51:1"), Virtual: ap("192.0.2.100:80"), Dest: ap("192.0.2.22:8080"), State: "ESTABLISHED", Expires: 7199 * time.Second},
		Conn{Proto: lvs.TCP, Client: ap("[2001:db8:1::1]:40000"), Virtual: ap("[2001:db8::100]:80"), Dest: ap("[2001:db8::21]:80"), State: "ESTABLISHED", Expires: 900 * time.Second},
		Conn{Proto: lvs.TCP, Client: ap("198.51.100.52:0"), Virtual: ap("192.0.2.101:0"), Dest: ap("192.0.2.31:0"), State: "NONE", Expires: 300 * time.Second},
	)
	return cs
}

// goldenArgs are the listings compared, each with every table.
var goldenArgs = [][]string{
	{"-Ln"}, {"-l", "-n"}, {"-Ln", "--stats"}, {"-Ln", "--rate"}, {"-Ln", "--stats", "--exact"}, {"-Ln", "--rate", "--exact"},
	{"-Ln", "--stats", "--rate"}, {"-Ln", "--thresholds"}, {"-Ln", "--persistent-conn"}, {"-Ln", "--tun-info"},
	{"-Ln", "--nosort"}, {"-Ln", "--sort"}, {"-S", "-n"}, {"-L", "--timeout"}, {"-Lnc"}, {"-Lnc", "--persistent-conn"},
}

var nonWord = regexp.MustCompile(`[^A-Za-z0-9]+`)

func goldenName(table string, args []string) string {
	return table + "_" + strings.Trim(nonWord.ReplaceAllString(strings.Join(args, "_"), "_"), "_") + ".golden"
}

// TestGolden compares lvsd's listings with ipvsadm 1.31's, made by
// ipvsadm's own print code over the same tables (testdata/ipvsadm-shim).
func TestGolden(t *testing.T) {
	for _, gt := range goldenTables() {
		argsets := append([][]string(nil), goldenArgs...)
		for _, l := range gt.lookups {
			argsets = append(argsets, append([]string{"-Ln"}, l...), append([]string{"-Ln", "--stats"}, l...))
		}
		if *update && *ipvsadmBin != "" {
			writeFixture(t, gt)
		}
		for _, args := range argsets {
			name := goldenName(gt.name, args)
			t.Run(name, func(t *testing.T) {
				path := filepath.Join("testdata", name)
				if *update && *ipvsadmBin != "" {
					cmd := exec.Command(*ipvsadmBin, args...)
					cmd.Env = append(os.Environ(), "IPVS_FIXTURE="+filepath.Join("testdata", gt.name+".fixture"),
						"IPVS_CONN="+filepath.Join("testdata", gt.name+".conn"))
					out, err := cmd.Output()
					if err != nil {
						t.Fatalf("ipvsadm %v: %v", args, err)
					}
					if err := os.WriteFile(path, out, 0o644); err != nil {
						t.Fatal(err)
					}
				}
				want, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				got := render(t, &gt, args)
				if args[0] == "-S" {
					got = stripExtensions(got)
				}
				if diff := cmp.Diff(string(want), string(got)); diff != "" {
					t.Errorf("ipvsadm %s (-ipvsadm +lvsd):\n%s", strings.Join(args, " "), diff)
				}
			})
		}
	}
}

func render(t *testing.T, gt *goldenTable, args []string) []byte {
	t.Helper()
	c, err := (&Parser{}).Parse(args)
	if err != nil {
		t.Fatalf("parse %v: %v", args, err)
	}
	var b bytes.Buffer
	if err := (&Printer{}).Render(&b, c, &gt.t, gt.conns); err != nil {
		t.Fatalf("render %v: %v", args, err)
	}
	return b.Bytes()
}

// extension matches what lvsd adds to ipvsadm's -S rules.
var extension = regexp.MustCompile(` (--ports|--name|--interface|--slow-start|--maglev-size|-x|-y) \S+`)

// stripExtensions removes lvsd's additions from -S rules: what remains
// must be ipvsadm's rule, so that lvsd adds and never changes.
func stripExtensions(b []byte) []byte { return extension.ReplaceAll(b, nil) }

// writeFixture writes a table in the shim's format (fake.c) and its
// connections as /proc/net/ip_vs_conn shows them.
func writeFixture(t *testing.T, gt goldenTable) {
	var b strings.Builder
	for _, s := range gt.t.Services {
		afn, addr, port := 2, s.Addr.String(), s.Port
		if s.Addr.Is6() {
			afn = 10
		}
		if s.Mark != 0 {
			addr, port = "0.0.0.0", 0
			if afn == 10 {
				addr = "::"
			}
		}
		flags := 0
		if persistent(&s) {
			flags |= 1
		}
		if s.OnePacket {
			flags |= 4
		}
		for _, f := range s.SchedFlags {
			if strings.HasSuffix(f, "fallback") {
				flags |= 8
			} else {
				flags |= 16
			}
		}
		mask := "255.255.255.255"
		if afn == 10 {
			mask = "128"
		}
		if persistent(&s) {
			if afn == 10 {
				mask = fmt.Sprint(s.Persistence.Netmask)
			} else {
				mask = mask4(s.Persistence.Netmask)
			}
		}
		fmt.Fprintf(&b, "S %d %d %s %d %d %s %d %d %s - %s %s\n", afn, protoNum(s.Proto), addr, port, s.Mark, s.Scheduler, flags,
			int64(s.Persistence.Timeout.Seconds()), mask, counters(s.Stats), counters(s.Rates))
		for _, d := range s.Dests {
			dafn := 2
			if d.Addr.Is6() {
				dafn = 10
			}
			fwd := map[lvs.Method]int{lvs.NAT: 0, lvs.TUN: 2, lvs.DR: 3}[d.Method]
			fmt.Fprintf(&b, "D %d %s %d %d %d %d %d %d %d %d %s %s\n", dafn, d.Addr, d.Port, fwd, d.Weight, d.UpperThreshold, d.LowerThreshold,
				d.ActiveConns, d.InactConns, d.PersistConns, counters(d.Stats), counters(d.Rates))
		}
	}
	fmt.Fprintf(&b, "T %d %d %d\n", int64(gt.t.Timeouts.TCP.Seconds()), int64(gt.t.Timeouts.TCPFin.Seconds()), int64(gt.t.Timeouts.UDP.Seconds()))
	if err := os.WriteFile(filepath.Join("testdata", gt.name+".fixture"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	b.Reset()
	b.WriteString("Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData\n")
	for _, c := range gt.conns {
		fmt.Fprintf(&b, "%-3s %s %04X %s %04X %s %04X %-11s %7d\n", protoName(c.Proto),
			procAddr(c.Client.Addr()), c.Client.Port(), procAddr(c.Virtual.Addr()), c.Virtual.Port(),
			procAddr(c.Dest.Addr()), c.Dest.Port(), c.State, int64(c.Expires.Seconds()))
	}
	if err := os.WriteFile(filepath.Join("testdata", gt.name+".conn"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

func counters(c Counters) string {
	return fmt.Sprintf("%d %d %d %d %d", c.Conns, c.InPkts, c.OutPkts, c.InBytes, c.OutBytes)
}

// procAddr is the kernel's form in /proc/net/ip_vs_conn: %08X for IPv4,
// %pI6 (eight groups of four digits) for IPv6.
func procAddr(a netip.Addr) string {
	if a.Is4() {
		b := a.As4()
		return fmt.Sprintf("%08X", be32(b[:]))
	}
	b := a.As16()
	var g []string
	for i := 0; i < 16; i += 2 {
		g = append(g, fmt.Sprintf("%02x%02x", b[i], b[i+1]))
	}
	return strings.Join(g, ":")
}
