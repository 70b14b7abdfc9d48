// Package keepalived turns the virtual_server and real_server blocks of a
// keepalived.conf into lvsd's TOML (lvsd import keepalived), with a report,
// line by line, of what has no equivalent in lvsd.
//
// It reads the file's syntax as keepalived does: words separated by blanks,
// blocks in braces, comments from '#' or '!' to the end of the line, and
// double-quoted strings. It follows no include (each is reported), runs
// nothing and resolves no name. Convert takes bytes and returns bytes; the
// one look at the host is a stat of each MISC_CHECK's program, so that one
// absent here is reported (lvsd check would refuse it).
//
// Checkers become the check table of their real server (check.go): the
// keywords of the virtual server and the real server around a checker are
// its defaults, and the checker's own override them, as in keepalived.
//
// Given an interface and addresses (a whole configuration), Convert checks
// its output as lvsd check does and leaves out, with a note, the virtual or
// real servers lvsd check refuses (prune.go): the output passes lvsd check,
// but for an exec program absent from the importing host.
package keepalived
