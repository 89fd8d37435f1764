package auth

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
)

// maxSecretFile bounds what ReadSecretFile reads; secret files are small.
const maxSecretFile = 1 << 20

// WriteSecretFile writes data to path with mode 0600, atomically: it writes
// a temporary file in the same directory, fsyncs it, renames it over path and
// fsyncs the directory. Readers see the old content or the new, never a mix.
// The directory must exist.
func WriteSecretFile(path string, data []byte) error {
	tmp, err := writeTemp(path, data)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write secret file %s: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}

// createSecretFile is WriteSecretFile that fails with an error matching
// fs.ErrExist instead of replacing an existing file, so two processes that
// create the same key at once agree on one value (the loser reads the
// winner's file).
func createSecretFile(path string, data []byte) error {
	tmp, err := writeTemp(path, data)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("create secret file %s: %w", path, err)
		}
		// Some filesystems have no hard links; O_EXCL still never
		// replaces a file, at the cost of a window where a concurrent
		// reader can see it half written.
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf("create secret file %s: %w", path, err)
		}
		if _, err := f.Write(data); err != nil {
			f.Close()
			return fmt.Errorf("create secret file %s: %w", path, err)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return fmt.Errorf("create secret file %s: %w", path, err)
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("create secret file %s: %w", path, err)
		}
	}
	return syncDir(filepath.Dir(path))
}

// writeTemp writes data to a new 0600 file beside path, fsynced, and returns
// its name.
func writeTemp(path string, data []byte) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return "", fmt.Errorf("write secret file %s: %w", path, err)
	}
	tmp := f.Name()
	fail := func(err error) (string, error) {
		f.Close()
		os.Remove(tmp)
		return "", fmt.Errorf("write secret file %s: %w", path, err)
	}
	// CreateTemp already uses 0600; say so explicitly in case that changes.
	if err := f.Chmod(0o600); err != nil && runtime.GOOS != "windows" {
		return fail(err)
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("write secret file %s: %w", path, err)
	}
	return tmp, nil
}

// syncDir makes a rename or link in dir durable. Windows cannot fsync a
// directory, and there it is not needed.
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// ReadSecretFile reads a file that holds a secret. It refuses, with an error
// that wraps ErrInsecureFile and names the file and the fix (chmod 600), a
// file that its group or others can read or write: a secret that other users
// could already have read is not one to keep using silently. It also refuses
// anything but a regular file. The mode check is skipped on Windows, where
// Unix permission bits mean nothing.
func ReadSecretFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read secret file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read secret file %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("read secret file %s: not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 && runtime.GOOS != "windows" {
		return nil, fmt.Errorf("read secret file %s: %w (mode %04o); fix it with: chmod 600 %s",
			path, ErrInsecureFile, perm, path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		return nil, fmt.Errorf("read secret file %s: %w", path, err)
	}
	if len(data) > maxSecretFile {
		return nil, fmt.Errorf("read secret file %s: larger than %d bytes", path, maxSecretFile)
	}
	return data, nil
}

// Names of the control-plane credential files that
// LoadOrCreateAdminCredential keeps in the data directory.
const (
	AdminTokenFile    = "admin.token"
	ReadonlyTokenFile = "readonly.token"
)

// LoadOrCreateAdminCredential returns the control plane's two credentials:
// admin (full access) and readonly, kept in dir as admin.token and
// readonly.token (mode 0600; dir is created 0700 if missing). A missing file
// is created with a new random key (NewKey); an existing one is read with
// ReadSecretFile, so a file with loose permissions is an error. Surrounding
// white space in the files is ignored, so a hand-edited token with a
// trailing newline still works.
func LoadOrCreateAdminCredential(dir string) (admin, readonly Secret, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", fmt.Errorf("load admin credential: %w", err)
	}
	if admin, err = loadOrCreateToken(filepath.Join(dir, AdminTokenFile)); err != nil {
		return "", "", err
	}
	if readonly, err = loadOrCreateToken(filepath.Join(dir, ReadonlyTokenFile)); err != nil {
		return "", "", err
	}
	return admin, readonly, nil
}

func loadOrCreateToken(path string) (Secret, error) {
	for range 2 {
		data, err := ReadSecretFile(path)
		if err == nil {
			tok := bytes.TrimSpace(data)
			if len(tok) == 0 {
				return "", fmt.Errorf("read secret file %s: empty; delete it to create a new credential", path)
			}
			return Secret(tok), nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		key := NewKey()
		err = createSecretFile(path, []byte(key.Reveal()+"\n"))
		if err == nil {
			return key, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return "", err
		}
		// Another process created it first; read theirs.
	}
	return "", fmt.Errorf("create secret file %s: file keeps appearing and disappearing", path)
}
