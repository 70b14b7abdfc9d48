package lab

// StartDNS runs `labserver dns -listen :PORT -name rsN` (a DNS server over
// UDP built on miekg/dns) in each real server's namespace and waits until
// each listens.
func (tp *Topology) StartDNS(bin Binaries, port int) []*Proc {
	tp.Lab.t.Helper()
	return tp.startServers(bin, "dns", port)
}
