package sqlite

import (
	"database/sql"
	"fmt"
	"time"
)

// checkpointInterval is the least time between two checkpoints: commits in
// between are copied back together.
const checkpointInterval = 100 * time.Millisecond

// checkpointer copies committed pages from the WAL back into the database
// file on a connection of its own, after commits, at most once per
// checkpointInterval. A PASSIVE checkpoint takes no lock a writer or
// reader waits for, so the writer's commits stay short (SQLite's automatic
// checkpoint would run inside the commit that crosses the threshold, fsyncs
// included, and stall every Update queued behind it).
type checkpointer struct {
	db   *sql.DB
	wake chan struct{}
	quit chan struct{}
	done chan struct{}
}

func startCheckpointer(abs string) (*checkpointer, error) {
	db, err := sql.Open("sqlite", dsn(abs, false))
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	c := &checkpointer{db: db, wake: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
	go c.loop()
	return c, nil
}

// poke tells the checkpointer that a commit added to the WAL. It never
// blocks.
func (c *checkpointer) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *checkpointer) loop() {
	defer close(c.done)
	for {
		select {
		case <-c.quit:
			return
		case <-c.wake:
		}
		// A failed checkpoint (the disk is full, say) is retried at the next
		// commit; the WAL meanwhile grows, and Update still works.
		_, _ = c.db.Exec("PRAGMA wal_checkpoint(PASSIVE)")
		select {
		case <-c.quit:
			return
		case <-time.After(checkpointInterval):
		}
	}
}

// stop ends the loop and closes the connection.
func (c *checkpointer) stop() error {
	close(c.quit)
	<-c.done
	if err := c.db.Close(); err != nil {
		return fmt.Errorf("checkpointer: %w", err)
	}
	return nil
}
