package runstate

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/lvsd/lvsd/config"
)

// ErrNoState means there is no state file (nor a good previous one): no
// runtime changes to keep.
var ErrNoState = errors.New("no runtime state")

// Store is the state file at Path (and Path+".prev").
type Store struct {
	Path string
	mu   sync.Mutex // serialises writes
}

// record is the file's content. Sum is the SHA-256 of Base and Running,
// which a file cut short cannot match.
type record struct {
	Version int    `json:"version"`
	Base    string `json:"base"`
	Running string `json:"running"`
	Sum     string `json:"sum"`
}

func sum(base, running string) string {
	h := sha256.New()
	fmt.Fprintf(h, "%d:%s%d:%s", len(base), base, len(running), running)
	return hex.EncodeToString(h.Sum(nil))
}

// Save writes base and running atomically: write a temporary file, fsync,
// keep the current file as .prev, rename, fsync the directory.
func (s *Store) Save(base, running *config.Config) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := record{Version: 1, Base: string(config.Format(base)), Running: string(config.Format(running))}
	rec.Sum = sum(rec.Base, rec.Running)
	data, err := json.Marshal(&rec)
	if err != nil {
		return err
	}
	dir := filepath.Dir(s.Path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("save runtime state: %w", err)
	}
	tmp, err := os.CreateTemp(dir, filepath.Base(s.Path)+".tmp*")
	if err != nil {
		return fmt.Errorf("save runtime state: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("save runtime state: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("save runtime state: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save runtime state: %w", err)
	}
	// The current file, if good, becomes the fallback.
	if _, _, err := read(s.Path); err == nil {
		os.Remove(s.Path + ".prev")
		if err := os.Link(s.Path, s.Path+".prev"); err != nil {
			return fmt.Errorf("save runtime state: %w", err)
		}
	}
	if err := os.Rename(tmp.Name(), s.Path); err != nil {
		return fmt.Errorf("save runtime state: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// Load reads the state file; a damaged one (cut short, or not lvsd's)
// gives way to the previous good one, and damaged reports that.
func (s *Store) Load() (base, running *config.Config, damaged error, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	base, running, err = read(s.Path)
	switch {
	case err == nil:
		return base, running, nil, nil
	case errors.Is(err, os.ErrNotExist):
		return nil, nil, nil, ErrNoState
	}
	damaged = err
	base, running, err = read(s.Path + ".prev")
	if err != nil {
		return nil, nil, damaged, ErrNoState
	}
	return base, running, damaged, nil
}

// Discard removes the state: the file alone is the start state again.
func (s *Store) Discard() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range []string{s.Path, s.Path + ".prev"} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("discard runtime state: %w", err)
		}
	}
	return nil
}

func read(path string) (base, running *config.Config, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	var rec record
	if err := json.Unmarshal(data, &rec); err != nil {
		return nil, nil, fmt.Errorf("runtime state %s: damaged: %w", path, err)
	}
	if rec.Version != 1 || rec.Sum != sum(rec.Base, rec.Running) {
		return nil, nil, fmt.Errorf("runtime state %s: damaged: checksum mismatch", path)
	}
	if base, err = config.Parse(path+" (base)", []byte(rec.Base)); err != nil {
		return nil, nil, fmt.Errorf("runtime state %s: %w", path, err)
	}
	if running, err = config.Parse(path+" (running)", []byte(rec.Running)); err != nil {
		return nil, nil, fmt.Errorf("runtime state %s: %w", path, err)
	}
	return base, running, nil
}
