package lab

import (
	"context"
	"time"

	"stagehand/internal/lab/deploy"
	"stagehand/internal/store"
)

// EgressView is a fenced deployment's egress allow-list and what it
// refused (see deploy/egress.go).
type EgressView struct {
	// Allow are the allowed destinations, CIDR[:PORT[/PROTO]]. Nothing
	// else is reachable from inside, DNS servers included.
	Allow []string
	// Refused counts the connection attempts (packets for UDP and other
	// protocols) the list refused since the deploy, read from the fence
	// when the view is made; Counted is false when it could not be read
	// (the fence is not on the host that made the view).
	Refused uint64
	Counted bool
}

// egressOf is c's allow-list view, nil when its deployment has none.
func (vs views) egressOf(c *store.Config) *EgressView {
	if !c.Fenced || c.FenceAllow == "" {
		return nil
	}
	v := &EgressView{Allow: deploy.AllowList(c.FenceAllow)}
	if vs.deploys != nil {
		v.Refused, v.Counted = vs.deploys.EgressRefused(c)
	}
	return v
}

// EgressReportEvery is how often WatchEgress reports refused connections:
// at most one event a minute per configuration.
const EgressReportEvery = time.Minute

// WatchEgress writes an egress-refused event for each fenced deployment
// on this host whose allow-list refused connections since its last
// report, every EgressReportEvery until ctx is done (see
// deploy.Deployments.ReportEgress).
func (s *Service) WatchEgress(ctx context.Context) {
	t := time.NewTicker(EgressReportEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.deploys.ReportEgress(ctx)
		}
	}
}
