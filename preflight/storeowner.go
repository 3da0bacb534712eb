package preflight

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"syscall"
)

// StoreOwner is what a running agent writes beside its store
// (StoreOwnerPath): its process and its configuration file. A store is
// locked for as long as an agent runs on it; check reads this file to
// tell the running agent of the very configuration it checks, whose lock
// is expected, from another process that would stop an agent starting.
type StoreOwner struct {
	PID    int    `json:"pid"`
	Config string `json:"config"`
}

// StoreOwnerPath is the owner file of the store at path.
func StoreOwnerPath(store string) string { return store + ".owner" }

// WriteStoreOwner records this process as the agent of configPath that
// holds the store; remove takes the record away when it stops.
func WriteStoreOwner(store, configPath string) (remove func(), err error) {
	b, err := json.Marshal(StoreOwner{PID: os.Getpid(), Config: canonical(configPath)})
	if err != nil {
		return nil, err
	}
	path := StoreOwnerPath(store)
	if err := os.WriteFile(path, append(b, '\n'), 0o600); err != nil {
		return nil, err
	}
	return func() { _ = os.Remove(path) }, nil
}

// storeOwner reads the owner of a locked store, if a running process
// wrote one.
func storeOwner(store string) (StoreOwner, bool) {
	b, err := os.ReadFile(StoreOwnerPath(store))
	if err != nil {
		return StoreOwner{}, false
	}
	var o StoreOwner
	if json.Unmarshal(b, &o) != nil || o.PID <= 0 || !running(o.PID) {
		return StoreOwner{}, false
	}
	return o, true
}

// running reports whether process pid exists.
func running(pid int) bool {
	if pid == os.Getpid() {
		return true
	}
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	err = p.Signal(syscall.Signal(0))
	return err == nil || errors.Is(err, syscall.EPERM)
}

// canonical is path absolute and with its links resolved, so that two
// names of one file compare equal.
func canonical(path string) string {
	abs, err := filepath.Abs(path)
	if err != nil {
		return path
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		return real
	}
	return abs
}
