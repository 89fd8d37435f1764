// Package sqlite is the default Store: one SQLite file (pure-Go driver, no
// cgo) in the data dir, WAL mode with full fsync so a kill -9 loses nothing
// that was acknowledged.
package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/moe-serving/moe/internal/store"
	_ "modernc.org/sqlite" // database/sql driver "sqlite"
)

// Store is a store.Store backed by SQLite.
type Store struct {
	store.Notifier
	db   *sql.DB
	path string
	now  func() time.Time
}

var _ store.Store = (*Store)(nil)

var migrations = []string{
	`CREATE TABLE endpoints (
		name    TEXT PRIMARY KEY,
		data    TEXT NOT NULL,
		version INTEGER NOT NULL
	);
	CREATE TABLE deployments (
		endpoint TEXT NOT NULL REFERENCES endpoints(name) ON DELETE CASCADE,
		name     TEXT NOT NULL,
		data     TEXT NOT NULL,
		version  INTEGER NOT NULL,
		PRIMARY KEY (endpoint, name)
	);`,
	`CREATE TABLE settings (
		name    TEXT PRIMARY KEY,
		data    TEXT NOT NULL,
		version INTEGER NOT NULL
	);`,
}

// Open opens (creating if needed) the database file at path and migrates it.
func Open(path string) (*Store, error) {
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=foreign_keys(1)&_pragma=busy_timeout(5000)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	db.SetMaxOpenConns(1) // SQLite has one writer; one conn avoids SQLITE_BUSY between our own goroutines
	s := &Store{db: db, path: path, now: time.Now}
	if err := s.migrate(context.Background()); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	return s, nil
}

func (s *Store) migrate(ctx context.Context) error {
	if _, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	var v int
	if err := s.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_version`).Scan(&v); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if v > len(migrations) {
		return fmt.Errorf("migrate: database schema version %d is newer than this moe (%d): upgrade moe", v, len(migrations))
	}
	for i := v; i < len(migrations); i++ {
		tx, err := s.db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
			tx.Rollback()
			return fmt.Errorf("migrate to %d: %w", i+1, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version (version) VALUES (?)`, i+1); err != nil {
			tx.Rollback()
			return err
		}
		if err := tx.Commit(); err != nil {
			return err
		}
	}
	return nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

func (s *Store) write(ctx context.Context, f func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := f(tx); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	s.Notify()
	return nil
}

func isUnique(err error) bool {
	return err != nil && strings.Contains(err.Error(), "UNIQUE constraint failed")
}

// CreateEndpoint implements store.Store.
func (s *Store) CreateEndpoint(ctx context.Context, e *store.Endpoint) error {
	now := s.now().UTC()
	c := *e
	c.Version, c.CreatedAt, c.UpdatedAt = 1, now, now
	data, err := json.Marshal(&c)
	if err != nil {
		return err
	}
	err = s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO endpoints (name, data, version) VALUES (?, ?, 1)`, c.Spec.Name, data)
		return err
	})
	if isUnique(err) {
		return fmt.Errorf("create endpoint %q: already exists: %w", c.Spec.Name, store.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("create endpoint %q: %w", c.Spec.Name, err)
	}
	*e = c
	return nil
}

// GetEndpoint implements store.Store.
func (s *Store) GetEndpoint(ctx context.Context, name string) (*store.Endpoint, error) {
	var e store.Endpoint
	ok, err := getOne(ctx, s.db, &e, `SELECT data FROM endpoints WHERE name = ?`, name)
	if err != nil {
		return nil, fmt.Errorf("get endpoint %q: %w", name, err)
	}
	if !ok {
		return nil, fmt.Errorf("endpoint %q: %w", name, store.ErrNotFound)
	}
	return &e, nil
}

// ListEndpoints implements store.Store.
func (s *Store) ListEndpoints(ctx context.Context) ([]*store.Endpoint, error) {
	out, err := list[store.Endpoint](ctx, s.db, `SELECT data FROM endpoints ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list endpoints: %w", err)
	}
	return out, nil
}

// UpdateEndpoint implements store.Store.
func (s *Store) UpdateEndpoint(ctx context.Context, e *store.Endpoint) error {
	c := *e
	c.Version = e.Version + 1
	c.UpdatedAt = s.now().UTC()
	data, err := json.Marshal(&c)
	if err != nil {
		return err
	}
	err = s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE endpoints SET data = ?, version = ? WHERE name = ? AND version = ?`, data, c.Version, c.Spec.Name, e.Version)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			var v int64
			if err := tx.QueryRowContext(ctx, `SELECT version FROM endpoints WHERE name = ?`, c.Spec.Name).Scan(&v); errors.Is(err, sql.ErrNoRows) {
				return store.ErrNotFound
			}
			return store.ErrConflict
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("update endpoint %q: %w", c.Spec.Name, err)
	}
	*e = c
	return nil
}

// DeleteEndpoint implements store.Store.
func (s *Store) DeleteEndpoint(ctx context.Context, name string) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM deployments WHERE endpoint = ?`, name); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM endpoints WHERE name = ?`, name)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return store.ErrNotFound
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete endpoint %q: %w", name, err)
	}
	return nil
}

// CreateDeployment implements store.Store.
func (s *Store) CreateDeployment(ctx context.Context, d *store.Deployment) error {
	now := s.now().UTC()
	c := *d
	c.Version, c.CreatedAt, c.UpdatedAt = 1, now, now
	data, err := json.Marshal(&c)
	if err != nil {
		return err
	}
	err = s.write(ctx, func(tx *sql.Tx) error {
		var one int
		if err := tx.QueryRowContext(ctx, `SELECT 1 FROM endpoints WHERE name = ?`, c.Endpoint).Scan(&one); errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("endpoint %q: %w", c.Endpoint, store.ErrNotFound)
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO deployments (endpoint, name, data, version) VALUES (?, ?, ?, 1)`, c.Endpoint, c.Name, data)
		if isUnique(err) {
			return fmt.Errorf("already exists: %w", store.ErrConflict)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("create deployment %q (endpoint %q): %w", c.Name, c.Endpoint, err)
	}
	*d = c
	return nil
}

// GetDeployment implements store.Store.
func (s *Store) GetDeployment(ctx context.Context, endpoint, name string) (*store.Deployment, error) {
	var d store.Deployment
	ok, err := getOne(ctx, s.db, &d, `SELECT data FROM deployments WHERE endpoint = ? AND name = ?`, endpoint, name)
	if err != nil {
		return nil, fmt.Errorf("get deployment %q (endpoint %q): %w", name, endpoint, err)
	}
	if !ok {
		return nil, fmt.Errorf("deployment %q (endpoint %q): %w", name, endpoint, store.ErrNotFound)
	}
	return &d, nil
}

// ListDeployments implements store.Store.
func (s *Store) ListDeployments(ctx context.Context, endpoint string) ([]*store.Deployment, error) {
	q, args := `SELECT data FROM deployments ORDER BY endpoint, name`, []any{}
	if endpoint != "" {
		q, args = `SELECT data FROM deployments WHERE endpoint = ? ORDER BY name`, []any{endpoint}
	}
	out, err := list[store.Deployment](ctx, s.db, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list deployments: %w", err)
	}
	return out, nil
}

// list runs a query whose rows are one JSON document each and decodes them.
// getOne reads one JSON document; ok is false when there is no row.
func getOne[T any](ctx context.Context, db *sql.DB, v *T, q string, args ...any) (ok bool, err error) {
	var data []byte
	err = db.QueryRowContext(ctx, q, args...).Scan(&data)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return false, fmt.Errorf("decode: %w", err)
	}
	return true, nil
}

func list[T any](ctx context.Context, db *sql.DB, q string, args ...any) ([]*T, error) {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*T
	for rows.Next() {
		var data []byte
		if err := rows.Scan(&data); err != nil {
			return nil, err
		}
		v := new(T)
		if err := json.Unmarshal(data, v); err != nil {
			return nil, fmt.Errorf("decode: %w", err)
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// UpdateDeployment implements store.Store.
func (s *Store) UpdateDeployment(ctx context.Context, d *store.Deployment) error {
	c := *d
	c.Version = d.Version + 1
	c.UpdatedAt = s.now().UTC()
	data, err := json.Marshal(&c)
	if err != nil {
		return err
	}
	err = s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE deployments SET data = ?, version = ? WHERE endpoint = ? AND name = ? AND version = ?`, data, c.Version, c.Endpoint, c.Name, d.Version)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			var v int64
			if err := tx.QueryRowContext(ctx, `SELECT version FROM deployments WHERE endpoint = ? AND name = ?`, c.Endpoint, c.Name).Scan(&v); errors.Is(err, sql.ErrNoRows) {
				return store.ErrNotFound
			}
			return store.ErrConflict
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("update deployment %q (endpoint %q): %w", c.Name, c.Endpoint, err)
	}
	*d = c
	return nil
}

// DeleteDeployment implements store.Store.
func (s *Store) DeleteDeployment(ctx context.Context, endpoint, name string) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM deployments WHERE endpoint = ? AND name = ?`, endpoint, name)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return store.ErrNotFound
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete deployment %q (endpoint %q): %w", name, endpoint, err)
	}
	return nil
}

// GetSetting implements store.Store.
func (s *Store) GetSetting(ctx context.Context, name string) (*store.Setting, error) {
	var v store.Setting
	ok, err := getOne(ctx, s.db, &v, `SELECT data FROM settings WHERE name = ?`, name)
	if err != nil {
		return nil, fmt.Errorf("get setting %q: %w", name, err)
	}
	if !ok {
		return nil, fmt.Errorf("setting %q: %w", name, store.ErrNotFound)
	}
	return &v, nil
}

// PutSetting implements store.Store.
func (s *Store) PutSetting(ctx context.Context, v *store.Setting) error {
	c := *v
	c.Version = v.Version + 1
	c.UpdatedAt = s.now().UTC()
	data, err := json.Marshal(&c)
	if err != nil {
		return err
	}
	err = s.write(ctx, func(tx *sql.Tx) error {
		if v.Version == 0 {
			_, err := tx.ExecContext(ctx, `INSERT INTO settings (name, data, version) VALUES (?, ?, 1)`, c.Name, data)
			if isUnique(err) {
				return fmt.Errorf("already exists: %w", store.ErrConflict)
			}
			return err
		}
		res, err := tx.ExecContext(ctx, `UPDATE settings SET data = ?, version = ? WHERE name = ? AND version = ?`, data, c.Version, c.Name, v.Version)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("version %d is not the stored one: %w", v.Version, store.ErrConflict)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("put setting %q: %w", c.Name, err)
	}
	*v = c
	return nil
}
