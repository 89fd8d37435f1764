package auth

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

func TestWriteSecretFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.token")
	for _, data := range []string{"first", "second, longer"} {
		if err := WriteSecretFile(path, []byte(data)); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(path)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("stat: %v, %v; want mode 0600", fi, err)
		}
		got, err := ReadSecretFile(path)
		if err != nil || string(got) != data {
			t.Errorf("ReadSecretFile = %q, %v; want %q", got, err, data)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries; want only the file (no temporary files left)", len(entries))
	}
	if err := WriteSecretFile(filepath.Join(dir, "missing", "x"), nil); err == nil {
		t.Error("WriteSecretFile into a missing directory succeeded")
	}
}

func TestReadSecretFile_Mode(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no Unix permission bits on Windows")
	}
	path := filepath.Join(t.TempDir(), "admin.token")
	if err := WriteSecretFile(path, []byte("s3cret")); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o620, 0o602, 0o660} {
		t.Run(fmt.Sprintf("%04o", mode), func(t *testing.T) {
			if err := os.Chmod(path, mode); err != nil {
				t.Fatal(err)
			}
			data, err := ReadSecretFile(path)
			if !errors.Is(err, ErrInsecureFile) {
				t.Fatalf("ReadSecretFile: %q, %v; want ErrInsecureFile", data, err)
			}
			if data != nil {
				t.Error("returned the data anyway")
			}
			if msg := err.Error(); !strings.Contains(msg, "chmod 600 "+path) || strings.Contains(msg, "s3cret") {
				t.Errorf("error %q: want it to name the fix for %s and not the content", msg, path)
			}
		})
	}
	for _, mode := range []os.FileMode{0o600, 0o400} {
		os.Chmod(path, mode)
		if _, err := ReadSecretFile(path); err != nil {
			t.Errorf("mode %04o: %v", mode, err)
		}
	}
	if _, err := ReadSecretFile(filepath.Dir(path)); err == nil {
		t.Error("ReadSecretFile of a directory succeeded")
	}
}

func TestLoadOrCreateAdminCredential(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	admin, ro, err := LoadOrCreateAdminCredential(dir)
	if err != nil {
		t.Fatal(err)
	}
	if admin.IsZero() || ro.IsZero() || admin.Equal(ro.Reveal()) {
		t.Fatalf("admin and readonly must be set and differ")
	}
	for _, name := range []string{AdminTokenFile, ReadonlyTokenFile} {
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, %v; want mode 0600", name, fi, err)
		}
	}
	admin2, ro2, err := LoadOrCreateAdminCredential(dir)
	if err != nil || admin2 != admin || ro2 != ro {
		t.Fatalf("reload gave other credentials (%v)", err)
	}

	// A hand-written token with a newline.
	if err := WriteSecretFile(filepath.Join(dir, AdminTokenFile), []byte("chosen-by-hand\n")); err != nil {
		t.Fatal(err)
	}
	if admin3, _, err := LoadOrCreateAdminCredential(dir); err != nil || admin3.Reveal() != "chosen-by-hand" {
		t.Errorf("hand-written token: %q, %v", admin3.Reveal(), err)
	}

	os.Chmod(filepath.Join(dir, ReadonlyTokenFile), 0o644)
	if _, _, err := LoadOrCreateAdminCredential(dir); !errors.Is(err, ErrInsecureFile) || !strings.Contains(err.Error(), ReadonlyTokenFile) {
		t.Errorf("loose readonly.token: %v; want ErrInsecureFile naming the file", err)
	}
	os.Chmod(filepath.Join(dir, ReadonlyTokenFile), 0o600)

	WriteSecretFile(filepath.Join(dir, AdminTokenFile), []byte(" \n"))
	if _, _, err := LoadOrCreateAdminCredential(dir); err == nil {
		t.Error("empty admin.token accepted")
	}
}

func TestLoadOrCreateAdminCredential_Concurrent(t *testing.T) {
	dir := t.TempDir()
	const n = 8
	var (
		wg   sync.WaitGroup
		got  [n][2]Secret
		errs [n]error
	)
	for i := range n {
		wg.Go(func() { got[i][0], got[i][1], errs[i] = LoadOrCreateAdminCredential(dir) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if got[i] != got[0] {
			t.Fatalf("caller %d got other credentials than caller 0", i)
		}
	}
}
