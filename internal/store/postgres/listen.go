package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"stagehand/internal/store"
)

var _ store.Listener = (*Store)(nil)

// Backoff of a listener that lost its connection. A connection quiet for
// listenIdle is pinged (bounded by listenPing): a host cut off the network
// would otherwise wait for a notification forever on a dead socket.
const (
	listenMinBackoff = 100 * time.Millisecond
	listenMaxBackoff = 5 * time.Second
	listenPing       = 5 * time.Second
)

var listenIdle = 15 * time.Second // a variable for the tests

// listenerName is the application_name of a listener's connection.
const listenerName = "stagehand listener"

// Listen implements store.Listener on a connection of its own (a pooled
// one would be handed to transactions, and LISTEN belongs to a session).
// When the connection fails it logs, waits (doubling from 100 ms to 5 s)
// and listens again on a new one; the first notification after that is
// Resumed, since what was notified in between is lost.
func (s *Store) Listen(ctx context.Context, channels ...string) <-chan store.Notification {
	out := make(chan store.Notification, 64)
	go func() {
		defer close(out)
		backoff := listenMinBackoff
		for first := true; ; first = false {
			conn, err := s.listenConn(ctx, channels)
			if err == nil {
				backoff = listenMinBackoff
				if !first && !send(ctx, out, store.Notification{Resumed: true}) {
					conn.Close(context.WithoutCancel(ctx))
					return
				}
				err = relay(ctx, conn, out)
				conn.Close(context.WithoutCancel(ctx))
			}
			if ctx.Err() != nil {
				return
			}
			s.log.Warn("store listener lost its connection; listening again", "store", s.where,
				"channels", channels, "retry_in", backoff, "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, listenMaxBackoff)
		}
	}()
	return out
}

// listenConn opens a connection that listens on channels.
func (s *Store) listenConn(ctx context.Context, channels []string) (*pgx.Conn, error) {
	cfg := s.pool.Config().ConnConfig.Copy()
	// Named, so that an operator (and a test) tells it in pg_stat_activity.
	cfg.RuntimeParams["application_name"] = listenerName
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("listen: connect: %w", ctxErr(ctx, err))
	}
	for _, ch := range channels {
		if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{ch}.Sanitize()); err != nil {
			conn.Close(context.WithoutCancel(ctx))
			return nil, fmt.Errorf("listen on %s: %w", ch, ctxErr(ctx, err))
		}
	}
	s.log.Debug("store listening", "store", s.where, "channels", channels)
	return conn, nil
}

// relay passes conn's notifications to out until the connection fails or
// ctx ends.
func relay(ctx context.Context, conn *pgx.Conn, out chan<- store.Notification) error {
	for {
		wctx, cancel := context.WithTimeout(ctx, listenIdle)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		if err != nil && ctx.Err() == nil && wctx.Err() != nil {
			// Quiet, not broken: a timed-out wait leaves the connection
			// usable (pgconn closes it on any other error).
			pctx, cancel := context.WithTimeout(ctx, listenPing)
			err = conn.Ping(pctx)
			cancel()
			if err != nil {
				return fmt.Errorf("listen: ping: %w", err)
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("listen: %w", ctxErr(ctx, err))
		}
		if !send(ctx, out, store.Notification{Channel: n.Channel, Payload: n.Payload}) {
			return ctx.Err()
		}
	}
}

func send(ctx context.Context, out chan<- store.Notification, n store.Notification) bool {
	select {
	case out <- n:
		return true
	case <-ctx.Done():
		return false
	}
}
