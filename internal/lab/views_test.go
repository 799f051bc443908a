package lab_test

import (
	"context"
	"reflect"
	"testing"
	"time"

	"stagehand/internal/lab"
)

// TestListShowsWhatEachViewShows: the configuration list reads the leases
// and templates once for every configuration (not one query each); each of
// its views must still be the one configuration show gives, lease and
// template names included, for configurations of different leases and
// templates.
func TestListShowsWhatEachViewShows(t *testing.T) {
	e := newEnv(t, withFakeRuntime, func(o *lab.Options) {
		o.Leases = lab.LeasePolicy{DefaultStorage: 30 * day, DefaultDeploy: 8 * time.Hour}
	})
	ctx := context.Background()
	e.template("base")
	e.template("other")
	e.network("lan", "10.74.0.0/24", "10.74.0.10-10.74.0.30")
	two := 2 * day
	if _, err := e.svc.Configs.Create(ctx, lab.ConfigSpec{Name: "short", StorageLease: &two,
		VMs: []lab.VMSpec{{Name: "vm", Template: "base", Network: "lan"}}}); err != nil {
		t.Fatal(err)
	}
	e.config("mixed", lab.VMSpec{Name: "a", Template: "other"}, lab.VMSpec{Name: "b", Template: "base"},
		lab.VMSpec{Name: "c", Template: "other", Network: "lan"})
	e.config("plain", lab.VMSpec{Name: "vm", Template: "base"})
	if _, err := e.svc.Leases.Set(ctx, "plain", lab.LeaseChange{Deploy: ptr(time.Hour), UndeployAction: "discard"}); err != nil {
		t.Fatal(err)
	}

	list, err := e.svc.Configs.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 3 {
		t.Fatalf("list has %d configurations, want 3", len(list))
	}
	for _, v := range list {
		one := e.get(v.Name)
		if !reflect.DeepEqual(v, *one) {
			t.Errorf("configuration %q:\nin the list %+v\nshown alone %+v", v.Name, v, *one)
		}
	}
	byName := map[string]lab.ConfigView{}
	for _, v := range list {
		byName[v.Name] = v
	}
	if got := byName["plain"].Lease; got.DeployLease != time.Hour || got.UndeployAction != "discard" {
		t.Errorf("plain's lease in the list: %+v, want a 1h deployment lease discarding", got)
	}
	if got := byName["short"].Lease.StorageExpires; got.IsZero() || got.Sub(byName["short"].Lease.LastUsed) != two {
		t.Errorf("short's storage lease in the list ends %v, want 2 days after its creation", got)
	}
	var tmpls []string
	for _, vm := range byName["mixed"].VMs {
		tmpls = append(tmpls, vm.Template)
	}
	if !reflect.DeepEqual(tmpls, []string{"other", "base", "other"}) {
		t.Errorf("mixed's VMs in the list come from %v, want [other base other]", tmpls)
	}
}
