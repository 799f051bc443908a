package lab

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"stagehand/internal/store"
)

func TestPlanReap(t *testing.T) {
	now := time.Date(2030, 6, 1, 0, 0, 0, 0, time.UTC)
	before, after := now.Add(-time.Minute), now.Add(time.Minute)
	del := LeasePolicy{Cleanup: CleanupDelete, Grace: time.Hour}
	notify := LeasePolicy{Cleanup: CleanupNotify, Grace: time.Hour}
	for _, tc := range []struct {
		name   string
		policy LeasePolicy
		item   leased
		want   string
	}{
		{"no lease", del, leased{object: ObjectConfig, state: store.StateUndeployed}, ""},
		{"storage not yet", del, leased{object: ObjectConfig, state: store.StateUndeployed, lease: store.Lease{StorageExpires: after}}, ""},
		{"storage ran out", del, leased{object: ObjectConfig, state: store.StateUndeployed, lease: store.Lease{StorageExpires: before}}, "mark-expired"},
		{"in grace", del, leased{object: ObjectConfig, state: store.StateUndeployed, lease: store.Lease{StorageExpires: before, ExpiredAt: before}}, ""},
		{"past grace", del, leased{object: ObjectConfig, state: store.StateUndeployed, lease: store.Lease{StorageExpires: before, ExpiredAt: now.Add(-time.Hour)}}, "delete"},
		{"past grace, notify", notify, leased{object: ObjectConfig, state: store.StateUndeployed, lease: store.Lease{StorageExpires: before, ExpiredAt: now.Add(-time.Hour)}}, ""},
		{"past grace, deployed", del, leased{object: ObjectConfig, state: store.StateDeployed, lease: store.Lease{StorageExpires: before, ExpiredAt: now.Add(-time.Hour)}}, ""},
		{"past grace, failed", del, leased{object: ObjectConfig, state: store.StateFailed, lease: store.Lease{StorageExpires: before, ExpiredAt: now.Add(-time.Hour)}}, ""},
		{"past grace, library", del, leased{object: ObjectLibrary, state: store.StateUndeployed, lease: store.Lease{StorageExpires: before, ExpiredAt: now.Add(-2 * time.Hour)}}, "delete"},
		{"past grace, archive", del, leased{object: ObjectArchive, lease: store.Lease{StorageExpires: before, ExpiredAt: now.Add(-2 * time.Hour)}}, "delete"},
		{"deploy lease ran out", del, leased{object: ObjectConfig, state: store.StateDeployed, lease: store.Lease{DeployExpires: before, UndeployAction: store.UndeploySave}}, "undeploy save"},
		{"deploy lease ran out, discard", del, leased{object: ObjectConfig, state: store.StateDeployed, lease: store.Lease{DeployExpires: before, UndeployAction: store.UndeployDiscard}}, "undeploy"},
		{"deploy lease ran out, failed", del, leased{object: ObjectConfig, state: store.StateFailed, lease: store.Lease{DeployExpires: before, UndeployAction: store.UndeploySave}}, "undeploy"},
		{"deploy lease running", del, leased{object: ObjectConfig, state: store.StateDeployed, lease: store.Lease{DeployExpires: after}}, ""},
		{"deploying", del, leased{object: ObjectConfig, state: store.StateDeploying, lease: store.Lease{DeployExpires: before}}, ""},
		{"deployed without expiry", del, leased{object: ObjectConfig, state: store.StateDeployed, lease: store.Lease{DeployLease: time.Hour}}, "start-deploy-lease"},
		{"undeployed with expiry", del, leased{object: ObjectConfig, state: store.StateUndeployed, lease: store.Lease{DeployExpires: after}}, "clear-deploy-lease"},
		{"both ran out, deployed", del, leased{object: ObjectConfig, state: store.StateDeployed, lease: store.Lease{DeployExpires: before, StorageExpires: before, ExpiredAt: now.Add(-time.Hour)}}, "undeploy save"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, a := range planReap(now, tc.policy, []leased{tc.item}) {
				s := a.Action
				if a.Save {
					s += " save"
				}
				got = append(got, s)
			}
			if g := strings.Join(got, ","); g != tc.want {
				t.Errorf("planReap = %q, want %q (item %s)", g, tc.want, fmt.Sprint(tc.item.lease))
			}
		})
	}
}
