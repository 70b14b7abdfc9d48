package control

import (
	"net"

	"golang.org/x/sys/unix"
)

// peerOf reads the credentials of the process at the other end of a Unix
// socket (SO_PEERCRED): the uid, gid and pid it had when it connected.
func peerOf(c net.Conn) Peer {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return Peer{}
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return Peer{}
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) { cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) }); err != nil || cerr != nil {
		return Peer{}
	}
	return Peer{UID: cred.Uid, GID: cred.Gid, PID: cred.Pid, Known: true}
}
