package conntrack

import (
	"testing"
	"unsafe"
)

// Sizes the memory figures are computed from.
const (
	chunkBytes       = uint64(unsafe.Sizeof(chunk{}) + unsafe.Sizeof(recBlock{}))
	tableStructBytes = uint64(unsafe.Sizeof(Table{}))
)

// TestRecSize keeps the entry at the size docs/conntrack.md's figures
// assume.
func TestRecSize(t *testing.T) {
	if n := unsafe.Sizeof(rec{}); n != 56 {
		t.Errorf("rec is %d bytes, want 56 (update the docs if this is intended)", n)
	}
}
