package lease

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
	del := Policy{Cleanup: CleanupDelete, Grace: time.Hour}
	notify := Policy{Cleanup: CleanupNotify, Grace: time.Hour}
	for _, tc := range []struct {
		name   string
		policy Policy
		item   Leased
		want   string
	}{
		{"no lease", del, Leased{Object: ObjectConfig, State: store.StateUndeployed}, ""},
		{"storage not yet", del, Leased{Object: ObjectConfig, State: store.StateUndeployed, Lease: store.Lease{StorageExpires: after}}, ""},
		{"storage ran out", del, Leased{Object: ObjectConfig, State: store.StateUndeployed, Lease: store.Lease{StorageExpires: before}}, "mark-expired"},
		{"in grace", del, Leased{Object: ObjectConfig, State: store.StateUndeployed, Lease: store.Lease{StorageExpires: before, ExpiredAt: before}}, ""},
		{"past grace", del, Leased{Object: ObjectConfig, State: store.StateUndeployed, Lease: store.Lease{StorageExpires: before, ExpiredAt: now.Add(-time.Hour)}}, "delete"},
		{"past grace, notify", notify, Leased{Object: ObjectConfig, State: store.StateUndeployed, Lease: store.Lease{StorageExpires: before, ExpiredAt: now.Add(-time.Hour)}}, ""},
		{"past grace, deployed", del, Leased{Object: ObjectConfig, State: store.StateDeployed, Lease: store.Lease{StorageExpires: before, ExpiredAt: now.Add(-time.Hour)}}, ""},
		{"past grace, failed", del, Leased{Object: ObjectConfig, State: store.StateFailed, Lease: store.Lease{StorageExpires: before, ExpiredAt: now.Add(-time.Hour)}}, ""},
		{"past grace, library", del, Leased{Object: ObjectLibrary, State: store.StateUndeployed, Lease: store.Lease{StorageExpires: before, ExpiredAt: now.Add(-2 * time.Hour)}}, "delete"},
		{"past grace, archive", del, Leased{Object: ObjectArchive, Lease: store.Lease{StorageExpires: before, ExpiredAt: now.Add(-2 * time.Hour)}}, "delete"},
		{"deploy lease ran out", del, Leased{Object: ObjectConfig, State: store.StateDeployed, Lease: store.Lease{DeployExpires: before, UndeployAction: store.UndeploySave}}, "undeploy save"},
		{"deploy lease ran out, discard", del, Leased{Object: ObjectConfig, State: store.StateDeployed, Lease: store.Lease{DeployExpires: before, UndeployAction: store.UndeployDiscard}}, "undeploy"},
		{"deploy lease ran out, failed", del, Leased{Object: ObjectConfig, State: store.StateFailed, Lease: store.Lease{DeployExpires: before, UndeployAction: store.UndeploySave}}, "undeploy"},
		{"deploy lease running", del, Leased{Object: ObjectConfig, State: store.StateDeployed, Lease: store.Lease{DeployExpires: after}}, ""},
		{"deploying", del, Leased{Object: ObjectConfig, State: store.StateDeploying, Lease: store.Lease{DeployExpires: before}}, ""},
		{"deployed without expiry", del, Leased{Object: ObjectConfig, State: store.StateDeployed, Lease: store.Lease{DeployLease: time.Hour}}, "start-deploy-lease"},
		{"undeployed with expiry", del, Leased{Object: ObjectConfig, State: store.StateUndeployed, Lease: store.Lease{DeployExpires: after}}, "clear-deploy-lease"},
		{"both ran out, deployed", del, Leased{Object: ObjectConfig, State: store.StateDeployed, Lease: store.Lease{DeployExpires: before, StorageExpires: before, ExpiredAt: now.Add(-time.Hour)}}, "undeploy save"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, a := range Plan(now, tc.policy, []Leased{tc.item}) {
				s := a.Action
				if a.Save {
					s += " save"
				}
				got = append(got, s)
			}
			if g := strings.Join(got, ","); g != tc.want {
				t.Errorf("Plan = %q, want %q (item %s)", g, tc.want, fmt.Sprint(tc.item.Lease))
			}
		})
	}
}
