package auth

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moe-serving/moe/internal/store/sqlite"
)

// twoReplicas opens one SQLite store twice, as two processes sharing it
// would (the PostgreSQL store passes the same settings contract in
// internal/store/storetest), and one master key for both.
func twoReplicas(t *testing.T) (a, b *sqlite.Store, box *Box) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "moe.db")
	a, err := sqlite.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	b, err = sqlite.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	box, err = BoxFromKey(make([]byte, BoxKeySize))
	if err != nil {
		t.Fatal(err)
	}
	return a, b, box
}

func TestSharedSigner_Replicas(t *testing.T) {
	ctx := t.Context()
	sa, sb, box := twoReplicas(t)
	a, err := OpenSharedSigner(ctx, StoredKeySet(sa, box))
	if err != nil {
		t.Fatal(err)
	}
	b, err := OpenSharedSigner(ctx, StoredKeySet(sb, box))
	if err != nil {
		t.Fatal(err)
	}
	// the second replica found the first one's key set
	old := issue(t, a, "fraud", time.Hour, t0)
	if err := b.Verify(old, "fraud", t0); err != nil {
		t.Fatalf("a token issued by replica a, verified by b: %v", err)
	}
	// rotate on b: a still signs with the previous key (valid everywhere)
	// until it reloads, then with b's new key
	if err := b.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	newKid := kidOf(t, issue(t, b, "fraud", time.Hour, t0))
	if kidOf(t, issue(t, a, "fraud", time.Hour, t0)) == newKid {
		t.Fatal("a knows b's new key without a reload")
	}
	if err := a.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	fresh := issue(t, a, "fraud", time.Hour, t0)
	if kidOf(t, fresh) != newKid {
		t.Error("after Reload, a does not sign with the key b rotated to")
	}
	for _, s := range []*Signer{a, b} {
		for _, tok := range []string{old, fresh} {
			if err := s.Verify(tok, "fraud", t0); err != nil {
				t.Errorf("verify after rotation: %v", err)
			}
		}
	}
	// concurrent rotations on both replicas: both land, none is lost
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for _, s := range []*Signer{a, b} {
		wg.Go(func() { errs <- s.Rotate(ctx) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent rotate: %v", err)
		}
	}
	a.Reload(ctx)
	if len(a.keys) != 4 {
		t.Errorf("%d keys after three rotations; want 4 (none lost)", len(a.keys))
	}
	if err := a.Verify(old, "fraud", t0); err != nil {
		t.Errorf("the first token after three rotations: %v", err)
	}
}

func TestSharedSigner_OtherMasterKey(t *testing.T) {
	ctx := t.Context()
	sa, sb, box := twoReplicas(t)
	if _, err := OpenSharedSigner(ctx, StoredKeySet(sa, box)); err != nil {
		t.Fatal(err)
	}
	other, _ := BoxFromKey([]byte(strings.Repeat("k", BoxKeySize)))
	_, err := OpenSharedSigner(ctx, StoredKeySet(sb, other))
	if !errors.Is(err, ErrOtherMasterKey) || !strings.Contains(err.Error(), "MOE_MASTER_KEY") {
		t.Errorf("a replica with another master key: %v", err)
	}
	// and it did not overwrite the stored key set
	if _, err := OpenSharedSigner(ctx, StoredKeySet(sb, box)); err != nil {
		t.Errorf("the right key after the wrong one: %v", err)
	}
}

func TestSharedCredential(t *testing.T) {
	ctx := t.Context()
	sa, sb, box := twoReplicas(t)
	// replica a predates the shared store: its files become the shared ones
	dirA := t.TempDir()
	WriteSecretFile(filepath.Join(dirA, AdminTokenFile), []byte("moe-admin-of-a\n"))
	admin, ro, replaced, err := LoadOrCreateSharedCredential(ctx, sa, box, dirA)
	if err != nil {
		t.Fatal(err)
	}
	if admin.Reveal() != "moe-admin-of-a" || replaced || ro.Reveal() == "" || ro == admin {
		t.Fatalf("replica a: admin %q readonly set %v replaced %v", admin.Reveal(), ro != "", replaced)
	}
	// replica b starts with an empty data dir: same credentials, in its files
	dirB := t.TempDir()
	admin2, ro2, _, err := LoadOrCreateSharedCredential(ctx, sb, box, dirB)
	if err != nil {
		t.Fatal(err)
	}
	if admin2 != admin || ro2 != ro {
		t.Error("replica b got other credentials than a")
	}
	if b, _ := ReadSecretFile(filepath.Join(dirB, AdminTokenFile)); strings.TrimSpace(string(b)) != admin.Reveal() {
		t.Errorf("replica b's admin.token holds %q", b)
	}
	// a replica whose file holds another credential is told and corrected
	dirC := t.TempDir()
	WriteSecretFile(filepath.Join(dirC, AdminTokenFile), []byte("stale\n"))
	admin3, _, replaced, err := LoadOrCreateSharedCredential(ctx, sb, box, dirC)
	if err != nil || admin3 != admin || !replaced {
		t.Errorf("stale file: admin %v replaced %v err %v", admin3 == admin, replaced, err)
	}
	if fi, err := os.Stat(filepath.Join(dirC, AdminTokenFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("rewritten admin.token: %v %v", fi, err)
	}
	// the store holds them sealed, never in clear
	v, err := sa.GetSetting(ctx, "admin-token")
	if err != nil || strings.Contains(string(v.Value), admin.Reveal()) {
		t.Errorf("stored admin credential in clear or missing: %v", err)
	}
}
