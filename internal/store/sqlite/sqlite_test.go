package sqlite

import (
	"path/filepath"
	"testing"

	"github.com/moe-serving/moe/internal/store"
	"github.com/moe-serving/moe/internal/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, storetest.Opener{
		Open: func(t *testing.T) store.Store {
			s, err := Open(filepath.Join(t.TempDir(), "moe.db"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
		Reopen: func(t *testing.T, old store.Store) store.Store {
			path := old.(*Store).path
			old.Close()
			s, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
	})
}

func TestNewerSchemaRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "moe.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	s.db.Exec(`INSERT INTO schema_version (version) VALUES (99)`)
	s.Close()
	if _, err := Open(path); err == nil {
		t.Fatal("opened a database from a newer moe")
	}
}
