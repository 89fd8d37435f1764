// Package postgres is the store.Store for several control-plane and gateway
// replicas: PostgreSQL through pgx, the same JSON record shapes as the
// SQLite store, and change notification across replicas with
// LISTEN/NOTIFY (see listen.go).
//
// Tables live in the connection's current schema (the first entry of
// search_path, "public" by default), so several moe installations can
// share a database by giving each its own search_path in the URL.
package postgres

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/moe-serving/moe/internal/store"
)

// Store is a store.Store backed by PostgreSQL. It is safe for concurrent
// use. Open starts one goroutine (the change listener) that Close stops
// and waits for.
type Store struct {
	store.Notifier
	pool    *pgxpool.Pool
	listenC *pgx.ConnConfig // for the listener's dedicated connection
	log     *slog.Logger
	now     func() time.Time

	// channel is the NOTIFY channel for this schema; origin tags this
	// Store's own notifications so the listener skips them (their
	// subscribers were woken on commit already).
	channel string
	origin  string

	keepalive time.Duration // see the package variable
	// listenerPID is the listener connection's backend pid (0 while
	// disconnected); tests terminate it to exercise reconnection.
	listenerPID atomic.Uint32

	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

var _ store.Store = (*Store)(nil)

// keepalive is how long the listener waits for a notification before it
// pings its connection to find out whether it is dead; tests shorten it.
var keepalive = 30 * time.Second

//go:embed migrations/*.sql
var migrationFS embed.FS

// migration is one embedded migrations/NNNN_name.sql file.
type migration struct {
	version int
	name    string
	sql     string
}

func loadMigrations() ([]migration, error) {
	files, err := fs.Glob(migrationFS, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	var out []migration
	for i, f := range files {
		base := strings.TrimPrefix(f, "migrations/")
		num, _, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v != i+1 {
			return nil, fmt.Errorf("migration %s: want a name starting with %04d_", base, i+1)
		}
		b, err := migrationFS.ReadFile(f)
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: base, sql: string(b)})
	}
	return out, nil
}

// Open connects to the database at url (a postgres:// URL or a
// keyword/value DSN as libpq takes it), migrates its schema and starts
// listening for changes made by other replicas. ctx bounds only the
// connecting and migrating; the listener runs until Close. Pool settings
// come from the URL too (pool_max_conns, default max(4, GOMAXPROCS)).
// Errors never include the password. Log lines about the listener go to
// slog.Default() with component=store.
func Open(ctx context.Context, url string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	if cfg.ConnConfig.RuntimeParams["application_name"] == "" {
		cfg.ConnConfig.RuntimeParams["application_name"] = "moe"
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	var origin [16]byte
	rand.Read(origin[:])
	s := &Store{
		pool:      pool,
		listenC:   cfg.ConnConfig.Copy(),
		log:       slog.Default().With("component", "store"),
		now:       time.Now,
		origin:    hex.EncodeToString(origin[:]),
		keepalive: keepalive,
	}
	if err := s.migrate(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open store: %w", err)
	}
	var schema string
	if err := pool.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open store: %w", err)
	}
	s.channel = channelName(schema)
	// The first LISTEN happens here, not in the goroutine, so a change
	// committed after Open returns is never missed.
	conn, err := s.connectListener(ctx)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("open store: %w", err)
	}
	lctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.wg.Go(func() { s.listen(lctx, conn) })
	return s, nil
}

// channelName is the NOTIFY channel for a schema; identifiers are at most
// 63 bytes, so long schema names are hashed.
func channelName(schema string) string {
	c := "moe_store." + schema
	if len(c) > 63 {
		sum := sha256.Sum256([]byte(schema))
		c = "moe_store." + hex.EncodeToString(sum[:16])
	}
	return c
}

// Close stops the listener, waits for it, and closes the connections.
// It is safe to call more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.cancel()
		s.wg.Wait()
		s.pool.Close()
	})
	return nil
}

// migrate brings the schema up to date in one transaction, under an
// advisory lock so replicas starting together do not race.
func (s *Store) migrate(ctx context.Context) error {
	ms, err := loadMigrations()
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('moe.store.migrate'))`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)`); err != nil {
			return err
		}
		var v int
		if err := tx.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_version`).Scan(&v); err != nil {
			return err
		}
		if v > len(ms) {
			return fmt.Errorf("database schema version %d is newer than this moe (%d): upgrade moe", v, len(ms))
		}
		for _, m := range ms[v:] {
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return fmt.Errorf("to %d (%s): %w", m.version, m.name, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO schema_version (version) VALUES ($1)`, m.version); err != nil {
				return fmt.Errorf("to %d (%s): %w", m.version, m.name, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// write runs f in a transaction that also notifies the other replicas;
// NOTIFY is transactional, so a write that fails notifies nobody. Local
// subscribers are woken once the commit succeeds.
func (s *Store) write(ctx context.Context, f func(tx pgx.Tx) error) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := f(tx); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, s.channel, s.origin)
		return err
	})
	if err != nil {
		return err
	}
	s.Notify()
	return nil
}

// SQLSTATE codes we map to the store's sentinels.
const (
	foreignKeyViolation = "23503"
	uniqueViolation     = "23505"
)

func pgCode(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// getOne reads one JSON document; ok is false when there is no row.
func getOne[T any](ctx context.Context, pool *pgxpool.Pool, v *T, q string, args ...any) (ok bool, err error) {
	var data []byte
	err = pool.QueryRow(ctx, q, args...).Scan(&data)
	if errors.Is(err, pgx.ErrNoRows) {
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

// list reads JSON documents in the order of the query.
func list[T any](ctx context.Context, pool *pgxpool.Pool, q string, args ...any) ([]*T, error) {
	rows, err := pool.Query(ctx, q, args...)
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

// CreateEndpoint implements store.Store.
func (s *Store) CreateEndpoint(ctx context.Context, e *store.Endpoint) error {
	now := s.now().UTC()
	c := *e
	c.Version, c.CreatedAt, c.UpdatedAt = 1, now, now
	data, err := json.Marshal(&c)
	if err != nil {
		return fmt.Errorf("create endpoint %q: %w", c.Spec.Name, err)
	}
	err = s.write(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO endpoints (name, data, version) VALUES ($1, $2, 1)`, c.Spec.Name, json.RawMessage(data))
		return err
	})
	if pgCode(err) == uniqueViolation {
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
	ok, err := getOne(ctx, s.pool, &e, `SELECT data FROM endpoints WHERE name = $1`, name)
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
	out, err := list[store.Endpoint](ctx, s.pool, `SELECT data FROM endpoints ORDER BY name`)
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
		return fmt.Errorf("update endpoint %q: %w", c.Spec.Name, err)
	}
	err = s.write(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE endpoints SET data = $1, version = $2 WHERE name = $3 AND version = $4`,
			json.RawMessage(data), c.Version, c.Spec.Name, e.Version)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return missingOrConflict(ctx, tx, `SELECT version FROM endpoints WHERE name = $1`, c.Spec.Name)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("update endpoint %q: %w", c.Spec.Name, err)
	}
	*e = c
	return nil
}

// missingOrConflict explains an UPDATE that matched no row: the record is
// gone (ErrNotFound) or its version moved on (ErrConflict).
func missingOrConflict(ctx context.Context, tx pgx.Tx, q string, args ...any) error {
	var v int64
	err := tx.QueryRow(ctx, q, args...).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.ErrNotFound
	}
	if err != nil {
		return err
	}
	return fmt.Errorf("stored version is %d: %w", v, store.ErrConflict)
}

// DeleteEndpoint implements store.Store.
func (s *Store) DeleteEndpoint(ctx context.Context, name string) error {
	err := s.write(ctx, func(tx pgx.Tx) error {
		// The deployments go with it (ON DELETE CASCADE).
		tag, err := tx.Exec(ctx, `DELETE FROM endpoints WHERE name = $1`, name)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
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
		return fmt.Errorf("create deployment %q (endpoint %q): %w", c.Name, c.Endpoint, err)
	}
	err = s.write(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO deployments (endpoint, name, data, version) VALUES ($1, $2, $3, 1)`,
			c.Endpoint, c.Name, json.RawMessage(data))
		switch pgCode(err) {
		case foreignKeyViolation:
			return fmt.Errorf("endpoint %q: %w", c.Endpoint, store.ErrNotFound)
		case uniqueViolation:
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
	ok, err := getOne(ctx, s.pool, &d, `SELECT data FROM deployments WHERE endpoint = $1 AND name = $2`, endpoint, name)
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
		q, args = `SELECT data FROM deployments WHERE endpoint = $1 ORDER BY name`, []any{endpoint}
	}
	out, err := list[store.Deployment](ctx, s.pool, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list deployments: %w", err)
	}
	return out, nil
}

// UpdateDeployment implements store.Store.
func (s *Store) UpdateDeployment(ctx context.Context, d *store.Deployment) error {
	c := *d
	c.Version = d.Version + 1
	c.UpdatedAt = s.now().UTC()
	data, err := json.Marshal(&c)
	if err != nil {
		return fmt.Errorf("update deployment %q (endpoint %q): %w", c.Name, c.Endpoint, err)
	}
	err = s.write(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE deployments SET data = $1, version = $2 WHERE endpoint = $3 AND name = $4 AND version = $5`,
			json.RawMessage(data), c.Version, c.Endpoint, c.Name, d.Version)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return missingOrConflict(ctx, tx, `SELECT version FROM deployments WHERE endpoint = $1 AND name = $2`, c.Endpoint, c.Name)
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
	err := s.write(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM deployments WHERE endpoint = $1 AND name = $2`, endpoint, name)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return store.ErrNotFound
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete deployment %q (endpoint %q): %w", name, endpoint, err)
	}
	return nil
}
