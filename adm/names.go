package adm

import (
	"bufio"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/lvsd/lvsd/lvs"
)

// FileNames resolves names as ipvsadm does, from the files only: ports
// from a services file (/etc/services), addresses from a hosts file
// (/etc/hosts; host names on the command line are IPv4, as ipvsadm's
// gethostbyname). It never asks DNS, so nothing waits on a resolver.
type FileNames struct {
	ports map[string]uint16     // "http/tcp" -> 80
	servs map[string]string     // "80/tcp" -> "http": the first name of the port
	hosts map[netip.Addr]string // the first name of an address
	addrs map[string]netip.Addr // the first IPv4 address of a name
}

var _ Names = (*FileNames)(nil)

// LoadNames reads the services and hosts files; a missing file resolves
// nothing.
func LoadNames(servicesPath, hostsPath string) *FileNames {
	n := &FileNames{ports: map[string]uint16{}, servs: map[string]string{}, hosts: map[netip.Addr]string{}, addrs: map[string]netip.Addr{}}
	eachLine(servicesPath, func(f []string) {
		// name port/proto [aliases...]
		if len(f) < 2 {
			return
		}
		portStr, proto, ok := strings.Cut(f[1], "/")
		p, err := strconv.ParseUint(portStr, 10, 16)
		if !ok || err != nil {
			return
		}
		key := portStr + "/" + proto
		if _, dup := n.servs[key]; !dup {
			n.servs[key] = f[0]
		}
		for _, name := range append([]string{f[0]}, f[2:]...) {
			if _, dup := n.ports[name+"/"+proto]; !dup {
				n.ports[name+"/"+proto] = uint16(p)
			}
		}
	})
	eachLine(hostsPath, func(f []string) {
		// address name [aliases...]
		a, err := netip.ParseAddr(f[0])
		if err != nil || len(f) < 2 {
			return
		}
		if _, dup := n.hosts[a]; !dup {
			n.hosts[a] = f[1]
		}
		for _, name := range f[1:] {
			if _, dup := n.addrs[name]; !dup && a.Is4() {
				n.addrs[name] = a
			}
		}
	})
	return n
}

func eachLine(path string, fn func(fields []string)) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		if fields := strings.Fields(line); len(fields) > 0 {
			fn(fields)
		}
	}
}

func protoKey(p lvs.Proto) string { return strings.ToLower(protoName(p)) }

// Host is the first name of a in the hosts file.
func (n *FileNames) Host(a netip.Addr) string { return n.hosts[a] }

// Service is the first name of the port in the services file.
func (n *FileNames) Service(port uint16, proto lvs.Proto) string {
	return n.servs[strconv.Itoa(int(port))+"/"+protoKey(proto)]
}

// Port resolves a service name for the parser (Parser.Ports).
func (n *FileNames) Port(name string, proto lvs.Proto) (uint16, bool) {
	p, ok := n.ports[name+"/"+protoKey(proto)]
	return p, ok
}

// Addr resolves a host name for the parser (Parser.Hosts).
func (n *FileNames) Addr(name string) (netip.Addr, bool) {
	a, ok := n.addrs[name]
	return a, ok
}
