package metrics

import (
	"net/netip"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lvsd/lvsd/conntrack"
	"github.com/lvsd/lvsd/control"
)

// Source is what the collector reads: the director.
type Source interface {
	// Status is a snapshot of services, real servers and interface
	// counters (control.Source).
	Status() control.Status
}

// TableSource gives the connection table's statistics; optional.
type TableSource interface {
	Stats() conntrack.StatsSnapshot
}

// ReloadSource counts reload outcomes; optional.
type ReloadSource interface {
	// ReloadCounts returns the reloads applied and refused since start.
	ReloadCounts() (applied, refused uint64)
}

// The labels of node_exporter's ipvs backend series, in its order.
var backendLabels = []string{"local_address", "local_port", "remote_address", "remote_port", "proto", "local_mark"}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

// collector is a prometheus.Collector over a Source; it builds constant
// metrics from one snapshot per scrape.
type collector struct {
	src     Source
	table   TableSource
	reloads ReloadSource
	version string

	conns, inPkts, outPkts, inBytes, outBytes *prometheus.Desc
	active, inactive, weight                  *prometheus.Desc
	beConns, beInPkts, beOutPkts              *prometheus.Desc
	beInBytes, beOutBytes                     *prometheus.Desc
	beAvailable, beOverloaded                 *prometheus.Desc
	healthUp, healthChecks, healthChange      *prometheus.Desc
	healthTransitions                         *prometheus.Desc
	passiveEjections                          *prometheus.Desc
	drops, forwarded, toStack, newConns       *prometheus.Desc
	frames, devErrors                         *prometheus.Desc
	kernelDrops, synCookies, synproxyOpened   *prometheus.Desc
	neighHeld                                 *prometheus.Desc
	entries, limit, evicted, refused          *prometheus.Desc
	unestablished, removed, sourceRefused     *prometheus.Desc
	reloadsTotal, reloadFailures, stale       *prometheus.Desc
	buildInfo                                 *prometheus.Desc
}

func newCollector(src Source, table TableSource, reloads ReloadSource, version string) *collector {
	return &collector{
		src: src, table: table, reloads: reloads, version: version,

		// node_exporter's names under lvsd_; the help text is lvsd's own.
		conns:    desc("lvsd_ipvs_connections_total", "Connections scheduled since start, over every virtual service."),
		inPkts:   desc("lvsd_ipvs_incoming_packets_total", "Packets forwarded from clients to real servers since start."),
		outPkts:  desc("lvsd_ipvs_outgoing_packets_total", "Packets forwarded from real servers to clients since start (NAT only)."),
		inBytes:  desc("lvsd_ipvs_incoming_bytes_total", "IP bytes forwarded from clients to real servers since start."),
		outBytes: desc("lvsd_ipvs_outgoing_bytes_total", "IP bytes forwarded from real servers to clients since start (NAT only)."),
		active:   desc("lvsd_ipvs_backend_connections_active", "Active (established TCP) connections of a real server.", backendLabels...),
		inactive: desc("lvsd_ipvs_backend_connections_inactive", "Inactive connections (TCP in other states, UDP) of a real server.", backendLabels...),
		weight:   desc("lvsd_ipvs_backend_weight", "Weight of a real server.", backendLabels...),

		// lvsd's own, per real server.
		beConns:      desc("lvsd_ipvs_backend_connections_total", "Connections scheduled to a real server since start.", backendLabels...),
		beInPkts:     desc("lvsd_ipvs_backend_incoming_packets_total", "Packets forwarded to a real server since start.", backendLabels...),
		beOutPkts:    desc("lvsd_ipvs_backend_outgoing_packets_total", "Packets forwarded from a real server since start (NAT only).", backendLabels...),
		beInBytes:    desc("lvsd_ipvs_backend_incoming_bytes_total", "IP bytes forwarded to a real server since start.", backendLabels...),
		beOutBytes:   desc("lvsd_ipvs_backend_outgoing_bytes_total", "IP bytes forwarded from a real server since start (NAT only).", backendLabels...),
		beAvailable:  desc("lvsd_ipvs_backend_available", "1 when a real server may receive new connections (in the table, health up), else 0.", backendLabels...),
		beOverloaded: desc("lvsd_ipvs_backend_overloaded", "1 while a real server is over its upper connection threshold, else 0.", backendLabels...),

		healthUp:     desc("lvsd_ipvs_backend_health_up", "1 while a real server's health check says up, 0 down; only real servers with a check.", backendLabels...),
		healthChecks: desc("lvsd_ipvs_backend_health_checks_total", "Health probes of a real server's checks since it was added (they go on across a reload of its check).", backendLabels...),
		healthChange: desc("lvsd_ipvs_backend_health_last_change_timestamp_seconds", "Time of a real server's last health transition (or of its check's start), Unix seconds.", backendLabels...),
		healthTransitions: desc("lvsd_ipvs_backend_health_transitions_total", "Health transitions of a real server's checks since it was added (they go on across a reload of its check), by the state it went to (up or down).",
			append(slices.Clone(backendLabels), "to")...),
		passiveEjections: desc("lvsd_ipvs_backend_passive_ejections_total", "Ejections of a real server by passive detection since detection started for it; only real servers of services with passive detection.", backendLabels...),

		drops:     desc("lvsd_drops_total", "Frames the fast path dropped, by interface and reason.", "interface", "reason"),
		forwarded: desc("lvsd_forwarded_packets_total", "Frames the fast path forwarded, by interface and direction (in: client to real server, out: real server to client).", "interface", "direction"),
		toStack:   desc("lvsd_to_stack_packets_total", "Frames handed to lvsd's netstack (ARP, ICMP, health checks, other traffic).", "interface"),
		newConns:  desc("lvsd_new_connections_total", "Connections the fast path created, by interface.", "interface"),
		frames:    desc("lvsd_device_frames_total", "Frames read (rx) and written (tx) per device queue.", "interface", "queue", "direction"),
		devErrors: desc("lvsd_device_errors_total", "Device read (rx) and write (tx) errors.", "interface", "direction"),
		kernelDrops: desc("lvsd_kernel_drops_total", "Frames the kernel dropped before lvsd read them (a packet interface's full receive queue: established or syn).",
			"interface", "queue"),
		synCookies:     desc("lvsd_syn_cookies_total", "SYN-ACKs with a SYN cookie the SYN proxy answered SYNs with (services with synproxy = true).", "interface"),
		synproxyOpened: desc("lvsd_synproxy_opened_total", "Connections the SYN proxy opened on a client's valid cookie.", "interface"),
		neighHeld: desc("lvsd_neighbor_held_frames_total", "Frames that waited for a neighbour's MAC while it was resolved (held), and those sent once it was (sent); the others are drops no-neighbor or neighbor-queue-full.",
			"interface", "outcome"),

		entries:       desc("lvsd_conntrack_entries", "Connections in the connection table."),
		limit:         desc("lvsd_conntrack_limit", "Most connections the table holds ([connections] max)."),
		evicted:       desc("lvsd_conntrack_evictions_total", "Half-open or closed TCP connections evicted to make room for a new one."),
		refused:       desc("lvsd_conntrack_refused_total", "New connections refused because the table was full with nothing to evict."),
		unestablished: desc("lvsd_conntrack_unestablished", "Connections that never established (UDP flows, TCP handshakes), which reserve_established bounds."),
		removed:       desc("lvsd_conntrack_removed_total", "Connections removed early: their real server was removed (nodest_expired), or a new SYN reused a closed one's port (reused).", "reason"),
		sourceRefused: desc("lvsd_conntrack_source_refused_total", "New connections refused by a per-source limit.", "limit"),

		reloadsTotal:   desc("lvsd_reloads_total", "Reloads by result: applied, or refused (the running configuration stays).", "result"),
		reloadFailures: desc("lvsd_reload_failures_total", "Reloads refused since start."),
		stale:          desc("lvsd_config_stale", "1 while the last reload was refused: the file is not what runs."),
		buildInfo:      desc("lvsd_build_info", "Always 1; the labels describe the build.", "version", "goversion", "revision"),
	}
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.conns, c.inPkts, c.outPkts, c.inBytes, c.outBytes, c.active, c.inactive, c.weight,
		c.beConns, c.beInPkts, c.beOutPkts, c.beInBytes, c.beOutBytes, c.beAvailable, c.beOverloaded,
		c.healthUp, c.healthChecks, c.healthChange, c.healthTransitions, c.passiveEjections,
		c.drops, c.forwarded, c.toStack, c.newConns, c.frames, c.devErrors, c.kernelDrops, c.synCookies, c.synproxyOpened, c.neighHeld,
		c.entries, c.limit, c.evicted, c.refused, c.unestablished, c.removed, c.sourceRefused, c.reloadsTotal, c.reloadFailures, c.stale, c.buildInfo,
	} {
		ch <- d
	}
}

// backendSum accumulates the series of the real servers that share a label
// set (node_exporter sums them too; in lvsd a label set names one real
// server of one service, so a sum has one term).
type backendSum struct {
	labels                                  []string
	active, inactive, weight                float64
	conns, inPkts, outPkts, inBytes, outByt float64
	available, overloaded                   float64
	health                                  *control.Health // nil: no check
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	st := c.src.Status()
	counter := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, l...)
	}
	gauge := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}

	var sums []*backendSum
	index := make(map[string]*backendSum)
	var total control.Stats
	for _, s := range st.Services {
		total.Conns += s.Stats.Conns
		total.InPkts += s.Stats.InPkts
		total.OutPkts += s.Stats.OutPkts
		total.InBytes += s.Stats.InBytes
		total.OutBytes += s.Stats.OutBytes
		laddr, lport := splitAddrPort(s.Address)
		for _, r := range s.Reals {
			raddr, rport := splitAddrPort(r.Address)
			l := []string{laddr, lport, raddr, rport, strings.ToUpper(s.Protocol), ""}
			key := strings.Join(l, "\x00")
			b := index[key]
			if b == nil {
				b = &backendSum{labels: l}
				index[key] = b
				sums = append(sums, b)
			}
			b.active += float64(r.ActiveConn)
			b.inactive += float64(r.InactConn)
			b.weight += float64(r.Weight)
			b.conns += float64(r.Stats.Conns)
			b.inPkts += float64(r.Stats.InPkts)
			b.outPkts += float64(r.Stats.OutPkts)
			b.inBytes += float64(r.Stats.InBytes)
			b.outByt += float64(r.Stats.OutBytes)
			b.available += b2f(r.Available)
			b.overloaded += b2f(r.Overloaded)
			if h := r.Health; h != nil {
				b.health = h
			}
		}
	}
	var ts conntrack.StatsSnapshot
	if c.table != nil {
		// The table's totals include services since removed, as the
		// kernel's global counters do.
		ts = c.table.Stats()
		total = control.Stats{Conns: ts.Total.Conns, InPkts: ts.Total.InPkts, OutPkts: ts.Total.OutPkts,
			InBytes: ts.Total.InBytes, OutBytes: ts.Total.OutBytes}
	}
	counter(c.conns, float64(total.Conns))
	counter(c.inPkts, float64(total.InPkts))
	counter(c.outPkts, float64(total.OutPkts))
	counter(c.inBytes, float64(total.InBytes))
	counter(c.outBytes, float64(total.OutBytes))
	for _, b := range sums {
		gauge(c.active, b.active, b.labels...)
		gauge(c.inactive, b.inactive, b.labels...)
		gauge(c.weight, b.weight, b.labels...)
		counter(c.beConns, b.conns, b.labels...)
		counter(c.beInPkts, b.inPkts, b.labels...)
		counter(c.beOutPkts, b.outPkts, b.labels...)
		counter(c.beInBytes, b.inBytes, b.labels...)
		counter(c.beOutBytes, b.outByt, b.labels...)
		gauge(c.beAvailable, b.available, b.labels...)
		gauge(c.beOverloaded, b.overloaded, b.labels...)
		if h := b.health; h != nil && h.Passive != nil {
			counter(c.passiveEjections, float64(h.Passive.EjectionsTotal), b.labels...)
		}
		// A server with passive detection and no check has a Health with
		// Check "": it has no check series (their help says so).
		if h := b.health; h != nil && h.Check != "" {
			gauge(c.healthUp, b2f(h.State == "up"), b.labels...)
			counter(c.healthChecks, float64(h.ChecksTotal), b.labels...)
			gauge(c.healthChange, float64(h.LastChange.UnixNano())/1e9, b.labels...)
			counter(c.healthTransitions, float64(h.TransitionsUp), append(slices.Clone(b.labels), "up")...)
			counter(c.healthTransitions, float64(h.TransitionsDown), append(slices.Clone(b.labels), "down")...)
		}
	}

	for _, ifc := range st.Interfaces {
		for reason, n := range ifc.Drops {
			counter(c.drops, float64(n), ifc.Name, reason)
		}
		counter(c.forwarded, float64(ifc.ForwardedIn), ifc.Name, "in")
		counter(c.forwarded, float64(ifc.ForwardedOut), ifc.Name, "out")
		counter(c.toStack, float64(ifc.ToStack), ifc.Name)
		counter(c.newConns, float64(ifc.NewConns), ifc.Name)
		for i, q := range ifc.Queues {
			qs := strconv.Itoa(i)
			counter(c.frames, float64(q.RxFrames), ifc.Name, qs, "rx")
			counter(c.frames, float64(q.TxFrames), ifc.Name, qs, "tx")
		}
		counter(c.devErrors, float64(ifc.RxErrors), ifc.Name, "rx")
		counter(c.devErrors, float64(ifc.TxErrors), ifc.Name, "tx")
		counter(c.kernelDrops, float64(ifc.KernelDrops), ifc.Name, "established")
		counter(c.kernelDrops, float64(ifc.KernelSYN), ifc.Name, "syn")
		counter(c.synCookies, float64(ifc.SynCookies), ifc.Name)
		counter(c.synproxyOpened, float64(ifc.SynproxyOpened), ifc.Name)
		counter(c.neighHeld, float64(ifc.NeighborHeld), ifc.Name, "held")
		counter(c.neighHeld, float64(ifc.NeighborSent), ifc.Name, "sent")
	}

	gauge(c.entries, float64(st.Connections))
	gauge(c.limit, float64(st.Table.Max))
	counter(c.evicted, float64(st.Table.Evicted))
	counter(c.refused, float64(st.Table.Refused))
	gauge(c.unestablished, float64(st.Table.Unestablished))
	counter(c.removed, float64(st.Table.NodestExpired), "nodest_expired")
	counter(c.removed, float64(st.Table.Reused), "reused")
	counter(c.sourceRefused, float64(st.Table.SourceLimited), "per_source")
	counter(c.sourceRefused, float64(st.Table.SourceRated), "per_source_rate")

	if c.reloads != nil {
		applied, refused := c.reloads.ReloadCounts()
		counter(c.reloadsTotal, float64(applied), "applied")
		counter(c.reloadsTotal, float64(refused), "refused")
	}
	counter(c.reloadFailures, float64(st.ReloadFailures))
	gauge(c.stale, b2f(st.ConfigStale))

	goVersion, revision := buildInfo()
	gauge(c.buildInfo, 1, c.version, goVersion, revision)
}

// buildInfo returns the Go version and the VCS revision the binary was
// built from ("" when the build recorded none).
func buildInfo() (goVersion, revision string) {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "", ""
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" {
			revision = s.Value
		}
	}
	return bi.GoVersion, revision
}

// splitAddrPort splits "ADDR:PORT" (IPv6 in brackets) into node_exporter's
// label values: the address as written by net/netip and the port in
// decimal.
func splitAddrPort(s string) (addr, port string) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return s, ""
	}
	return ap.Addr().String(), strconv.Itoa(int(ap.Port()))
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
