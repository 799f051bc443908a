package webui

import (
	"fmt"
	"net/http"
	"strings"

	"stagehand/internal/errdefs"
	"stagehand/internal/store"
)

// A quota, a workspace's or a user's, is shown the same way on both admin
// pages (the "quota" partial: each resource's use and limit) and set by
// the same action, a PUT /api/v1/quotas of its scope and target.

// quotaResources are the resources a quota limits, in the order of
// quotaLimits and quotaUse: the wire field (a row's data-name, the CLI
// flag without its dashes) and the label.
var quotaResources = []struct{ Name, Label string }{
	{"stored_vms", "Stored VMs"}, {"deployed_vms", "Deployed VMs"}, {"vcpus", "vCPUs"},
	{"memory_mib", "Memory (MiB)"}, {"disk_gib", "Disk (GiB)"},
}

func quotaLimits(q store.Quota) []int64 {
	return []int64{q.StoredVMs, q.DeployedVMs, q.VCPUs, q.MemoryMiB, q.DiskGiB}
}

func quotaUse(u store.QuotaUsage) []int64 {
	return []int64{u.StoredVMs, u.DeployedVMs, u.VCPUs, u.MemoryMiB, u.DiskGiB}
}

// quotaView is a scope's quota (nil: none) and what it holds now.
type quotaView struct {
	Quota *store.Quota
	Usage store.QuotaUsage
}

// quotaRow is one resource of a quota: Limit 0 is no limit.
type quotaRow struct {
	Name, Label string
	Used, Limit int64
}

// QuotaRows are the rows of the "quota" partial.
func (v quotaView) QuotaRows() []quotaRow {
	limits, used := quotaLimits(v.limits()), quotaUse(v.Usage)
	rows := make([]quotaRow, len(quotaResources))
	for i, r := range quotaResources {
		rows[i] = quotaRow{Name: r.Name, Label: r.Label, Used: used[i], Limit: limits[i]}
	}
	return rows
}

func (v quotaView) limits() store.Quota {
	if v.Quota == nil {
		return store.Quota{}
	}
	return *v.Quota
}

// loadQuota reads the quota of scope's record id and its use.
func loadQuota(tx store.Tx, scope string, id int64) (quotaView, error) {
	var v quotaView
	q, err := tx.Quotas().Get(scope, id)
	switch {
	case err == nil:
		v.Quota = q
	case errdefs.Kind(err) != errdefs.ErrNotFound:
		return v, err
	}
	v.Usage, err = tx.Quotas().Use(scope, id)
	return v, err
}

// quotaAction sets the quota of target in scope (store.QuotaScope*); cli
// is its command line without the limits' flags, what says what the
// quota limits. Its fields start at the current limits.
func quotaAction(scope, target, cli, what string, v quotaView) Action {
	a := Action{
		Name: "quota.set", Label: "Set quota", Method: http.MethodPut, Path: "/api/v1/quotas",
		CLI:     cli,
		Confirm: "Limits of " + what + "; 0 is no limit, all 0 removes the quota.",
		Fields: []Field{
			{Name: "scope", Kind: FieldHidden, Value: scope},
			{Name: "target", Kind: FieldHidden, Value: target},
		},
	}
	limits := quotaLimits(v.limits())
	for i, r := range quotaResources {
		a.Fields = append(a.Fields, Field{Name: r.Name, Label: r.Label, Kind: FieldNumber, Value: fmt.Sprint(limits[i]),
			Flag: "--" + strings.ReplaceAll(r.Name, "_", "-")})
	}
	return a
}

// QuotaSummary is the quota in one line, "Stored VMs 1/5 · vCPUs 2/8":
// the use and limit of each limited resource; "" when none is limited.
func (v quotaView) QuotaSummary() string {
	var parts []string
	for _, r := range v.QuotaRows() {
		if r.Limit > 0 {
			parts = append(parts, fmt.Sprintf("%s %d/%d", r.Label, r.Used, r.Limit))
		}
	}
	return strings.Join(parts, " · ")
}
