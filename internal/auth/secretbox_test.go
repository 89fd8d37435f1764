package auth

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBox_Roundtrip(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "conf", "secret.key")
	box, err := OpenBox(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, %v; want mode 0600", fi, err)
	}

	for _, plain := range [][]byte{nil, []byte("k"), []byte("primary-key-value"), bytes.Repeat([]byte{0xff}, 4096)} {
		s1, err := box.Seal(plain)
		if err != nil {
			t.Fatal(err)
		}
		s2, _ := box.Seal(plain)
		if !strings.HasPrefix(s1, "v1:") || s1 == s2 {
			t.Errorf("Seal(%d bytes) = %q, %q; want distinct v1: strings", len(plain), s1, s2)
		}
		if len(plain) > 8 && strings.Contains(s1, string(plain)) {
			t.Errorf("sealed value contains the plaintext")
		}
		// A second Box from the same file opens it.
		again, err := OpenBox(keyFile)
		if err != nil {
			t.Fatal(err)
		}
		got, err := again.Open(s1)
		if err != nil || !bytes.Equal(got, plain) {
			t.Errorf("Open(Seal(%d bytes)) = %d bytes, %v", len(plain), len(got), err)
		}
	}
}

func TestBox_Tampered(t *testing.T) {
	box, err := BoxFromKey(bytes.Repeat([]byte{7}, BoxKeySize))
	if err != nil {
		t.Fatal(err)
	}
	sealed, _ := box.Seal([]byte("secondary-key"))
	raw, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(sealed, "v1:"))
	for i := range raw {
		bad := bytes.Clone(raw)
		bad[i] ^= 0x01
		_, err := box.Open("v1:" + base64.StdEncoding.EncodeToString(bad))
		if !errors.Is(err, ErrDecrypt) {
			t.Fatalf("byte %d flipped: %v; want ErrDecrypt", i, err)
		}
	}
	for _, s := range []string{
		"", "v1:", "v1:AAAA", "v2:" + strings.TrimPrefix(sealed, "v1:"), strings.TrimPrefix(sealed, "v1:"),
		sealed[:len(sealed)-4], "v1:!!!!", sealed + "AAAA",
	} {
		if _, err := box.Open(s); !errors.Is(err, ErrDecrypt) && !errors.Is(err, ErrSealedFormat) {
			t.Errorf("Open(%q): %v; want ErrDecrypt or ErrSealedFormat", s, err)
		}
	}
}

func TestBox_WrongKey(t *testing.T) {
	a, _ := OpenBox(filepath.Join(t.TempDir(), "a.key"))
	b, _ := OpenBox(filepath.Join(t.TempDir(), "b.key"))
	sealed, _ := a.Seal([]byte("x"))
	if _, err := b.Open(sealed); !errors.Is(err, ErrDecrypt) {
		t.Errorf("Open with another key: %v; want ErrDecrypt", err)
	}
}

func TestBoxFromKey(t *testing.T) {
	for _, n := range []int{0, 16, 31, 33} {
		if _, err := BoxFromKey(make([]byte, n)); err == nil {
			t.Errorf("BoxFromKey(%d bytes) succeeded", n)
		}
	}
}

func TestDecodeBoxKey(t *testing.T) {
	key := bytes.Repeat([]byte{0xfb, 0xef}, BoxKeySize/2) // has + / or - _ in base64
	for _, text := range []string{
		base64.StdEncoding.EncodeToString(key) + "\n",
		base64.RawStdEncoding.EncodeToString(key),
		"  " + base64.URLEncoding.EncodeToString(key),
		base64.RawURLEncoding.EncodeToString(key),
		string(key),
	} {
		got, err := DecodeBoxKey([]byte(text))
		if err != nil || !bytes.Equal(got, key) {
			t.Errorf("DecodeBoxKey(%q) = %x, %v", text, got, err)
		}
	}
	for _, text := range []string{"", "short", base64.StdEncoding.EncodeToString(key[:16])} {
		if _, err := DecodeBoxKey([]byte(text)); err == nil {
			t.Errorf("DecodeBoxKey(%q) succeeded", text)
		}
	}
}

func TestOpenBox_BadKeyFile(t *testing.T) {
	dir := t.TempDir()
	loose := filepath.Join(dir, "loose.key")
	os.WriteFile(loose, []byte(base64.StdEncoding.EncodeToString(make([]byte, 32))), 0o644)
	if _, err := OpenBox(loose); !errors.Is(err, ErrInsecureFile) {
		t.Errorf("OpenBox(0644 file): %v; want ErrInsecureFile", err)
	}
	short := filepath.Join(dir, "short.key")
	os.WriteFile(short, []byte("c2hvcnQ="), 0o600)
	if _, err := OpenBox(short); err == nil || !strings.Contains(err.Error(), short) {
		t.Errorf("OpenBox(short key): %v; want an error naming the file", err)
	}
}
