// Package artifact stores deployment snapshots (model, code, conda file)
// content-addressed under the data dir, and packs local folders into the tar
// streams the CLI uploads.
//
// Snapshots are immutable: files are extracted read-only, entries cannot
// escape their snapshot (absolute paths, "..", links and special files are
// refused), so later edits of the user's files never change a running
// deployment and one deployment cannot write into another's snapshot.
package artifact

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/moe-serving/moe/internal/store"
)

// ErrInvalid is returned for archives that are malformed or try to escape.
var ErrInvalid = errors.New("artifact: invalid archive")

// Limits on what one snapshot may hold.
const (
	MaxFiles = 10000
	MaxBytes = 8 << 30
)

// Store keeps snapshots under Dir/<digest-hex>/. The zero value is not
// usable; set Dir.
type Store struct {
	Dir string
	// KeepTar also keeps each uploaded stream as Dir/<digest-hex>.tar, so
	// WriteTar serves exactly the bytes that were uploaded (whose sha256 is
	// the digest) whatever tool made the tar. The Kubernetes runner's pods
	// download snapshots; the local runner only needs the extracted folder.
	KeepTar bool
	// Shared, when set, receives every uploaded stream, byte for byte, and
	// is where every replica of the control plane finds snapshots that
	// were uploaded through another one (PostgreSQL: store.Blobs). Dir is
	// then this replica's cache of extracted snapshots, filled on demand by
	// Local, and WriteTar serves from Shared.
	Shared store.Blobs
}

// Path returns the folder of a snapshot ("sha256:<hex>") in Dir, whether
// or not it is there (see Local).
func (s *Store) Path(digest string) (string, error) {
	hexd, ok := strings.CutPrefix(digest, "sha256:")
	if !ok || len(hexd) != 64 || strings.Trim(hexd, "0123456789abcdef") != "" {
		return "", fmt.Errorf("artifact %q: not a sha256 digest", digest)
	}
	return filepath.Join(s.Dir, hexd), nil
}

func (s *Store) hasLocal(digest string) bool {
	p, err := s.Path(digest)
	if err != nil {
		return false
	}
	_, err = os.Stat(p)
	return err == nil
}

// Has reports whether a snapshot is stored, here or in Shared.
func (s *Store) Has(ctx context.Context, digest string) (bool, error) {
	if _, err := s.Path(digest); err != nil {
		return false, err
	}
	if s.hasLocal(digest) {
		return true, nil
	}
	if s.Shared == nil {
		return false, nil
	}
	ok, err := s.Shared.HasBlob(ctx, digest)
	if err != nil {
		return false, fmt.Errorf("artifact %s: %w", digest, err)
	}
	return ok, nil
}

// Local returns the folder of a snapshot in Dir, extracting it from
// Shared first when it was uploaded through another replica. The error
// wraps fs.ErrNotExist when the snapshot is stored nowhere.
func (s *Store) Local(ctx context.Context, digest string) (string, error) {
	p, err := s.Path(digest)
	if err != nil {
		return "", err
	}
	if s.hasLocal(digest) {
		return p, nil
	}
	if s.Shared == nil {
		return "", fmt.Errorf("artifact %s: %w", digest, fs.ErrNotExist)
	}
	r, err := s.Shared.OpenBlob(ctx, digest)
	if errors.Is(err, store.ErrNotFound) {
		return "", fmt.Errorf("artifact %s: %w", digest, fs.ErrNotExist)
	}
	if err != nil {
		return "", fmt.Errorf("artifact %s: %w", digest, err)
	}
	defer r.Close()
	got, err := s.put(ctx, r, false)
	if err != nil {
		return "", fmt.Errorf("artifact %s from the shared store: %w", digest, err)
	}
	if got != digest {
		return "", fmt.Errorf("artifact %s from the shared store hashes to %s", digest, got)
	}
	return p, nil
}

// Put reads an uncompressed tar stream, extracts it safely and returns its
// digest (sha256 of the stream). Storing the same bytes twice is a no-op.
// With Shared, the stream is also stored there before Put returns.
func (s *Store) Put(ctx context.Context, r io.Reader) (string, error) {
	return s.put(ctx, r, s.Shared != nil)
}

func (s *Store) put(ctx context.Context, r io.Reader, share bool) (string, error) {
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		return "", fmt.Errorf("artifact store: %w", err)
	}
	tmp, err := os.MkdirTemp(s.Dir, ".incoming-")
	if err != nil {
		return "", fmt.Errorf("artifact store: %w", err)
	}
	defer makeWritable(tmp)
	defer os.RemoveAll(tmp)
	h := sha256.New()
	var sink io.Writer = h
	var raw *os.File
	if s.KeepTar || share {
		if raw, err = os.CreateTemp(s.Dir, ".incoming-*.tar"); err != nil {
			return "", fmt.Errorf("artifact store: %w", err)
		}
		defer os.Remove(raw.Name())
		defer raw.Close()
		sink = io.MultiWriter(h, raw)
	}
	if err := extract(io.TeeReader(r, sink), tmp); err != nil {
		return "", err
	}
	// drain trailing padding so the digest covers the whole stream
	if _, err := io.Copy(sink, r); err != nil {
		return "", fmt.Errorf("artifact: read: %w", err)
	}
	digest := "sha256:" + hex.EncodeToString(h.Sum(nil))
	dst, _ := s.Path(digest)
	if share {
		if _, err := raw.Seek(0, io.SeekStart); err != nil {
			return "", fmt.Errorf("artifact store: %w", err)
		}
		if err := s.Shared.PutBlob(ctx, digest, raw); err != nil {
			return "", fmt.Errorf("artifact store: %w", err)
		}
	}
	if raw != nil && s.KeepTar {
		if err := raw.Close(); err != nil {
			return "", fmt.Errorf("artifact store: %w", err)
		}
		if _, err := os.Stat(dst + ".tar"); err != nil {
			if err := os.Rename(raw.Name(), dst+".tar"); err != nil {
				return "", fmt.Errorf("artifact store: %w", err)
			}
		}
	}
	if _, err := os.Stat(dst); err == nil {
		return digest, nil
	}
	if err := readOnly(tmp); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, dst); err != nil {
		if _, statErr := os.Stat(dst); statErr == nil {
			return digest, nil // a concurrent Put won
		}
		return "", fmt.Errorf("artifact store: %w", err)
	}
	return digest, nil
}

func extract(r io.Reader, dir string) error {
	tr := tar.NewReader(r)
	files, total := 0, int64(0)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		name := path.Clean(strings.TrimPrefix(hdr.Name, "./"))
		if name == "." {
			continue
		}
		if !fs.ValidPath(name) {
			return fmt.Errorf("%w: entry %q escapes the snapshot", ErrInvalid, hdr.Name)
		}
		dst := filepath.Join(dir, filepath.FromSlash(name))
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			files++
			total += hdr.Size
			if files > MaxFiles || total > MaxBytes {
				return fmt.Errorf("%w: more than %d files or %d bytes", ErrInvalid, MaxFiles, MaxBytes)
			}
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
			if err != nil {
				return fmt.Errorf("%w: entry %q: %v", ErrInvalid, hdr.Name, err)
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("artifact: write %q: %w", hdr.Name, err)
			}
		default:
			return fmt.Errorf("%w: entry %q is a link or special file; only regular files and folders are allowed", ErrInvalid, hdr.Name)
		}
	}
}

func readOnly(dir string) error {
	// files first, then folders bottom-up, so the walk can still descend
	var dirs []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, p)
			return nil
		}
		return os.Chmod(p, 0o444)
	})
	if err != nil {
		return err
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := os.Chmod(dirs[i], 0o555); err != nil {
			return err
		}
	}
	return nil
}

func makeWritable(dir string) {
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o755)
		}
		return nil
	})
}

// Remove deletes this replica's copy of a snapshot (not the shared one).
func (s *Store) Remove(digest string) error {
	p, err := s.Path(digest)
	if err != nil {
		return err
	}
	makeWritable(p)
	os.Remove(p + ".tar")
	return os.RemoveAll(p)
}

// WriteTar writes a stored snapshot as a tar stream: the uploaded bytes
// when they were kept (KeepTar) or shared (Shared), else a deterministic tar
// of the folder (Pack's format: byte for byte what the CLI uploaded, so its
// sha256 is the digest for snapshots the CLI made). The error wraps
// fs.ErrNotExist when the snapshot is stored nowhere.
func (s *Store) WriteTar(ctx context.Context, w io.Writer, digest string) error {
	p, err := s.Path(digest)
	if err != nil {
		return err
	}
	if f, err := os.Open(p + ".tar"); err == nil {
		defer f.Close()
		_, err = io.Copy(w, f)
		return err
	}
	if s.Shared != nil {
		r, err := s.Shared.OpenBlob(ctx, digest)
		if err == nil {
			defer r.Close()
			_, err = io.Copy(w, r)
			return err
		}
		if !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("artifact %s: %w", digest, err)
		}
	}
	if _, err := os.Stat(p); err != nil {
		return err
	}
	_, err = Pack(w, p, false)
	return err
}

// Pack writes a deterministic tar of src to w: for a folder, its contents
// (under base/ when keepBase is set); for a single file, the file itself.
// Symlinks inside src are followed when they stay inside src and refused
// otherwise. It reports whether src is a single file.
func Pack(w io.Writer, src string, keepBase bool) (isFile bool, err error) {
	src, err = filepath.Abs(src)
	if err != nil {
		return false, err
	}
	info, err := os.Stat(src)
	if err != nil {
		return false, err
	}
	tw := tar.NewWriter(w)
	if !info.IsDir() {
		if err := addFile(tw, src, info.Name(), info); err != nil {
			return true, err
		}
		return true, tw.Close()
	}
	realRoot, err := filepath.EvalSymlinks(src)
	if err != nil {
		return false, err
	}
	prefix := ""
	if keepBase {
		prefix = filepath.Base(src)
		if err := tw.WriteHeader(&tar.Header{Name: prefix + "/", Typeflag: tar.TypeDir, Mode: 0o755, Format: tar.FormatPAX}); err != nil {
			return false, err
		}
	}
	var paths []string
	err = filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == src {
			return nil
		}
		if d.IsDir() && (d.Name() == "__pycache__" || d.Name() == ".git") {
			return filepath.SkipDir
		}
		paths = append(paths, p)
		return nil
	})
	if err != nil {
		return false, err
	}
	sort.Strings(paths)
	files := 0
	for _, p := range paths {
		rel, _ := filepath.Rel(src, p)
		name := filepath.ToSlash(filepath.Join(prefix, rel))
		li, err := os.Lstat(p)
		if err != nil {
			return false, err
		}
		if li.Mode()&fs.ModeSymlink != 0 {
			target, err := filepath.EvalSymlinks(p)
			if err != nil {
				return false, fmt.Errorf("%s: broken symlink: %w", p, err)
			}
			if r, err := filepath.Rel(realRoot, target); err != nil || !filepath.IsLocal(r) {
				return false, fmt.Errorf("%s: symlink points outside %s (to %s); copy the file in instead", p, src, target)
			}
			li, err = os.Stat(p)
			if err != nil {
				return false, err
			}
			if li.IsDir() {
				return false, fmt.Errorf("%s: symlinked folders are not supported; copy the folder in instead", p)
			}
		}
		switch {
		case li.IsDir():
			if err := tw.WriteHeader(&tar.Header{Name: name + "/", Typeflag: tar.TypeDir, Mode: 0o755, Format: tar.FormatPAX}); err != nil {
				return false, err
			}
		case li.Mode().IsRegular():
			files++
			if files > MaxFiles {
				return false, fmt.Errorf("%s holds more than %d files", src, MaxFiles)
			}
			if err := addFile(tw, p, name, li); err != nil {
				return false, err
			}
		}
	}
	return false, tw.Close()
}

func addFile(tw *tar.Writer, p, name string, info fs.FileInfo) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: info.Size(), Format: tar.FormatPAX}); err != nil {
		return err
	}
	n, err := io.Copy(tw, f)
	if err == nil && n != info.Size() {
		err = fmt.Errorf("%s changed while packing it", p)
	}
	return err
}

// Unpack extracts a tar stream (as WriteTar writes it) into dir with Put's
// checks: no entry escapes dir, no links or special files, the same size
// limits. Files are left writable (dir is the caller's, e.g. a pod's
// volume).
func Unpack(r io.Reader, dir string) error { return extract(r, dir) }
