package adm

import (
	"io"
)

// FindService returns the service id names, or nil.
func FindService(t *Table, id ServiceID) *Service {
	for i := range t.Services {
		s := &t.Services[i]
		if id.Mark != 0 {
			if s.Mark == id.Mark {
				return s
			}
			continue
		}
		if s.Mark == 0 && s.Proto == id.Proto && s.Addr == id.Addr && s.Port == id.Port {
			return s
		}
	}
	return nil
}

// Render prints what a listing command (-L, -l, -S) shows of t: the table,
// one service, the timeouts or the connections (conns, read only for -c).
// A service that does not exist is ipvsadm's "No such service".
func (p *Printer) Render(w io.Writer, c *Command, t *Table, conns []Conn) error {
	if c.Cmd == CmdSave {
		p.WriteList(w, t, c.Format|FmtRule)
		return nil
	}
	switch {
	case c.Has(optConnection):
		p.WriteConns(w, conns, c.Format)
	case c.Has(optService):
		s := FindService(t, c.Svc)
		if s == nil {
			return &Error{Msg: "No such service", Code: ExitFailed}
		}
		p.WriteService(w, s, c.Format)
	case c.Has(optTimeout):
		WriteTimeout(w, t)
	case c.Has(optDaemon):
		// lvsd runs no connection synchronisation daemon: nothing to list.
	default:
		p.WriteList(w, t, c.Format)
	}
	return nil
}

// WantsConns reports whether the listing c asks for shows connections.
func (c *Command) WantsConns() bool { return c.Cmd == CmdList && c.Has(optConnection) }
