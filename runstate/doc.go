// Package runstate keeps lvsd's runtime changes: the running table is the
// truth (as the kernel's IPVS table is) and the configuration file its
// start state. A change made at run time (lvsd adm, ipvsadm) is written to
// a state file so that it survives a reload (SIGHUP) and a restart, until
// the file changes that same object or the operator discards it.
//
// The state file holds two tables: the base (the file as it was when the
// runtime changes were made) and the running table. At a reload or a
// start, Merge compares the file with the base, object by object (the
// timeouts, each service's own settings, each real server): what the file
// changed comes from the file, everything else from the running table.
//
// The file is written atomically (a temporary file, fsync, rename, fsync
// of the directory) with a checksum; the previous good one is kept beside
// it (.prev), so that a state file cut short by a power loss is detected
// and the last good one is used.
//
// The package owns no goroutine; Store serialises its own file access.
package runstate
