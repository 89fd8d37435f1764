package artifact

import (
	"archive/tar"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
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
	d1, err := s.Put(bytes.NewReader(buf.Bytes()))
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
	d2, _ := s.Put(&buf)
	if d1 != d2 {
		t.Errorf("same content, different digests %s %s", d1, d2)
	}
	write(t, filepath.Join(src, "a.pkl"), "changed")
	buf.Reset()
	Pack(&buf, src, true)
	d3, _ := s.Put(&buf)
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
	d, err := s.Put(&buf)
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
			if _, err := s.Put(&buf); !errors.Is(err, ErrInvalid) {
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
