package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Change notification across replicas.
//
// Every write transaction runs pg_notify(channel, origin) before it
// commits, so PostgreSQL delivers the notification to every listener on
// the database once (and only if) the write commits. Each Store holds one
// dedicated connection (outside the pool) that LISTENs on the channel and
// wakes its subscribers for notifications from other Stores; its own were
// delivered on commit already. Subscribers see coalesced wake-ups (one
// buffered value per channel), so a burst of writes costs a reader one
// re-read, not one per write.
//
// When the listener connection breaks it reconnects with backoff and then
// wakes every subscriber once, since changes made while it was away were
// not announced. A connection that dies silently is found by a ping after
// keepalive without notifications.

const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// connectListener opens the dedicated connection and LISTENs on it.
func (s *Store) connectListener(ctx context.Context) (*pgx.Conn, error) {
	conn, err := pgx.ConnectConfig(ctx, s.listenC.Copy())
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{s.channel}.Sanitize()); err != nil {
		conn.Close(context.Background())
		return nil, err
	}
	s.listenerPID.Store(conn.PgConn().PID())
	return conn, nil
}

// listen owns conn and runs until ctx is done.
func (s *Store) listen(ctx context.Context, conn *pgx.Conn) {
	backoff := minBackoff
	for {
		if conn == nil {
			var err error
			conn, err = s.connectListener(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				s.log.Warn("change listener: reconnect failed", "err", err, "retry_in", backoff)
				select {
				case <-ctx.Done():
					return
				case <-time.After(backoff):
				}
				backoff = min(2*backoff, maxBackoff)
				continue
			}
			s.log.Info("change listener: reconnected")
			backoff = minBackoff
			s.Notify()
		}
		err := s.wait(ctx, conn)
		s.listenerPID.Store(0)
		closeCtx, cancel := context.WithTimeout(context.Background(), time.Second)
		conn.Close(closeCtx)
		cancel()
		conn = nil
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("change listener: connection lost", "err", err)
	}
}

// wait relays notifications until the connection fails or ctx is done.
func (s *Store) wait(ctx context.Context, conn *pgx.Conn) error {
	for {
		wctx, cancel := context.WithTimeout(ctx, s.keepalive)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case err == nil:
			if n.Payload != s.origin {
				s.Notify()
			}
			continue
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err):
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err = conn.Ping(pctx)
			cancel()
			if err != nil {
				return err
			}
		default:
			return err
		}
	}
}
