package runstate

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"

	"github.com/lvsd/lvsd/adm"
	"github.com/lvsd/lvsd/config"
	"github.com/lvsd/lvsd/control"
)

// Director is what Runtime changes and reads.
type Director interface {
	// Running returns a copy of the running table.
	Running() *config.Config
	// ApplyValidated applies cfg, a table adm.Validate returned,
	// atomically without validating it again, keeping established
	// connections as a reload does; origin names the change in logs.
	ApplyValidated(cfg *config.Config, origin string) error
	// Reload applies a whole configuration, interfaces included (which
	// may need a restart: director.ErrRestartNeeded).
	Reload(cfg *config.Config) error
	// NoteReload records the outcome of a reload for the status.
	NoteReload(err error)
	// Status gives the counters.
	Status() control.Status
	// Conns lists the connections, for ipvsadm -Lc.
	Conns() []adm.Conn
}

// Runtime runs ipvsadm commands against a director, keeps their changes
// in the state file, and merges them with the file at each reload.
type Runtime struct {
	d     Director
	store *Store // nil: changes last until lvsd stops
	log   *slog.Logger
	env   adm.Env

	mu sync.Mutex // serialises changes, reloads and discards
	// base is the file as last loaded. Guarded by mu.
	base *config.Config
	// zero holds the counters at the last -Z of each service and real
	// server (ipvsadm's zeroing), subtracted in listings. Guarded by mu.
	zero map[string]adm.Counters
}

// Options configure a Runtime.
type Options struct {
	Store   *Store // nil: no state file
	Logger  *slog.Logger
	Version string
	// Program names the program in messages ("ipvsadm"); the client's
	// name is used when a request gives one.
	Program string
	// Names, when set, gives listings without -n names and lets commands
	// name ports (ipvsadm's name lookups).
	Names *adm.FileNames
}

// Start returns the table to start with: the file merged with the runtime
// changes of the state file, if any. A damaged state file gives way to
// the previous good one; runtime changes that no longer fit the file
// (the merge does not validate) are set aside and the file alone runs.
func Start(file *config.Config, store *Store, log *slog.Logger) *config.Config {
	if store == nil {
		return file
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	base, running, damaged, err := store.Load()
	if damaged != nil {
		log.Warn("runtime state damaged; using the previous good one", "err", damaged)
	}
	if err != nil {
		if !errors.Is(err, ErrNoState) {
			log.Error("runtime state unreadable; starting from the file", "err", err)
		}
		return file
	}
	merged, err := adm.Validate(Merge(base, running, file))
	if err != nil {
		log.Error("runtime changes do not fit the file; starting from the file (lvsd config discard drops them)", "err", err)
		return file
	}
	merged.File = file.File
	log.Info("runtime changes restored", "state", store.Path)
	return merged
}

// New returns a Runtime over d, which runs a table made from file.
func New(d Director, file *config.Config, opts Options) *Runtime {
	rt := &Runtime{d: d, store: opts.Store, log: opts.Logger, base: file, zero: make(map[string]adm.Counters)}
	if rt.log == nil {
		rt.log = slog.New(slog.DiscardHandler)
	}
	rt.env = adm.Env{Program: opts.Program, Version: opts.Version, Table: rt.table, Conns: d.Conns}
	if opts.Names != nil {
		rt.env.Printer.Names, rt.env.Parser.Ports, rt.env.Parser.Hosts = opts.Names, opts.Names.Port, opts.Names.Addr
	}
	if rt.env.Program == "" {
		rt.env.Program = "ipvsadm"
	}
	return rt
}

// Adm runs one ipvsadm command line (stdin: the lines of -R) for the
// client who, applying its change atomically.
func (rt *Runtime) Adm(program string, args, stdin []string, who string) adm.Result {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	env := rt.env
	if program != "" {
		env.Program = program
	}
	cur := rt.d.Running()
	res := env.Run(cur, args, stdin)
	if res.Code != 0 {
		if len(args) > 0 {
			rt.log.Info("ipvsadm command refused", "client", who, "args", strings.Join(args, " "), "err", strings.TrimSpace(res.Stderr))
		}
		return res
	}
	if res.ZeroAll || len(res.Zero) > 0 {
		rt.zeroCounters(cur, res)
		rt.log.Info("counters zeroed", "client", who, "args", strings.Join(args, " "))
	}
	if res.Changed == nil {
		return res
	}
	res.Changed.File = cur.File
	if err := rt.d.ApplyValidated(res.Changed, "control socket: "+who); err != nil {
		res.Stderr, res.Code, res.Changed = "lvsd: "+err.Error()+"\n", adm.ExitFailed, nil
		rt.log.Error("runtime change refused", "client", who, "args", strings.Join(args, " "), "err", err)
		return res
	}
	rt.log.Info("runtime change applied", "client", who, "args", strings.Join(args, " "), "lines", len(stdin))
	rt.save(res.Changed)
	return res
}

// Persist writes the state of what runs now over the file as loaded: at
// start, so that the state's base is the file that runs.
func (rt *Runtime) Persist() {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.save(rt.d.Running())
}

// save writes the state, or removes it when the running table is the file.
// Preconditions: rt.mu held.
func (rt *Runtime) save(running *config.Config) {
	if rt.store == nil {
		return
	}
	var err error
	if Differs(rt.base, running) {
		err = rt.store.Save(rt.base, running)
	} else {
		err = rt.store.Discard()
	}
	if err != nil {
		rt.log.Error("runtime state not saved; changes last until lvsd stops", "err", err)
	}
}

// ReloadFile is the reload policy of lvsd (SIGHUP): it loads path and
// reloads it (Reload). A file that does not load or validate, or a reload
// that fails, keeps what runs; a file that changes interfaces applies its
// virtual services and returns the director's restart-needed error. The
// outcome is logged and recorded in the director's status.
func (rt *Runtime) ReloadFile(path string) error {
	cfg, err := config.Load(path)
	if err != nil {
		rt.d.NoteReload(err)
		rt.log.Error("reload rejected; keeping the running configuration", "err", err)
		return err
	}
	err = rt.Reload(cfg)
	rt.d.NoteReload(err)
	switch {
	case isRestartNeeded(err):
		rt.log.Warn("reload applied to virtual servers; interface changes need a restart", "err", err)
	case err != nil:
		rt.log.Error("reload failed; keeping the running configuration", "err", err)
	default:
		rt.log.Info("reloaded", "config", path)
	}
	return err
}

// Reload loads the file again, keeping the runtime changes of objects the
// file did not change. A merge that does not validate is refused, and what
// runs stays.
func (rt *Runtime) Reload(file *config.Config) error {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	merged, err := adm.Validate(Merge(rt.base, rt.d.Running(), file))
	if err != nil {
		return fmt.Errorf("runtime changes conflict with the file (lvsd config discard drops them): %s", strings.TrimPrefix(err.(*adm.Error).Msg, "lvsd: "))
	}
	merged.File = file.File
	err = rt.d.Reload(merged)
	if err != nil && !isRestartNeeded(err) {
		return err
	}
	rt.base = file
	rt.save(merged)
	return err
}

// RestartNeeded is set by cmd/lvsd to the director's ErrRestartNeeded.
var RestartNeeded error

func isRestartNeeded(err error) bool { return RestartNeeded != nil && errors.Is(err, RestartNeeded) }

// Discard drops every runtime change: file runs, as loaded now.
func (rt *Runtime) Discard(file *config.Config) error {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	err := rt.d.Reload(file)
	if err != nil && !isRestartNeeded(err) {
		return err
	}
	rt.base = file
	if rt.store != nil {
		if derr := rt.store.Discard(); derr != nil {
			return derr
		}
	}
	rt.log.Info("runtime changes discarded", "config", file.File)
	return err
}

// Dump is the running table as TOML that lvsd check accepts.
func (rt *Runtime) Dump() []byte { return config.Format(rt.d.Running()) }

// counterKey names a service or a real server of one in zero.
func counterKey(proto, addr, real string) string { return proto + " " + addr + " " + real }

// zeroCounters records the current counters as the new zeros (rates are
// estimates and are not zeroed).
// Preconditions: rt.mu held.
func (rt *Runtime) zeroCounters(cfg *config.Config, res adm.Result) {
	st := rt.d.Status()
	t := rt.tableFrom(cfg, &st, false)
	for _, s := range t.Services {
		if !res.ZeroAll && !zeroes(res.Zero, &s) {
			continue
		}
		k := svcAddr(&s.Service)
		rt.zero[counterKey(s.Proto.String(), k, "")] = s.Stats
		for _, d := range s.Dests {
			rt.zero[counterKey(s.Proto.String(), k, netip.AddrPortFrom(d.Addr, d.Port).String())] = d.Stats
		}
	}
}

func zeroes(ids []adm.ServiceID, s *adm.Service) bool {
	t := &adm.Table{Services: []adm.Service{*s}}
	for _, id := range ids {
		if adm.FindService(t, id) != nil {
			return true
		}
	}
	return false
}

// table lists cfg with the director's counters.
func (rt *Runtime) table(cfg *config.Config) *adm.Table {
	st := rt.d.Status()
	return rt.tableFrom(cfg, &st, true)
}

func svcAddr(s *config.Service) string { return netip.AddrPortFrom(s.Addr, s.Port).String() }

// tableFrom joins cfg with the counters of st, less the zeros when
// zeroed. Preconditions: rt.mu held.
func (rt *Runtime) tableFrom(cfg *config.Config, st *control.Status, zeroed bool) *adm.Table {
	t := &adm.Table{Timeouts: cfg.Timeouts}
	byAddr := make(map[string]*control.Service, len(st.Services))
	for i := range st.Services {
		s := &st.Services[i]
		byAddr[s.Protocol+" "+s.Address] = s
	}
	for _, s := range cfg.Services {
		k := svcAddr(&s)
		ts := adm.Service{Service: s}
		ss := byAddr[s.Proto.String()+" "+k]
		reals := map[string]*control.Real{}
		if ss != nil {
			ts.Stats, ts.Rates = counters(ss.Stats), rates(ss.Rates)
			for i := range ss.Reals {
				reals[ss.Reals[i].Address] = &ss.Reals[i]
			}
		}
		if zeroed {
			ts.Stats = sub(ts.Stats, rt.zero[counterKey(s.Proto.String(), k, "")])
		}
		// Running lists real servers in the order of the ipvsadm -a commands
		// that rebuild them; the kernel's list (what --nosort shows) is the
		// reverse: each -a adds at the head.
		for i := len(s.Reals) - 1; i >= 0; i-- {
			r := s.Reals[i]
			d := adm.Dest{Real: r}
			rk := netip.AddrPortFrom(r.Addr, r.Port).String()
			if sr := reals[rk]; sr != nil {
				d.ActiveConns, d.InactConns = uint32(max(sr.ActiveConn, 0)), uint32(max(sr.InactConn, 0))
				d.PersistConns = uint32(max(sr.PersistConns, 0))
				d.Down, d.Overloaded = !sr.Available, sr.Overloaded
				d.Stats, d.Rates = counters(sr.Stats), rates(sr.Rates)
			}
			if zeroed {
				d.Stats = sub(d.Stats, rt.zero[counterKey(s.Proto.String(), k, rk)])
			}
			ts.Dests = append(ts.Dests, d)
		}
		t.Services = append(t.Services, ts)
	}
	return t
}

func counters(s control.Stats) adm.Counters {
	return adm.Counters{Conns: s.Conns, InPkts: s.InPkts, OutPkts: s.OutPkts, InBytes: s.InBytes, OutBytes: s.OutBytes}
}

func rates(r control.Rates) adm.Counters {
	return adm.Counters{Conns: r.CPS, InPkts: r.InPPS, OutPkts: r.OutPPS, InBytes: r.InBPS, OutBytes: r.OutBPS}
}

func sub(a, b adm.Counters) adm.Counters {
	s := func(x, y uint64) uint64 {
		if y > x {
			return 0
		}
		return x - y
	}
	return adm.Counters{Conns: s(a.Conns, b.Conns), InPkts: s(a.InPkts, b.InPkts), OutPkts: s(a.OutPkts, b.OutPkts),
		InBytes: s(a.InBytes, b.InBytes), OutBytes: s(a.OutBytes, b.OutBytes)}
}
