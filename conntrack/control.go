package conntrack

// Controller is what controls a connection: a persistence template
// (persist.Template), which counts the connections made through it and must
// learn when each one ends (IPVS's n_control and ip_vs_control_del).
type Controller interface {
	// Release is called once, when the connection leaves the table.
	Release()
}
