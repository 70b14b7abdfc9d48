// Package capture copies the frames lvsd reads and writes, as they are on
// the wire, into a bounded ring that a reader (`lvsd capture`, through the
// control socket) drains into a pcapng stream.
//
// The packet path never waits for the reader: a reader goroutine (stack's
// Link) offers each frame with Capture.Frame, which applies the filter and
// copies the frame into a free slot of the ring or, when the ring is full,
// counts it as missed and returns. Frame takes no lock and allocates
// nothing; when no capture is armed the Link pays one atomic load per frame.
//
// The filter is evaluated in lvsd over the frame's bytes: protocol, host
// and port, ANDed (see ParseFilter). A frame tunnelled in IPIP, GRE or GUE
// (IPVS's tunnel types) matches on its outer or its inner header.
package capture
