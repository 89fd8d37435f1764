package auth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/moe-serving/moe/internal/store"
)

// Settings is the part of store.Store that shared secrets live in.
type Settings interface {
	GetSetting(ctx context.Context, name string) (*store.Setting, error)
	PutSetting(ctx context.Context, s *store.Setting) error
}

// sealedSetting reads and writes one setting of the shared store, sealed
// with box, so every replica of the control plane and the gateway sees
// the same secret and the store never holds it in clear.
type sealedSetting struct {
	st   Settings
	box  *Box
	name string
}

// ErrOtherMasterKey is returned when a shared secret in the store was
// sealed with another master key than this process's.
var ErrOtherMasterKey = errors.New("sealed with another master key: give every control-plane and gateway replica the same master key (MOE_MASTER_KEY)")

func (s sealedSetting) load(ctx context.Context) ([]byte, int64, error) {
	v, err := s.st.GetSetting(ctx, s.name)
	if errors.Is(err, store.ErrNotFound) {
		return nil, 0, fmt.Errorf("%s: %w", s.name, fs.ErrNotExist)
	}
	if err != nil {
		return nil, 0, err
	}
	plain, err := s.box.Open(string(v.Value))
	if errors.Is(err, ErrDecrypt) {
		return nil, 0, fmt.Errorf("%s in the store: %w", s.name, ErrOtherMasterKey)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("%s in the store: %w", s.name, err)
	}
	return plain, v.Version, nil
}

func (s sealedSetting) put(ctx context.Context, data []byte, version int64) error {
	sealed, err := s.box.Seal(data)
	if err != nil {
		return err
	}
	return s.st.PutSetting(ctx, &store.Setting{Name: s.name, Value: []byte(sealed), Version: version})
}

// StoredKeySet is the KeySetStorage every replica shares: the key set as
// the setting store.SettingTokenKeys, sealed with the master key.
func StoredKeySet(st Settings, box *Box) KeySetStorage {
	return storedKeySet{sealedSetting{st, box, store.SettingTokenKeys}}
}

type storedKeySet struct{ s sealedSetting }

func (k storedKeySet) Load(ctx context.Context) ([]byte, int64, error) { return k.s.load(ctx) }

func (k storedKeySet) Create(ctx context.Context, data []byte) error {
	err := k.s.put(ctx, data, 0)
	if errors.Is(err, store.ErrConflict) {
		return fmt.Errorf("%w: %w", fs.ErrExist, err)
	}
	return err
}

func (k storedKeySet) Replace(ctx context.Context, data []byte, rev int64) error {
	err := k.s.put(ctx, data, rev)
	if errors.Is(err, store.ErrConflict) {
		return fmt.Errorf("%w: %w", ErrKeySetChanged, err)
	}
	return err
}

// LoadOrCreateSharedCredential returns the control plane's two API
// credentials (see LoadOrCreateAdminCredential) from the shared store, so
// every replica accepts the same ones. The first replica to start stores
// them: the ones in dir's files when they exist (an installation that
// predates the shared store keeps its credentials), else new ones. dir's
// files are then (re)written to hold the store's values, so the CLI on
// any replica's machine finds the credential that works; replaced reports
// whether a file held a different one.
func LoadOrCreateSharedCredential(ctx context.Context, st Settings, box *Box, dir string) (admin, readonly Secret, replaced bool, err error) {
	local, lr, err := LoadOrCreateAdminCredential(dir)
	if err != nil {
		return "", "", false, err
	}
	get := func(name string, file string, mine Secret) (Secret, bool, error) {
		s := sealedSetting{st, box, name}
		for range 3 {
			v, _, err := s.load(ctx)
			if err == nil {
				v = bytes.TrimSpace(v)
				if string(v) == mine.Reveal() {
					return mine, false, nil
				}
				if err := WriteSecretFile(filepath.Join(dir, file), append(bytes.Clone(v), '\n')); err != nil {
					return "", false, err
				}
				return Secret(v), true, nil
			}
			if !errors.Is(err, fs.ErrNotExist) {
				return "", false, fmt.Errorf("load admin credential: %w", err)
			}
			err = s.put(ctx, []byte(mine.Reveal()), 0)
			if err == nil {
				return mine, false, nil
			}
			if !errors.Is(err, store.ErrConflict) {
				return "", false, fmt.Errorf("store admin credential: %w", err)
			}
			// another replica stored its credential first: use that one
		}
		return "", false, fmt.Errorf("load admin credential %s: it keeps appearing and disappearing", name)
	}
	a, r1, err := get(store.SettingAdminToken, AdminTokenFile, local)
	if err != nil {
		return "", "", false, err
	}
	r, r2, err := get(store.SettingReadonlyToken, ReadonlyTokenFile, lr)
	if err != nil {
		return "", "", false, err
	}
	return a, r, r1 || r2, nil
}
