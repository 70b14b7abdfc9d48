// Package metrics serves lvsd's metrics listener: Prometheus's /metrics and
// a live status page (/, /api/status) on one TCP address.
//
// It only reads. Every number comes from the director's status snapshot and
// the connection table's statistics, which fold the per-worker counters of
// the packet path when asked (the table also folds them every 2 s on its
// own); nothing here is called per packet and nothing is added to the
// packet path. A scrape costs one status snapshot and one table fold.
//
// The IPVS series keep the names, labels and types of node_exporter's ipvs
// collector with the prefix lvsd_ instead of node_ (node_ipvs_backend_weight
// becomes lvsd_ipvs_backend_weight), so that a dashboard made for the
// kernel's IPVS needs one rename. lvsd's own series (drops by reason,
// device queues, the connection table, reloads, build info) are named
// lvsd_*; docs/observability.md lists them all.
//
// The status page is one HTML file with its script, embedded in the binary
// (go:embed), with no external asset. The server keeps ten minutes of
// samples per real server (one every Options.Interval, 2 s by default) so
// that the page's plots start full when it is opened.
package metrics
