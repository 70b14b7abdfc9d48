package adm

import (
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"

	"github.com/lvsd/lvsd/config"
	"github.com/lvsd/lvsd/lvs"
)

// Format selects a listing, as ipvsadm's FMT_* flags do.
type Format uint16

// Listing formats. When several are set, the first in this order wins, as
// in ipvsadm: Rule, Stats, Rate, Thresholds, PersistentConn, TunInfo.
const (
	FmtNumeric        Format = 1 << iota // -n: no name lookups
	FmtRule                              // -S: rules for -R
	FmtStats                             // --stats
	FmtRate                              // --rate
	FmtThresholds                        // --thresholds
	FmtPersistentConn                    // --persistent-conn
	FmtNoSort                            // --nosort: table order
	FmtExact                             // --exact: numbers in full
	FmtTunInfo                           // --tun-info
	FmtLvsd                              // --lvsd: lvsd's own fields under each line
)

// Names turns addresses and ports into names for listings without -n, as
// ipvsadm's addr_to_host and port_to_service do; nil (or an empty answer)
// keeps the number.
type Names interface {
	Host(a netip.Addr) string
	Service(port uint16, proto lvs.Proto) string
}

// Printer prints listings. Its zero value prints numbers only.
type Printer struct {
	Names Names
	// MultiInterface makes -S name each service's interface (--interface),
	// which a director with one interface leaves out.
	MultiInterface bool
}

// ipvsVersion is the IPVS version lvsd behaves as; ipvsadm prints the
// kernel's in its first line.
const ipvsVersion = "1.2.1"

// addrPort is ipvsadm's addrport_to_anyname.
func (p *Printer) addrPort(a netip.Addr, port uint16, proto lvs.Proto, f Format) string {
	host, serv := a.String(), strconv.Itoa(int(port))
	if f&FmtNumeric == 0 && p.Names != nil {
		if h := p.Names.Host(a); h != "" {
			host = h
		}
		if s := p.Names.Service(port, proto); s != "" {
			serv = s
		}
	}
	if a.Is6() {
		host = "[" + host + "]"
	}
	// ipvsadm formats into a 60-byte buffer.
	s := host + ":" + serv
	if len(s) > 59 {
		s = s[:59]
	}
	return s
}

// WriteList prints the whole table as ipvsadm -L (or -S with FmtRule).
func (p *Printer) WriteList(w io.Writer, t *Table, f Format) {
	bw := &buf{}
	if f&FmtRule == 0 {
		size := t.Size
		if size == 0 {
			size = DefaultSize
		}
		bw.printf("IP Virtual Server version %s (size=%d)\n", ipvsVersion, size)
	}
	svcs := make([]*Service, len(t.Services))
	for i := range t.Services {
		svcs[i] = &t.Services[i]
	}
	if f&FmtNoSort == 0 {
		msort(svcs, cmpServices)
	}
	writeTitle(bw, f)
	for _, s := range svcs {
		p.writeService(bw, s, f)
	}
	w.Write(bw.b)
}

// WriteService prints one service as ipvsadm -L -t|-u|-f does.
func (p *Printer) WriteService(w io.Writer, s *Service, f Format) {
	bw := &buf{}
	writeTitle(bw, f)
	p.writeService(bw, s, f)
	w.Write(bw.b)
}

// WriteTimeout prints the timeouts as ipvsadm -L --timeout.
func WriteTimeout(w io.Writer, t *Table) {
	fmt.Fprintf(w, "Timeout (tcp tcpfin udp): %d %d %d\n",
		int64(t.Timeouts.TCP.Seconds()), int64(t.Timeouts.TCPFin.Seconds()), int64(t.Timeouts.UDP.Seconds()))
}

// WriteConns prints connections as ipvsadm -L -c.
func (p *Printer) WriteConns(w io.Writer, conns []Conn, f Format) {
	bw := &buf{}
	bw.printf("IPVS connection entries\n")
	if f&FmtPersistentConn != 0 {
		bw.printf("pro expire %-11s %-18s %-18s %-18s %-16s %s\n", "state", "source", "virtual", "destination", "pe name", "pe_data")
	} else {
		bw.printf("pro expire %-11s %-18s %-18s %s\n", "state", "source", "virtual", "destination")
	}
	for i := range conns {
		c := &conns[i]
		secs := int64(c.Expires.Seconds())
		if secs < 0 {
			secs = 0
		}
		exp := fmt.Sprintf("%02d:%02d", secs/60, secs%60)
		proto := "IP"
		if c.Proto != 0 {
			proto = protoName(c.Proto)
		}
		cn := p.addrPort(c.Client.Addr(), c.Client.Port(), c.Proto, f)
		vn := p.addrPort(c.Virtual.Addr(), c.Virtual.Port(), c.Proto, f)
		dn := p.addrPort(c.Dest.Addr(), c.Dest.Port(), c.Proto, f)
		if f&FmtPersistentConn != 0 && c.PEName != "" {
			bw.printf("%-3s %-6s %-11s %-18s %-18s %-16s %-18s %s\n", proto, exp, c.State, cn, vn, dn, c.PEName, c.PEData)
		} else {
			bw.printf("%-3s %-6s %-11s %-18s %-18s %s\n", proto, exp, c.State, cn, vn, dn)
		}
	}
	w.Write(bw.b)
}

func writeTitle(b *buf, f Format) {
	switch {
	case f&FmtStats != 0:
		b.printf("%-33s %8s %8s %8s %8s %8s\n  -> RemoteAddress:Port\n", "Prot LocalAddress:Port", "Conns", "InPkts", "OutPkts", "InBytes", "OutBytes")
	case f&FmtRate != 0:
		b.printf("%-33s %8s %8s %8s %8s %8s\n  -> RemoteAddress:Port\n", "Prot LocalAddress:Port", "CPS", "InPPS", "OutPPS", "InBPS", "OutBPS")
	case f&FmtThresholds != 0:
		b.printf("%-33s %-10s %-10s %-10s %-10s\n  -> RemoteAddress:Port\n", "Prot LocalAddress:Port", "Uthreshold", "Lthreshold", "ActiveConn", "InActConn")
	case f&FmtPersistentConn != 0:
		b.printf("%-33s %-9s %-11s %-10s %-10s\n  -> RemoteAddress:Port\n", "Prot LocalAddress:Port", "Weight", "PersistConn", "ActiveConn", "InActConn")
	case f&FmtTunInfo != 0:
		b.printf("Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn\n")
	case f&FmtRule == 0:
		b.printf("Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n")
	}
}

// mask4 is an IPv4 prefix length as a dotted mask (inet_ntoa).
func mask4(bits int) string {
	m := ^uint32(0) << (32 - bits)
	if bits == 0 {
		m = 0
	}
	return fmt.Sprintf("%d.%d.%d.%d", m>>24, m>>16&0xff, m>>8&0xff, m&0xff)
}

func (p *Printer) serviceName(s *Service, f Format) string {
	if s.Mark != 0 {
		switch {
		case f&FmtRule != 0 && s.Addr.Is6():
			return fmt.Sprintf("-f %d -6", s.Mark)
		case f&FmtRule != 0:
			return fmt.Sprintf("-f %d", s.Mark)
		case s.Addr.Is6():
			return fmt.Sprintf("FWM  %d IPv6", s.Mark)
		}
		return fmt.Sprintf("FWM  %d", s.Mark)
	}
	vname := p.addrPort(s.Addr, s.Port, s.Proto, f)
	if f&FmtRule != 0 {
		opt := "--xxx-service"
		switch s.Proto {
		case lvs.TCP:
			opt = "-t"
		case lvs.UDP:
			opt = "-u"
		case lvs.SCTP:
			opt = "--sctp-service"
		}
		return opt + " " + vname
	}
	name := fmt.Sprintf("%-4s %s", protoName(s.Proto), vname)
	if !s.Addr.Is6() && len(name) > 33 {
		name = name[:33]
	}
	return name
}

// persistent reports ipvsadm's IP_VS_SVC_F_PERSISTENT.
func persistent(s *Service) bool { return s.Persistence.Timeout > 0 }

// fullMask reports whether the persistence netmask is the host mask, which
// ipvsadm leaves out.
func fullMask(s *Service) bool {
	if s.Addr.Is6() {
		return s.Persistence.Netmask == 128
	}
	return s.Persistence.Netmask == 32
}

func (p *Printer) writeService(b *buf, s *Service, f Format) {
	name := p.serviceName(s, f)
	switch {
	case f&FmtRule != 0:
		b.printf("-A %s -s %s", name, s.Scheduler)
		if persistent(s) {
			b.printf(" -p %d", int64(s.Persistence.Timeout.Seconds()))
			if !fullMask(s) {
				if s.Addr.Is6() {
					b.printf(" -M %d", s.Persistence.Netmask)
				} else {
					b.printf(" -M %s", mask4(s.Persistence.Netmask))
				}
			}
		}
		if s.OnePacket {
			b.printf(" -o")
		}
		if len(s.SchedFlags) > 0 {
			b.printf(" -b %s", strings.Join(s.SchedFlags, ","))
		}
		p.writeServiceExtras(b, s)
	case f&FmtStats != 0:
		b.printf("%-33s", name)
		largenums(b, s.Stats, f)
	case f&FmtRate != 0:
		b.printf("%-33s", name)
		largenums(b, s.Rates, f)
	default:
		b.printf("%s %s", name, s.Scheduler)
		if len(s.SchedFlags) > 0 {
			b.printf(" (%s)", strings.Join(s.SchedFlags, ","))
		}
		if persistent(s) {
			b.printf(" persistent %d", int64(s.Persistence.Timeout.Seconds()))
			if !fullMask(s) {
				if s.Addr.Is6() {
					b.printf(" mask %d", s.Persistence.Netmask)
				} else {
					b.printf(" mask %s", mask4(s.Persistence.Netmask))
				}
			}
		}
		if s.OnePacket {
			b.printf(" ops")
		}
	}
	b.printf("\n")
	if f&FmtLvsd != 0 && f&FmtRule == 0 {
		writeLvsdService(b, s)
	}

	dests := make([]*Dest, len(s.Dests))
	for i := range s.Dests {
		dests[i] = &s.Dests[i]
	}
	if f&FmtNoSort == 0 {
		msort(dests, cmpDests)
	}
	for _, d := range dests {
		if d.Down && f&(FmtLvsd|FmtRule) == 0 {
			// keepalived takes a failed server out with ipvsadm -d, so
			// ipvsadm's listing no longer shows it; --lvsd shows it
			// marked, and -S keeps it so that -S | -R gives back the
			// configured table.
			continue
		}
		dname := p.addrPort(d.Addr, d.Port, s.Proto, f)
		if f&FmtRule == 0 && !d.Addr.Is6() && len(dname) > 28 {
			dname = dname[:28]
		}
		switch {
		case f&FmtRule != 0:
			b.printf("-a %s -r %s %s -w %d", name, dname, fwdSwitch(d.Method), d.Weight)
			if d.Method == lvs.TUN {
				// As ipvsadm's print_tunnel_rule.
				b.printf(" --tun-type %s", d.Tunnel.Type)
				if d.Tunnel.Type == lvs.TunGUE {
					b.printf(" --tun-port %d", d.Tunnel.Port)
				}
				if d.Tunnel.Type != lvs.TunIPIP {
					b.printf(" --tun-%s", config.TunCsumName(d.Tunnel.Flags))
				}
			}
			if d.UpperThreshold > 0 {
				b.printf(" -x %d", d.UpperThreshold)
			}
			if d.LowerThreshold > 0 {
				b.printf(" -y %d", d.LowerThreshold)
			}
			if d.SlowStart != s.SlowStart {
				b.printf(" --slow-start %d", int64(d.SlowStart.Seconds()))
			}
			b.printf("\n")
		case f&FmtStats != 0:
			b.printf("  -> %-28s", dname)
			largenums(b, d.Stats, f)
			b.printf("\n")
		case f&FmtRate != 0:
			b.printf("  -> %-28s %8d %8d %8d", dname, d.Rates.Conns, d.Rates.InPkts, d.Rates.OutPkts)
			largenum(b, d.Rates.InBytes, f)
			largenum(b, d.Rates.OutBytes, f)
			b.printf("\n")
		case f&FmtThresholds != 0:
			b.printf("  -> %-28s %-10d %-10d %-10d %-10d\n", dname, d.UpperThreshold, d.LowerThreshold, d.ActiveConns, d.InactConns)
		case f&FmtPersistentConn != 0:
			b.printf("  -> %-28s %-9d %-11d %-10d %-10d\n", dname, d.Weight, d.PersistConns, d.ActiveConns, d.InactConns)
		case f&FmtTunInfo != 0:
			b.printf("  -> %-28s %-7s %-13s %-6d %-10d %-10d\n", dname, fwdName(d.Method), tunInfo(&d.Real), d.Weight, d.ActiveConns, d.InactConns)
		default:
			b.printf("  -> %-28s %-7s %-6d %-10d %-10d\n", dname, fwdName(d.Method), d.Weight, d.ActiveConns, d.InactConns)
		}
		if f&FmtLvsd != 0 && f&FmtRule == 0 && (d.Down || d.Overloaded) {
			state := "down"
			if !d.Down {
				state = "overloaded"
			}
			b.printf("     # %s\n", state)
		}
	}
}

// writeServiceExtras appends to an -A rule what lvsd has beyond IPVS, so
// that -S | -R reproduces the table.
func (p *Printer) writeServiceExtras(b *buf, s *Service) {
	if s.Mark != 0 {
		ports := make([]string, len(s.Ports))
		for i, port := range s.Ports {
			ports[i] = strconv.Itoa(int(port))
		}
		vip := s.Addr.String()
		if s.Addr.Is6() {
			vip = "[" + vip + "]"
		}
		b.printf(" --ports %s:%s:%s", s.Proto, vip, strings.Join(ports, ","))
	}
	if s.Name != "" {
		b.printf(" --name %s", s.Name)
	}
	if p.MultiInterface && s.Interface != "" {
		b.printf(" --interface %s", s.Interface)
	}
	if s.SlowStart > 0 {
		b.printf(" --slow-start %d", int64(s.SlowStart.Seconds()))
	}
	if s.MaglevTableSize != 0 {
		b.printf(" --maglev-size %d", s.MaglevTableSize)
	}
}

// writeLvsdService prints, under a service line, what lvsd has beyond
// IPVS (FmtLvsd).
func writeLvsdService(b *buf, s *Service) {
	var parts []string
	if s.Name != "" {
		parts = append(parts, "name "+s.Name)
	}
	if s.Mark != 0 {
		vip := s.Addr.String()
		if s.Addr.Is6() {
			vip = "[" + vip + "]"
		}
		ports := make([]string, len(s.Ports))
		for i, port := range s.Ports {
			ports[i] = strconv.Itoa(int(port))
		}
		parts = append(parts, fmt.Sprintf("%s %s:%s", protoName(s.Proto), vip, strings.Join(ports, ",")))
	}
	if s.Interface != "" {
		parts = append(parts, "interface "+s.Interface)
	}
	if s.SlowStart > 0 {
		parts = append(parts, fmt.Sprintf("slow-start %d", int64(s.SlowStart.Seconds())))
	}
	if s.MaglevTableSize != 0 {
		parts = append(parts, fmt.Sprintf("maglev-size %d", s.MaglevTableSize))
	}
	if len(parts) > 0 {
		b.printf("  # %s\n", strings.Join(parts, ", "))
	}
}

func fwdName(m lvs.Method) string {
	switch m {
	case lvs.NAT:
		return "Masq"
	case lvs.TUN:
		return "Tunnel"
	case lvs.DR:
		return "Route"
	}
	return "(null)"
}

func fwdSwitch(m lvs.Method) string {
	switch m {
	case lvs.NAT:
		return "-m"
	case lvs.TUN:
		return "-i"
	}
	return "-g"
}

func largenums(b *buf, c Counters, f Format) {
	largenum(b, c.Conns, f)
	largenum(b, c.InPkts, f)
	largenum(b, c.OutPkts, f)
	largenum(b, c.InBytes, f)
	largenum(b, c.OutBytes, f)
}

// largenum is ipvsadm's print_largenum: nine columns, abbreviated with
// K, M, G or T from 100 million on unless exact.
func largenum(b *buf, n uint64, f Format) {
	if f&FmtExact != 0 {
		l := len(strconv.FormatUint(n, 10))
		width := 9
		if l > 8 {
			width = l + 1
		}
		b.printf("%*d", width, n)
		return
	}
	switch {
	case n < 100000000:
		b.printf("%9d", n)
	case n < 1000000000:
		b.printf("%8dK", n/1000)
	case n < 100000000000:
		b.printf("%8dM", n/1000000)
	case n < 100000000000000:
		b.printf("%8dG", n/1000000000)
	default:
		b.printf("%8dT", n/1000000000000)
	}
}

// buf collects a listing so that it reaches the writer in one piece.
type buf struct{ b []byte }

func (b *buf) printf(format string, args ...any) { b.b = fmt.Appendf(b.b, format, args...) }

// tunInfo is the TunnelInfo column of --tun-info, as ipvsadm's fwd_tun_info:
// the type, gue's port, and gue's and gre's checksum option; n/a for a real
// server that is not tun.
func tunInfo(r *config.Real) string {
	if r.Method != lvs.TUN {
		return "n/a"
	}
	t := r.Tunnel
	switch t.Type {
	case lvs.TunGUE:
		return fmt.Sprintf("%s:%d:%s", t.Type, t.Port, config.TunCsumName(t.Flags))
	case lvs.TunGRE:
		return fmt.Sprintf("%s:%s", t.Type, config.TunCsumName(t.Flags))
	}
	return t.Type.String()
}
