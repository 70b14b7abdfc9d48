package lab

// Frame is one frame a Capture saw.
type Frame struct {
	// Outgoing is true for a frame the namespace's kernel sent on the link
	// (PACKET_OUTGOING): on a TAP, a frame toward the process attached to
	// it, such as lvsd. False for a frame the kernel received on it (on a
	// TAP: written by that process).
	Outgoing bool
	// Data is the frame from its Ethernet header on, cut at CaptureSnapLen
	// bytes.
	Data []byte
	// Len is the frame's whole length (a GSO super-frame can be 64 KiB).
	Len int
}

// CaptureSnapLen is how many bytes of each frame a Capture keeps: all the
// headers (Ethernet, outer and inner IP, TCP with options) of the lab's
// traffic.
const CaptureSnapLen = 256

// captureMax bounds the frames a Capture keeps; later ones are counted in
// Capture.Missed.
const captureMax = 200000
