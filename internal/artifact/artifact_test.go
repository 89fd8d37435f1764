package artifact

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/moe-serving/moe/internal/store"
)

func write(t *testing.T, p, s string) {
	t.Helper()
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestPackPutRoundTrip(t *testing.T) {
	src := filepath.Join(t.TempDir(), "model")
	write(t, filepath.Join(src, "a.pkl"), "A")
	write(t, filepath.Join(src, "sub", "b.txt"), "B")
	os.Symlink("a.pkl", filepath.Join(src, "link.pkl")) // inside: followed
	s := &Store{Dir: t.TempDir()}
	var buf bytes.Buffer
	if _, err := Pack(&buf, src, true); err != nil {
		t.Fatal(err)
	}
	d1, err := s.Put(t.Context(), bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	p, _ := s.Path(d1)
	for name, want := range map[string]string{"model/a.pkl": "A", "model/sub/b.txt": "B", "model/link.pkl": "A"} {
		got, err := os.ReadFile(filepath.Join(p, name))
		if err != nil || string(got) != want {
			t.Errorf("%s = %q, %v; want %q", name, got, err, want)
		}
	}
	// snapshot is read-only
	if os.Geteuid() != 0 { // root ignores file modes
		if err := os.WriteFile(filepath.Join(p, "model", "a.pkl"), []byte("X"), 0o644); err == nil {
			t.Error("snapshot file is writable")
		}
	}
	if fi, _ := os.Stat(filepath.Join(p, "model", "a.pkl")); fi.Mode().Perm()&0o222 != 0 {
		t.Errorf("snapshot file mode %v is writable", fi.Mode())
	}
	// deterministic: packing again gives the same digest; editing changes it
	buf.Reset()
	Pack(&buf, src, true)
	d2, _ := s.Put(t.Context(), &buf)
	if d1 != d2 {
		t.Errorf("same content, different digests %s %s", d1, d2)
	}
	write(t, filepath.Join(src, "a.pkl"), "changed")
	buf.Reset()
	Pack(&buf, src, true)
	d3, _ := s.Put(t.Context(), &buf)
	if d3 == d1 {
		t.Error("edited content kept the digest")
	}
	if got, _ := os.ReadFile(filepath.Join(p, "model", "a.pkl")); string(got) != "A" {
		t.Error("editing the source changed the stored snapshot")
	}
}

func TestPackSingleFile(t *testing.T) {
	f := filepath.Join(t.TempDir(), "m.pkl")
	write(t, f, "M")
	var buf bytes.Buffer
	isFile, err := Pack(&buf, f, true)
	if err != nil || !isFile {
		t.Fatalf("Pack file: %v %v", isFile, err)
	}
	s := &Store{Dir: t.TempDir()}
	d, err := s.Put(t.Context(), &buf)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := s.Path(d)
	if got, _ := os.ReadFile(filepath.Join(p, "m.pkl")); string(got) != "M" {
		t.Errorf("single file not at snapshot root: %q", got)
	}
}

func TestPackRefusesEscapingSymlink(t *testing.T) {
	root := t.TempDir()
	write(t, filepath.Join(root, "secret"), "S")
	src := filepath.Join(root, "code")
	write(t, filepath.Join(src, "score.py"), "x")
	os.Symlink(filepath.Join(root, "secret"), filepath.Join(src, "leak"))
	if _, err := Pack(&bytes.Buffer{}, src, false); err == nil {
		t.Fatal("packed a symlink pointing outside the folder")
	}
}

func TestPutRefusesHostileArchives(t *testing.T) {
	for name, hdr := range map[string]*tar.Header{
		"dotdot":   {Name: "../evil", Typeflag: tar.TypeReg, Size: 1, Mode: 0o644},
		"deep":     {Name: "a/../../evil", Typeflag: tar.TypeReg, Size: 1, Mode: 0o644},
		"absolute": {Name: "/etc/evil", Typeflag: tar.TypeReg, Size: 1, Mode: 0o644},
		"symlink":  {Name: "link", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"},
		"hardlink": {Name: "hl", Typeflag: tar.TypeLink, Linkname: "/etc/passwd"},
		"device":   {Name: "dev", Typeflag: tar.TypeChar},
	} {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			tw.WriteHeader(hdr)
			if hdr.Size > 0 {
				tw.Write([]byte("x"))
			}
			tw.Close()
			dir := t.TempDir()
			s := &Store{Dir: filepath.Join(dir, "store")}
			if _, err := s.Put(t.Context(), &buf); !errors.Is(err, ErrInvalid) {
				t.Fatalf("Put = %v, want ErrInvalid", err)
			}
			if _, err := os.Stat(filepath.Join(dir, "evil")); err == nil {
				t.Fatal("archive wrote outside the store")
			}
			entries, _ := os.ReadDir(s.Dir)
			if len(entries) != 0 {
				t.Fatalf("refused archive left %d entries behind", len(entries))
			}
		})
	}
}

// memBlobs is an in-memory store.Blobs. It is a test double below the
// store seam: the real shared implementation (PostgreSQL) passes the same
// contract in internal/store/storetest, and the two-replica path is
// exercised against it in internal/api.
type memBlobs struct {
	mu    sync.Mutex
	blobs map[string][]byte
	opens int
}

func (m *memBlobs) PutBlob(ctx context.Context, digest string, r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(b)
	if "sha256:"+hex.EncodeToString(sum[:]) != digest {
		return store.ErrDigestMismatch
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.blobs == nil {
		m.blobs = map[string][]byte{}
	}
	m.blobs[digest] = b
	return nil
}

func (m *memBlobs) OpenBlob(ctx context.Context, digest string) (io.ReadCloser, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.blobs[digest]
	if !ok {
		return nil, store.ErrNotFound
	}
	m.opens++
	return io.NopCloser(bytes.NewReader(b)), nil
}

func (m *memBlobs) HasBlob(ctx context.Context, digest string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.blobs[digest]
	return ok, nil
}

func (m *memBlobs) DeleteBlob(ctx context.Context, digest string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.blobs, digest)
	return nil
}

// TestSharedReplicas: a snapshot uploaded through one replica (its own
// Dir) is found, served byte for byte and extracted on demand by another
// replica that shares only the blob store.
func TestSharedReplicas(t *testing.T) {
	ctx := t.Context()
	shared := &memBlobs{}
	a := &Store{Dir: t.TempDir(), Shared: shared}
	b := &Store{Dir: t.TempDir(), Shared: shared}
	// a tar made by another tool (not Pack's format): b must serve the
	// uploaded bytes, not a re-packed folder
	var up bytes.Buffer
	tw := tar.NewWriter(&up)
	tw.WriteHeader(&tar.Header{Name: "./score.py", Typeflag: tar.TypeReg, Mode: 0o600, Size: 5, Format: tar.FormatGNU})
	tw.Write([]byte("hello"))
	tw.Close()
	uploaded := append([]byte(nil), up.Bytes()...)
	d, err := a.Put(ctx, &up)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(a.Dir, strings.TrimPrefix(d, "sha256:")+".tar")); err == nil {
		t.Error("a kept a local .tar copy although the shared store has the bytes")
	}
	if ok, err := b.Has(ctx, d); err != nil || !ok {
		t.Fatalf("b.Has: %v %v", ok, err)
	}
	var got bytes.Buffer
	if err := b.WriteTar(ctx, &got, d); err != nil || !bytes.Equal(got.Bytes(), uploaded) {
		t.Fatalf("b.WriteTar: %v; same bytes %v", err, bytes.Equal(got.Bytes(), uploaded))
	}
	dir, err := b.Local(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	if s, err := os.ReadFile(filepath.Join(dir, "score.py")); err != nil || string(s) != "hello" {
		t.Errorf("b's extracted snapshot: %q %v", s, err)
	}
	opens := shared.opens
	if _, err := b.Local(ctx, d); err != nil || shared.opens != opens {
		t.Errorf("second Local fetched again (%d opens) or failed: %v", shared.opens-opens, err)
	}
	// absent everywhere
	missing := "sha256:" + strings.Repeat("0", 64)
	if ok, _ := b.Has(ctx, missing); ok {
		t.Error("Has of an absent snapshot")
	}
	if _, err := b.Local(ctx, missing); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Local of an absent snapshot: %v", err)
	}
	if err := b.WriteTar(ctx, io.Discard, missing); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("WriteTar of an absent snapshot: %v", err)
	}
	// a shared blob whose bytes are not a valid snapshot is refused on
	// extraction, and nothing is left in b's cache
	bad := []byte("not a tar at all, but stored under its own digest.......")
	sum := sha256.Sum256(bad)
	bd := "sha256:" + hex.EncodeToString(sum[:])
	shared.PutBlob(ctx, bd, bytes.NewReader(bad))
	if _, err := b.Local(ctx, bd); err == nil {
		t.Error("Local extracted garbage")
	}
	if p, _ := b.Path(bd); func() bool { _, err := os.Stat(p); return err == nil }() {
		t.Error("garbage left in the cache")
	}
}
