// Package keepalived turns the virtual_server and real_server blocks of a
// keepalived.conf into lvsd's TOML (lvsd import keepalived), with a report,
// line by line, of what has no equivalent in lvsd.
//
// It reads the file's syntax as keepalived does: words separated by blanks,
// blocks in braces, comments from '#' or '!' to the end of the line, and
// double-quoted strings. It follows no include (each is reported), runs
// nothing and resolves no name. It is pure: Convert takes bytes and returns
// bytes.
package keepalived
