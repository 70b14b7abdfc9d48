package stack

import (
	"testing"

	"github.com/lvsd/lvsd/forward"
)

// TestHeadroomFitsTunnels: the readers' headroom holds the deepest tunnel's
// headers (an outer IPv6 header with a fragment header, UDP and GUE with
// the remote checksum option), an Ethernet header and the virtio-net
// header an emitted frame gets in front.
func TestHeadroomFitsTunnels(t *testing.T) {
	if need := forward.TunnelHeadroomMax + 14 + forward.EmitHeadroom; Headroom < need {
		t.Errorf("Headroom %d, want at least %d", Headroom, need)
	}
}
