package auth

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// BoxKeySize is the length of a Box master key: 32 bytes, for AES-256.
const BoxKeySize = 32

// sealedPrefix starts every sealed string; the version names the algorithm
// (AES-256-GCM, 12-byte random nonce, sealedAAD) so it can change later.
const sealedPrefix = "v1:"

// sealedAAD binds a ciphertext to its purpose, so a value sealed here cannot
// be passed off as a ciphertext of some other use of the same key.
var sealedAAD = []byte("moe secretbox v1")

// Box encrypts secrets at rest (endpoint keys in the store, for example) with
// AES-256-GCM under one master key. A Box is safe for concurrent use. Make
// one with OpenBox or BoxFromKey; the zero Box is not usable.
type Box struct {
	aead cipher.AEAD
}

// OpenBox loads the master key from keyFile, or, if the file does not exist,
// creates it with a new random key (mode 0600; the directory is created 0700
// if missing). The file holds the key in standard base64 (one line); a file
// of exactly 32 raw bytes is accepted too. The file is read with
// ReadSecretFile, so loose permissions are an error.
//
// Losing the key file loses every secret sealed with it: back it up with the
// store.
func OpenBox(keyFile string) (*Box, error) {
	if err := os.MkdirAll(filepath.Dir(keyFile), 0o700); err != nil {
		return nil, fmt.Errorf("open secret box: %w", err)
	}
	for range 2 {
		data, err := ReadSecretFile(keyFile)
		if err == nil {
			key, err := DecodeBoxKey(data)
			if err != nil {
				return nil, fmt.Errorf("open secret box: key file %s: %w", keyFile, err)
			}
			return BoxFromKey(key)
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("open secret box: %w", err)
		}
		key := make([]byte, BoxKeySize)
		rand.Read(key)
		text := base64.StdEncoding.EncodeToString(key) + "\n"
		err = createSecretFile(keyFile, []byte(text))
		if err == nil {
			return BoxFromKey(key)
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("open secret box: %w", err)
		}
		// Another process created the key first; use theirs.
	}
	return nil, fmt.Errorf("open secret box: key file %s keeps appearing and disappearing", keyFile)
}

// DecodeBoxKey decodes a master key as found in a key file or an environment
// variable: 32 bytes in standard or URL-safe base64 (padded or not), with
// surrounding white space ignored, or exactly 32 raw bytes.
func DecodeBoxKey(text []byte) ([]byte, error) {
	if len(text) == BoxKeySize {
		return bytes.Clone(text), nil
	}
	s := strings.TrimSpace(string(text))
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if key, err := enc.DecodeString(s); err == nil {
			if len(key) != BoxKeySize {
				return nil, fmt.Errorf("key is %d bytes, want %d", len(key), BoxKeySize)
			}
			return key, nil
		}
	}
	return nil, fmt.Errorf("key is neither %d raw bytes nor base64", BoxKeySize)
}

// BoxFromKey returns a Box for a 32-byte master key supplied by the
// deployment (an environment variable or a mounted secret; see DecodeBoxKey).
// The key is copied.
func BoxFromKey(key []byte) (*Box, error) {
	if len(key) != BoxKeySize {
		return nil, fmt.Errorf("secret box key is %d bytes, want %d", len(key), BoxKeySize)
	}
	block, err := aes.NewCipher(bytes.Clone(key))
	if err != nil {
		return nil, fmt.Errorf("secret box: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("secret box: %w", err)
	}
	return &Box{aead: aead}, nil
}

// Seal encrypts plaintext and returns "v1:" followed by the standard base64
// of nonce|ciphertext|tag. Every call uses a fresh random nonce, so sealing
// the same value twice gives different strings.
func (b *Box) Seal(plaintext []byte) (string, error) {
	ns := b.aead.NonceSize()
	buf := make([]byte, ns, ns+len(plaintext)+b.aead.Overhead())
	rand.Read(buf)
	buf = b.aead.Seal(buf, buf[:ns], plaintext, sealedAAD)
	return sealedPrefix + base64.StdEncoding.EncodeToString(buf), nil
}

// Open decrypts a string made by Seal. It returns an error wrapping
// ErrSealedFormat if s is not in that format, and ErrDecrypt if the key is
// wrong or s was changed.
func (b *Box) Open(s string) ([]byte, error) {
	rest, ok := strings.CutPrefix(s, sealedPrefix)
	if !ok {
		return nil, fmt.Errorf("open sealed secret: %w", ErrSealedFormat)
	}
	buf, err := base64.StdEncoding.Strict().DecodeString(rest)
	if err != nil {
		return nil, fmt.Errorf("open sealed secret: %w", ErrSealedFormat)
	}
	ns := b.aead.NonceSize()
	if len(buf) < ns+b.aead.Overhead() {
		return nil, fmt.Errorf("open sealed secret: %w", ErrDecrypt)
	}
	plain, err := b.aead.Open(nil, buf[:ns], buf[ns:], sealedAAD)
	if err != nil {
		return nil, fmt.Errorf("open sealed secret: %w", ErrDecrypt)
	}
	return plain, nil
}
