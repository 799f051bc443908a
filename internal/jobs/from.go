package jobs

import (
	"context"

	"stagehand/internal/auth"
)

// StartFrom is Start for a job that a request starts: the job's context
// carries parent's values (who asked, which the event log names) but not
// its cancellation, so the job outlives the request; Cancel and Close still
// end it. The job records the user of parent's identity as its starter.
func (m *Manager) StartFrom(parent context.Context, kind, subject string, fn Func) Job {
	values := context.WithoutCancel(parent)
	var userID int64
	if id, ok := auth.FromContext(parent); ok {
		userID = id.UserID
	}
	return m.start(kind, subject, userID, func(ctx context.Context, progress func(done, total int64)) error {
		merged, cancel := context.WithCancel(values)
		defer cancel()
		stop := context.AfterFunc(ctx, cancel)
		defer stop()
		return fn(merged, progress)
	})
}
