package config

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
)

// Error is one problem in a configuration file.
type Error struct {
	File string
	// Line is the 1-based line of Key (or of its table's header when Key is
	// missing); 0 when the problem concerns the whole file.
	Line int
	// Key is the full key path with array indices, such as
	// virtual_server[0].real_server[1].weight; empty for syntax errors.
	Key string
	// Msg says what is wrong, quoting the bad value, and never is empty.
	Msg string
}

// Error formats the problem as FILE:LINE: KEY: message. The LINE part is
// left out when Line is 0 and the KEY part when Key is empty, as compilers
// do.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// ErrorList is every problem Parse found, sorted by line. Parse returns it
// (never empty) as its error; get it back with errors.As.
type ErrorList []*Error

// Error formats one problem per line.
func (l ErrorList) Error() string {
	var b strings.Builder
	for i, e := range l {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Unwrap lets errors.As find an individual *Error (the first one).
func (l ErrorList) Unwrap() []error {
	errs := make([]error, len(l))
	for i, e := range l {
		errs[i] = e
	}
	return errs
}

// sort orders problems by line, keeping the order of discovery on one line.
func (l ErrorList) sort() {
	slices.SortStableFunc(l, func(a, b *Error) int { return cmp.Compare(a.Line, b.Line) })
}
