package forward

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestVNetHdrRoundTrip: Encode then Decode gives the header back, in the
// device's little-endian order.
func TestVNetHdrRoundTrip(t *testing.T) {
	want := VNetHdr{Flags: 1, GSOType: 4, HdrLen: 66, GSOSize: 1448, CsumStart: 54, CsumOffset: 16}
	var b [VNetHdrLen]byte
	want.Encode(b[:])
	var got VNetHdr
	got.Decode(b[:])
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if b[6] != 54 || b[7] != 0 {
		t.Errorf("csum_start not little-endian: % x", b)
	}
}
