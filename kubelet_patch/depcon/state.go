package depcon

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// stateVersion is the schema of the state file.
const stateVersion = 1

// owner records that this kubelet put a container's PID into a slot.
type owner struct {
	Slot        string `json:"slot"`
	PID         int    `json:"pid"`
	ContainerID string `json:"containerID"`
	PodUID      string `json:"podUID"`
	Pod         string `json:"pod"`
	Container   string `json:"container"`

	// gen is the Manager's claim count at this claim; 0 for a slot loaded
	// from the state file of an earlier kubelet run. Reconcile releases only
	// slots claimed before it listed the containers.
	gen uint64
}

type stateFile struct {
	Version int      `json:"version"`
	Slots   []*owner `json:"slots"`
}

// loadState reads the slots an earlier kubelet run claimed. A missing file is
// an empty state.
func loadState(path string) ([]*owner, error) {
	if path == "" {
		return nil, nil
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var st stateFile
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("%s: state version %d, want %d", path, st.Version, stateVersion)
	}
	return st.Slots, nil
}

// saveState replaces the state file atomically (write, fsync, rename).
func saveState(path string, owners []*owner) error {
	if path == "" {
		return nil
	}
	data, err := json.MarshalIndent(stateFile{Version: stateVersion, Slots: owners}, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".slots-*.json")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) //nolint:errcheck // gone after a successful rename
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close() //nolint:errcheck // the write error is the one to report
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close() //nolint:errcheck // the sync error is the one to report
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
