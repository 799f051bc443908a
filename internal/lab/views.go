package lab

import (
	"context"
	"time"

	"stagehand/internal/lab/archive"
	"stagehand/internal/lab/deploy"
	"stagehand/internal/lab/journal"
	"stagehand/internal/store"
)

// views turns records into what users see: paths made absolute, names for
// ids, leases, and what only the running daemon knows (PIDs, saved states).
type views struct {
	dataDir  string
	leases   leaseKeeper
	policy   LeasePolicy
	archives *archive.Archives
	deploys  *deploy.Deployments
	self     string // this host: its configurations are never "host offline"
}

// homes returns what a view needs to tell configurations whose home is
// offline.
// Heartbeats are wall-clock times: an injected lease clock does not
// apply.
func (vs views) homes() *homes { return &homes{self: vs.self, now: time.Now()} }

// abs turns a data-dir-relative path into an absolute one.
func (vs views) abs(rel string) string { return journal.Abs(vs.dataDir, rel) }

// viewIn returns what read finds in one read transaction of st: a view,
// or a list of them.
func viewIn[T any](ctx context.Context, st store.Store, read func(tx store.Tx) (T, error)) (T, error) {
	var out T
	err := st.View(ctx, func(tx store.Tx) error {
		var err error
		out, err = read(tx)
		return err
	})
	return out, err
}

// viewsOf returns the view of each record of a list, in order (nil for
// none).
func viewsOf[R, V any](records []R, view func(*R) (*V, error)) ([]V, error) {
	var out []V
	for i := range records {
		v, err := view(&records[i])
		if err != nil {
			return nil, err
		}
		out = append(out, *v)
	}
	return out, nil
}
