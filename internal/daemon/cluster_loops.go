package daemon

import (
	"context"
	"log/slog"

	"stagehand/internal/cluster"
	"stagehand/internal/lab"
	"stagehand/internal/store"
)

// startClusterLoops runs, until the returned stop is called (which waits
// for them), what a daemon needs of the other daemons sharing its store:
//   - on PostgreSQL, the relay of the events they record to this daemon's
//     followers (events --follow, the web console), from now on;
//   - the worker of this host's work queue, once after is closed (the
//     recovery is done: work items undeploy and delete), with the
//     handlers of workHandlers. On SQLite it polls: the one daemon
//     queues only its own work.
func startClusterLoops(st *openedStore, hostID int64, svc *lab.Service, after <-chan struct{}, log *slog.Logger) (stop func()) {
	listener, _ := st.Store.(store.Listener)
	var stopRelay func()
	if listener != nil {
		stopRelay = runInBackground(func(ctx context.Context) { svc.Events.Relay(ctx, listener) })
	}
	worker := cluster.NewWorker(st, listener, hostID, log)
	for kind, h := range workHandlers(svc) {
		worker.Handle(kind, h)
	}
	stopWorker := runInBackground(func(ctx context.Context) {
		select {
		case <-after:
		case <-ctx.Done():
			return
		}
		worker.Run(ctx)
	})
	return func() {
		stopWorker()
		if stopRelay != nil {
			stopRelay()
		}
	}
}

// workHandlers are the kinds of work this host carries out for the
// installation, beside cluster.WorkPing (which every worker answers): the
// reaper's decisions about configurations living here, and drains.
func workHandlers(svc *lab.Service) map[string]cluster.Handler {
	return svc.WorkHandlers()
}
