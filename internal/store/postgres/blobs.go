package postgres

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/moe-serving/moe/internal/store"
)

var _ store.Blobs = (*Store)(nil)

// GetSetting implements store.Store.
func (s *Store) GetSetting(ctx context.Context, name string) (*store.Setting, error) {
	var v store.Setting
	ok, err := getOne(ctx, s.pool, &v, `SELECT data FROM settings WHERE name = $1`, name)
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
		return fmt.Errorf("put setting %q: %w", c.Name, err)
	}
	err = s.write(ctx, func(tx pgx.Tx) error {
		if v.Version == 0 {
			_, err := tx.Exec(ctx, `INSERT INTO settings (name, data, version) VALUES ($1, $2, 1)`, c.Name, json.RawMessage(data))
			if pgCode(err) == uniqueViolation {
				return fmt.Errorf("already exists: %w", store.ErrConflict)
			}
			return err
		}
		tag, err := tx.Exec(ctx, `UPDATE settings SET data = $1, version = $2 WHERE name = $3 AND version = $4`,
			json.RawMessage(data), c.Version, c.Name, v.Version)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
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

// blobChunk is the size of one blob_chunks row: small enough that a row
// never needs much memory on either side, large enough that an 8 GiB
// snapshot is 8192 rows.
const blobChunk = 1 << 20

func checkDigest(digest string) error {
	h, ok := strings.CutPrefix(digest, "sha256:")
	if !ok || len(h) != 64 || strings.Trim(h, "0123456789abcdef") != "" {
		return fmt.Errorf("blob %q: not a sha256 digest", digest)
	}
	return nil
}

// PutBlob implements store.Blobs: the blob row and its chunks are written in
// one transaction, so a crash or a digest mismatch leaves nothing behind.
// A concurrent PutBlob of the same digest waits for the first to commit
// (the primary key) and then finds it stored.
func (s *Store) PutBlob(ctx context.Context, digest string, r io.Reader) error {
	if err := checkDigest(digest); err != nil {
		return err
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO blobs (digest, size, chunks, created_at) VALUES ($1, 0, 0, $2) ON CONFLICT DO NOTHING`, digest, s.now().UTC())
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return errStored
		}
		h := sha256.New()
		buf := make([]byte, blobChunk)
		var size int64
		seq := 0
		for {
			n, rerr := io.ReadFull(r, buf)
			if n > 0 {
				h.Write(buf[:n])
				if _, err := tx.Exec(ctx, `INSERT INTO blob_chunks (digest, seq, data) VALUES ($1, $2, $3)`, digest, seq, buf[:n]); err != nil {
					return err
				}
				seq++
				size += int64(n)
			}
			if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
				break
			}
			if rerr != nil {
				return fmt.Errorf("read: %w", rerr)
			}
		}
		if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != digest {
			return fmt.Errorf("%w: the bytes hash to %s", store.ErrDigestMismatch, got)
		}
		_, err = tx.Exec(ctx, `UPDATE blobs SET size = $1, chunks = $2 WHERE digest = $3`, size, seq, digest)
		return err
	})
	if err != nil && !errors.Is(err, errStored) {
		return fmt.Errorf("put blob %s: %w", digest, err)
	}
	return nil
}

// errStored ends PutBlob's transaction when the blob is already there.
var errStored = errors.New("already stored")

// OpenBlob implements store.Blobs. The reader fetches one chunk per query,
// so a large blob never sits in memory and holds no connection between
// reads.
func (s *Store) OpenBlob(ctx context.Context, digest string) (io.ReadCloser, error) {
	if err := checkDigest(digest); err != nil {
		return nil, err
	}
	br := &blobReader{ctx: ctx, s: s, digest: digest}
	err := s.pool.QueryRow(ctx, `SELECT size, chunks FROM blobs WHERE digest = $1`, digest).Scan(&br.size, &br.chunks)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("blob %s: %w", digest, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("open blob %s: %w", digest, err)
	}
	return br, nil
}

type blobReader struct {
	ctx    context.Context
	s      *Store
	digest string
	size   int64
	chunks int
	next   int    // next chunk to fetch
	buf    []byte // unread rest of the current chunk
	read   int64
}

func (b *blobReader) Read(p []byte) (int, error) {
	for len(b.buf) == 0 {
		if b.next >= b.chunks {
			if b.read != b.size {
				return 0, fmt.Errorf("read blob %s: %d of %d bytes: %w", b.digest, b.read, b.size, io.ErrUnexpectedEOF)
			}
			return 0, io.EOF
		}
		err := b.s.pool.QueryRow(b.ctx, `SELECT data FROM blob_chunks WHERE digest = $1 AND seq = $2`, b.digest, b.next).Scan(&b.buf)
		if errors.Is(err, pgx.ErrNoRows) {
			return 0, fmt.Errorf("read blob %s: chunk %d is gone (blob deleted while read?): %w", b.digest, b.next, io.ErrUnexpectedEOF)
		}
		if err != nil {
			return 0, fmt.Errorf("read blob %s: %w", b.digest, err)
		}
		b.next++
	}
	n := copy(p, b.buf)
	b.buf = b.buf[n:]
	b.read += int64(n)
	return n, nil
}

func (b *blobReader) Close() error { b.buf = nil; b.next = b.chunks; return nil }

// HasBlob implements store.Blobs.
func (s *Store) HasBlob(ctx context.Context, digest string) (bool, error) {
	var one int
	err := s.pool.QueryRow(ctx, `SELECT 1 FROM blobs WHERE digest = $1`, digest).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("blob %s: %w", digest, err)
	}
	return true, nil
}

// DeleteBlob implements store.Blobs.
func (s *Store) DeleteBlob(ctx context.Context, digest string) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM blobs WHERE digest = $1`, digest); err != nil {
		return fmt.Errorf("delete blob %s: %w", digest, err)
	}
	return nil
}
