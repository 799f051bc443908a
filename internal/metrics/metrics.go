// Package metrics holds the Prometheus instruments that the lower packages
// record into as things happen (job durations, reaper actions) and the
// host measurements the daemon exports at scrape time (allocated bytes of
// a directory's files). It imports nothing of Stagehand, so that jobs and
// the lease reaper can record without depending upward; the API's
// /metrics handler gathers them (api/metrics.go).
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Namespace prefixes every metric Stagehand exports.
const Namespace = "stagehand"

// Outcomes of a reaper action.
const (
	OutcomeOK    = "ok"
	OutcomeError = "error"
)

var (
	// jobDuration is how long background jobs ran, from start to their
	// end state. Full clones and consolidations of large disks take
	// minutes, so the buckets reach an hour.
	jobDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace,
		Name:      "job_duration_seconds",
		Help:      "Duration of background jobs (full clone, consolidate, archive, import, restore), by kind and outcome (succeeded, failed, canceled).",
		Buckets:   []float64{0.1, 0.5, 1, 5, 15, 30, 60, 300, 900, 1800, 3600},
	}, []string{"kind", "outcome"})

	// reaperActions counts what the lease reaper did.
	reaperActions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace,
		Name:      "reaper_actions_total",
		Help:      "Actions of the lease reaper (undeploy, mark-expired, delete, start-deploy-lease, clear-deploy-lease), by outcome (ok, error).",
	}, []string{"action", "outcome"})
)

// ObserveJob records that a job of kind ended in outcome (its end state)
// after seconds.
func ObserveJob(kind, outcome string, seconds float64) {
	jobDuration.WithLabelValues(kind, outcome).Observe(seconds)
}

// CountReaperAction records one action of the lease reaper; failed says
// whether it returned an error.
func CountReaperAction(action string, failed bool) {
	outcome := OutcomeOK
	if failed {
		outcome = OutcomeError
	}
	reaperActions.WithLabelValues(action, outcome).Inc()
}

// Recorded returns the process-wide instruments the packages record into,
// for a registry to gather. They are shared by every lab in the process
// (tests run several), so a test reads their change, not their value.
func Recorded() []prometheus.Collector {
	return []prometheus.Collector{jobDuration, reaperActions}
}
