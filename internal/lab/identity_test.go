package lab_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"stagehand/internal/errdefs"
	"stagehand/internal/lab"
	"stagehand/internal/lab/deploy"
)

// identities returns each VM's instance-id and hostname, by VM name.
func identities(c *lab.ConfigView) map[string][2]string {
	out := map[string][2]string{}
	for _, vm := range c.VMs {
		out[vm.Name] = [2]string{vm.InstanceID, vm.Hostname}
	}
	return out
}

// TestInstanceIDNewOnEveryCopy: every VM gets an instance-id at create;
// a linked clone, a full clone, a library capture and checkout, a clone
// from a snapshot and an archive restore each get new ones (never the
// source's) and the default hostname of their own name; a snapshot revert,
// an undeploy and a redeploy keep them.
func TestInstanceIDNewOnEveryCopy(t *testing.T) {
	e, _ := deployEnv(t, nil)
	ctx := context.Background()
	src := e.get("a")
	seen := map[string]string{} // instance-id -> where it was first seen
	checkNew := func(c *lab.ConfigView, how string) {
		t.Helper()
		for _, vm := range c.VMs {
			if !strings.HasPrefix(vm.InstanceID, "i-") || len(vm.InstanceID) != 18 {
				t.Errorf("%s: VM %s instance-id %q, want i- and 16 hex digits", how, vm.Name, vm.InstanceID)
			}
			if first, dup := seen[vm.InstanceID]; dup {
				t.Errorf("%s: VM %s has instance-id %s of %s", how, vm.Name, vm.InstanceID, first)
			}
			seen[vm.InstanceID] = how + "/" + vm.Name
			if want := vm.Name + "-" + c.Name; vm.Hostname != want {
				t.Errorf("%s: VM %s hostname %q, want the default %q", how, vm.Name, vm.Hostname, want)
			}
		}
	}
	checkNew(src, "create")
	keep := identities(src)
	kept := func(how string) {
		t.Helper()
		if got := identities(e.get("a")); !equalIdentities(got, keep) {
			t.Errorf("after %s: %v, want kept %v", how, got, keep)
		}
	}

	linked, err := e.svc.Configs.LinkedClone(ctx, "a", "linked", lab.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkNew(linked, "linked clone")
	e.ok(e.svc.Configs.StartFullClone(ctx, "a", "full", lab.CreateOptions{}))
	checkNew(e.get("full"), "full clone")
	lib, err := e.svc.Library.Capture(ctx, "a", "lib", lab.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkNew(lib, "library capture")
	out, err := e.svc.Library.Checkout(ctx, "lib", "out", lab.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkNew(out, "library checkout")
	if _, err := e.svc.Snapshots.Create(ctx, "a", "s1", false); err != nil {
		t.Fatal(err)
	}
	fromSnap, err := e.svc.Configs.CloneFromSnapshot(ctx, "a", "s1", "fromsnap", lab.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkNew(fromSnap, "clone from a snapshot")
	if _, err := e.svc.Snapshots.Revert(ctx, "a", "s1"); err != nil {
		t.Fatal(err)
	}
	kept("snapshot revert")

	if _, err := e.svc.Deployments.Deploy(ctx, "a", lab.DeployOptions{}); err != nil {
		t.Fatal(err)
	}
	kept("deploy")
	if _, err := e.svc.Deployments.Undeploy(ctx, "a", false); err != nil {
		t.Fatal(err)
	}
	kept("undeploy")
	if _, err := e.svc.Deployments.Deploy(ctx, "a", lab.DeployOptions{}); err != nil {
		t.Fatal(err)
	}
	kept("redeploy")
	if _, err := e.svc.Deployments.Undeploy(ctx, "a", false); err != nil {
		t.Fatal(err)
	}

	e.ok(e.svc.Archives.StartCreate(ctx, "linked", "arch", lab.CreateOptions{}))
	e.ok(e.svc.Archives.StartRestore(ctx, "arch", "back", lab.CreateOptions{}))
	checkNew(e.get("back"), "archive restore")
}

func equalIdentities(a, b map[string][2]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestHostname: a hostname set at create or later is shown and put in the
// seed; "" goes back to the default; a name that is not RFC 1123 is
// refused as invalid, naming the problem, and changes nothing.
func TestHostname(t *testing.T) {
	e, _ := deployEnv(t, nil)
	ctx := context.Background()
	for _, c := range []struct{ name, problem string }{
		{"web_1", `'_' is not a letter, digit or '-'`},
		{"-web", `starts or ends with '-'`},
		{"a..b", "empty label"},
		{strings.Repeat("x", 64), "longer than 63 characters"},
	} {
		_, err := e.svc.Configs.SetHostname(ctx, "a", "vm1", c.name)
		if !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), c.problem) || !strings.Contains(err.Error(), "vm1") {
			t.Errorf("SetHostname(%q) = %v, want invalid naming VM vm1 and %q", c.name, err, c.problem)
		}
		_, err = e.svc.Configs.Create(ctx, lab.ConfigSpec{Name: "bad", VMs: []lab.VMSpec{{Name: "v", Template: "base", Hostname: c.name}}})
		if !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), c.problem) {
			t.Errorf("create with hostname %q = %v, want invalid naming %q", c.name, err, c.problem)
		}
	}
	if got := e.get("a").VMs[0].Hostname; got != "vm1-a" {
		t.Errorf("after refused changes hostname %q, want the default vm1-a", got)
	}
	c, err := e.svc.Configs.SetHostname(ctx, "a", "vm1", "db1.lab.example")
	if err != nil || c.VMs[0].Hostname != "db1.lab.example" {
		t.Fatalf("SetHostname = %+v, %v", c, err)
	}
	made, err := e.svc.Configs.Create(ctx, lab.ConfigSpec{Name: "named", VMs: []lab.VMSpec{{Name: "v", Template: "base", Hostname: "Named-1"}}})
	if err != nil || made.VMs[0].Hostname != "Named-1" {
		t.Fatalf("create with a hostname = %+v, %v", made, err)
	}
	// The seed of the next deploy says it; undeploy removes the seed.
	if _, err := e.svc.Deployments.Deploy(ctx, "a", lab.DeployOptions{}); err != nil {
		t.Fatal(err)
	}
	vms := e.get("a").VMs
	seeds, _ := filepath.Glob(filepath.Join(e.dir, deploy.RunDir, "*", deploy.SeedFile))
	var all string
	for _, f := range seeds {
		img, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		all += string(img)
		if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("seed %s: %v, %v; want mode 0600", f, fi, err)
		}
	}
	if len(seeds) != 2 {
		t.Fatalf("seeds after deploy: %q, want one per VM", seeds)
	}
	for _, want := range []string{"local-hostname: db1.lab.example", "instance-id: " + vms[0].InstanceID,
		"local-hostname: vm2-a", "instance-id: " + vms[1].InstanceID} {
		if !strings.Contains(all, want) {
			t.Errorf("seeds lack %q", want)
		}
	}
	if _, err := e.svc.Deployments.Undeploy(ctx, "a", false); err != nil {
		t.Fatal(err)
	}
	if left, _ := filepath.Glob(filepath.Join(e.dir, deploy.RunDir, "*", deploy.SeedFile)); len(left) != 0 {
		t.Errorf("seeds after undeploy: %q, want none", left)
	}
	if c, err := e.svc.Configs.SetHostname(ctx, "a", "vm1", ""); err != nil || c.VMs[0].Hostname != "vm1-a" {
		t.Errorf("SetHostname(\"\") = %+v, %v; want the default back", c, err)
	}
}
