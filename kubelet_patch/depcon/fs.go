package depcon

import (
	"fmt"
	"io"
	"os"
	"sort"
)

// FS is everything the Manager needs from the filesystem that holds the vif
// slots (/proc/oslab). It is the only way the Manager touches the host's
// procfs, so tests can point it at a temporary directory (OSFS with another
// root) or inject the errno answers only the kernel module gives.
type FS interface {
	// ReadDir returns the names of the entries of dir.
	ReadDir(dir string) ([]string, error)
	// ReadFile returns the whole content of name.
	ReadFile(name string) ([]byte, error)
	// WriteFile writes data to the existing file name in exactly one
	// write(2): the vif module accepts a value only as one whole buffer.
	// It never creates the file.
	WriteFile(name string, data []byte) error
}

// OSFS is the real filesystem.
type OSFS struct{}

var _ FS = OSFS{}

// ReadDir implements FS.
func (OSFS) ReadDir(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names, nil
}

// ReadFile implements FS.
func (OSFS) ReadFile(name string) ([]byte, error) {
	return os.ReadFile(name)
}

// WriteFile implements FS. O_TRUNC matters for regular files (tests) and is
// what a shell's `echo 5 > goal` does on procfs too; there is no O_CREATE, so
// a missing slot file is an error rather than a new file.
func (OSFS) WriteFile(name string, data []byte) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	n, err := f.Write(data)
	if err == nil && n < len(data) {
		err = fmt.Errorf("write %s: %w", name, io.ErrShortWrite)
	}
	if cerr := f.Close(); err == nil && cerr != nil {
		err = cerr
	}
	return err
}
