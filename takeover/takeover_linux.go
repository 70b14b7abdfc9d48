package takeover

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// manifest is the first message's JSON.
type manifest struct {
	Version int         `json:"version"`
	Devices []devHeader `json:"devices"`
}

type devHeader struct {
	Interface string `json:"interface"`
	Kind      string `json:"kind"`
	MAC       []byte `json:"mac,omitempty"`
	FDs       int    `json:"fds"`
}

// parseManifest decodes and checks a manifest: version, device names and
// kinds, descriptor counts that add up to nfds.
func parseManifest(b []byte, nfds int) (*manifest, error) {
	var m manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%w: manifest: %w", ErrProtocol, err)
	}
	if m.Version != version {
		return nil, fmt.Errorf("%w: manifest version %d, want %d", ErrProtocol, m.Version, version)
	}
	total := 0
	for _, d := range m.Devices {
		switch {
		case d.Interface == "" || len(d.Interface) > 255:
			return nil, fmt.Errorf("%w: device with interface name of %d bytes", ErrProtocol, len(d.Interface))
		case d.Kind != "tap" && d.Kind != "tun" && d.Kind != "packet":
			return nil, fmt.Errorf("%w: device %q: kind %q", ErrProtocol, d.Interface, d.Kind)
		case d.FDs < 1 || d.FDs > MaxFDs || d.Kind == "packet" && d.FDs%3 != 0:
			return nil, fmt.Errorf("%w: device %q: %d descriptors", ErrProtocol, d.Interface, d.FDs)
		case len(d.MAC) != 0 && len(d.MAC) != 6:
			return nil, fmt.Errorf("%w: device %q: MAC of %d bytes", ErrProtocol, d.Interface, len(d.MAC))
		}
		total += d.FDs
	}
	if total != nfds {
		return nil, fmt.Errorf("%w: manifest names %d descriptors, %d came", ErrProtocol, total, nfds)
	}
	return &m, nil
}

// Bounds on the giver's waits, so that a taker that hangs cannot hold the
// giver: DevicesWait for the taker to hold the devices (it builds its
// director meanwhile; the giver still forwards), RunningWait plus
// RunningWaitPerByte for each byte of the state for it to run once the
// giver stopped (it restores the state meanwhile, and nobody forwards).
var (
	DevicesWait        = 60 * time.Second
	RunningWait        = 5 * time.Second
	RunningWaitPerByte = 50 * time.Nanosecond // about 4 µs a connection
)

// Give runs the giver's side on c. It sends devs, waits until the taker
// holds them, calls stop (which must stop reading the devices and return
// the table's snapshot), sends the snapshot and waits until the taker
// runs. When Give returns nil the giver must exit without touching the
// devices; on an error after stop was called, the caller resumes reading.
// Each wait is bounded (DevicesWait, RunningWait). Give does not close
// devs' files (the process's exit does).
func Give(c *net.UnixConn, devs []Device, stop func() ([]byte, error)) error {
	m := manifest{Version: version}
	var fds []int
	for _, d := range devs {
		m.Devices = append(m.Devices, devHeader{Interface: d.Interface, Kind: d.Kind, MAC: d.MAC[:], FDs: len(d.Files)})
		for _, f := range d.Files {
			fds = append(fds, int(f.Fd()))
		}
	}
	if len(fds) > MaxFDs {
		return fmt.Errorf("takeover: %d descriptors, at most %d", len(fds), MaxFDs)
	}
	js, err := json.Marshal(&m)
	if err != nil {
		return fmt.Errorf("takeover: manifest: %w", err)
	}
	msg := binary.BigEndian.AppendUint32(nil, uint32(len(js)))
	msg = append(msg, js...)
	if _, _, err := c.WriteMsgUnix(msg, unix.UnixRights(fds...), nil); err != nil {
		return fmt.Errorf("takeover: send devices: %w", err)
	}
	c.SetDeadline(time.Now().Add(DevicesWait))
	if err := readAck(c, ackDevices); err != nil {
		return err
	}
	table, err := stop()
	if err != nil {
		return fmt.Errorf("takeover: snapshot: %w", err)
	}
	if len(table) > MaxTable {
		return fmt.Errorf("takeover: snapshot of %d bytes, at most %d", len(table), MaxTable)
	}
	c.SetDeadline(time.Now().Add(RunningWait + time.Duration(len(table))*RunningWaitPerByte))
	if _, err := c.Write(append(binary.BigEndian.AppendUint32(nil, uint32(len(table))), table...)); err != nil {
		return fmt.Errorf("takeover: send table: %w", err)
	}
	err = readAck(c, ackRunning)
	c.SetDeadline(time.Time{})
	return err
}

func readAck(c *net.UnixConn, want byte) error {
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return fmt.Errorf("takeover: wait for %q: %w", want, err)
	}
	if b[0] != want {
		return fmt.Errorf("%w: ack %q, want %q", ErrProtocol, b[0], want)
	}
	return nil
}

// Received is the taker's side of a handoff in progress.
type Received struct {
	// Devices are the devices received, with descriptors the taker owns.
	Devices []Device
	c       *net.UnixConn
}

// Take runs the first step of the taker's side on c: it receives the
// devices. On error every descriptor received is closed.
func Take(c *net.UnixConn) (*Received, error) {
	buf := make([]byte, 4+MaxManifest)
	oob := make([]byte, unix.CmsgSpace(4*MaxFDs))
	n, oobn, flags, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, fmt.Errorf("takeover: receive devices: %w", err)
	}
	files, err := rights(oob[:oobn])
	if err == nil && flags&(unix.MSG_CTRUNC|unix.MSG_TRUNC) != 0 {
		err = fmt.Errorf("%w: message truncated", ErrProtocol)
	}
	var m *manifest
	if err == nil {
		if n < 4 || int(binary.BigEndian.Uint32(buf)) != n-4 {
			err = fmt.Errorf("%w: manifest length", ErrProtocol)
		} else {
			m, err = parseManifest(buf[4:n], len(files))
		}
	}
	if err != nil {
		for _, f := range files {
			f.Close()
		}
		return nil, err
	}
	r := &Received{c: c}
	for _, d := range m.Devices {
		dev := Device{Interface: d.Interface, Kind: d.Kind, Files: files[:d.FDs]}
		copy(dev.MAC[:], d.MAC)
		r.Devices = append(r.Devices, dev)
		files = files[d.FDs:]
	}
	return r, nil
}

// rights returns the descriptors of the SCM_RIGHTS messages in oob.
func rights(oob []byte) ([]*os.File, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("%w: control message: %w", ErrProtocol, err)
	}
	var files []*os.File
	for _, cm := range msgs {
		fds, err := unix.ParseUnixRights(&cm)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			files = append(files, os.NewFile(uintptr(fd), "takeover"))
		}
	}
	return files, nil
}

// Table tells the giver that the devices are held, and returns the table
// snapshot it then sends (for conntrack.DecodeSnapshot).
func (r *Received) Table() ([]byte, error) {
	if _, err := r.c.Write([]byte{ackDevices}); err != nil {
		return nil, fmt.Errorf("takeover: ack devices: %w", err)
	}
	var hdr [4]byte
	if _, err := io.ReadFull(r.c, hdr[:]); err != nil {
		return nil, fmt.Errorf("takeover: receive table: %w", err)
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > MaxTable {
		return nil, fmt.Errorf("%w: table of %d bytes, at most %d", ErrProtocol, n, MaxTable)
	}
	table := make([]byte, n)
	if _, err := io.ReadFull(r.c, table); err != nil {
		return nil, fmt.Errorf("takeover: receive table: %w", err)
	}
	return table, nil
}

// Running tells the giver that the taker runs: the giver exits.
func (r *Received) Running() error {
	if _, err := r.c.Write([]byte{ackRunning}); err != nil {
		return fmt.Errorf("takeover: ack running: %w", err)
	}
	return nil
}
