// Package adm is ipvsadm's command line and listings for lvsd: `lvsd adm`,
// and lvsd invoked as ipvsadm.
//
// It is pure: Parse turns a command line into a Command without touching
// anything; Apply edits a copy of a configuration as the matching ipvsadm
// command edits the kernel's table; the Write functions print a Table as
// ipvsadm 1.31's print code does, byte for byte (column widths, the K/M/G/T
// abbreviations of large numbers, the order of services and real servers,
// including the quirks of ipvsadm's comparison functions). What lvsd has
// beyond IPVS (names, interfaces, lists of ports, slow start, health) is
// printed only when a flag of lvsd's own asks for it, and never changes a
// line that ipvsadm would print.
//
// Nothing here owns a goroutine, a file or a socket; callers pass writers
// and the tables they built.
package adm
