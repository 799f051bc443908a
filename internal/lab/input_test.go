package lab_test

// Tests of the lab's refusal of bad and hostile input (issue 9 part 3, the
// security review's M2, M7, L2 and L5) over the real store and qemu-img.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"stagehand/internal/errdefs"
	"stagehand/internal/lab"
	"stagehand/internal/store"
)

// A second network whose subnet overlaps an existing one is refused (M2:
// the review created a second 10.9.0.0/24 beside n1), and so are the
// reserved blocks, whatever the pools say.
func TestCreateNetworkRefusesOverlapAndReservedSubnets(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.network("n1", "10.9.0.0/24", "10.9.0.10-10.9.0.50")
	for _, c := range []struct {
		spec lab.NetworkSpec
		kind error
	}{
		{lab.NetworkSpec{Name: "z4", Subnet: "10.9.0.0/24", Pools: []string{"10.9.0.60-10.9.0.70"}}, errdefs.ErrConflict},
		{lab.NetworkSpec{Name: "z5", Subnet: "10.9.0.128/25", Pools: []string{"10.9.0.160-10.9.0.170"}}, errdefs.ErrConflict},
		{lab.NetworkSpec{Name: "z6", Subnet: "10.0.0.0/8", Pools: []string{"10.1.0.10"}}, errdefs.ErrConflict},
		{lab.NetworkSpec{Name: "z0", Subnet: "0.0.0.0/0", Pools: []string{"0.0.0.2-255.255.255.254"}}, errdefs.ErrInvalid},
		{lab.NetworkSpec{Name: "z1", Subnet: "0.0.0.0/1", Pools: []string{"0.0.0.10-0.0.0.20"}}, errdefs.ErrInvalid},
		{lab.NetworkSpec{Name: "z2", Subnet: "127.0.0.0/8", Pools: []string{"127.0.0.10-127.0.0.20"}}, errdefs.ErrInvalid},
		{lab.NetworkSpec{Name: "z3", Subnet: "224.0.0.0/4", Pools: []string{"224.0.0.10-224.0.0.20"}}, errdefs.ErrInvalid},
	} {
		_, err := e.svc.Networks.Create(ctx, c.spec)
		if !errors.Is(err, c.kind) {
			t.Errorf("network %s %s: want %v, got %v", c.spec.Name, c.spec.Subnet, c.kind, err)
		}
	}
	ns, err := e.svc.Networks.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ns) != 1 {
		t.Errorf("%d networks, want only n1: %+v", len(ns), ns)
	}
	// A neighbour that does not overlap is fine.
	e.network("n2", "10.9.1.0/24", "10.9.1.10")
}

// smallTemplate imports a template on a 1 MiB raw disk (cheap to make many).
func (e *env) smallTemplate(name string) {
	e.t.Helper()
	p := filepath.Join(e.t.TempDir(), name+".raw")
	if err := os.WriteFile(p, make([]byte, 1<<20), 0o644); err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.svc.Templates.Import(context.Background(), lab.TemplateSpec{Name: name, Disks: []string{p}, Format: "raw"}); err != nil {
		e.t.Fatal(err)
	}
}

// Creating a configuration races with deleting its template (M7): every
// round ends with exactly one of them done (the configuration with its
// template kept, or the template gone and the configuration refused as
// not found), never an internal error, and the doctor finds the store and
// the layer files consistent. Before the fix 11 of 30 rounds failed with
// "chain from layer N loops" or a missing base file.
func TestCreateConfigRacesTemplateDelete(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	rounds := 20
	if testing.Short() {
		rounds = 6
	}
	outcomes := map[string]int{}
	for r := 0; r < rounds; r++ {
		tmpl, cfg := fmt.Sprintf("rt%dx", r), fmt.Sprintf("rc%dx", r)
		e.smallTemplate(tmpl)
		var vms []lab.VMSpec
		for i := 0; i < 8; i++ {
			vms = append(vms, lab.VMSpec{Name: fmt.Sprintf("v%d", i), Template: tmpl})
		}
		var createErr, deleteErr error
		var wg sync.WaitGroup
		start := make(chan struct{})
		wg.Add(2)
		go func() {
			defer wg.Done()
			<-start
			_, createErr = e.svc.Configs.Create(ctx, lab.ConfigSpec{Name: cfg, VMs: vms})
		}()
		go func() {
			defer wg.Done()
			<-start
			time.Sleep(time.Duration(r%5) * 2 * time.Millisecond)
			deleteErr = e.svc.Templates.Delete(ctx, tmpl)
		}()
		close(start)
		wg.Wait()
		for _, err := range []error{createErr, deleteErr} {
			if err != nil && errdefs.Kind(err) == nil {
				t.Errorf("round %d: internal error (a 500 over the API): %v", r, err)
			}
		}
		switch {
		case createErr == nil && errors.Is(deleteErr, errdefs.ErrConflict):
			outcomes["config won"]++
		case deleteErr == nil && errors.Is(createErr, errdefs.ErrNotFound):
			outcomes["delete won"]++
		default:
			t.Errorf("round %d: create %v, delete %v: want exactly one to succeed", r, createErr, deleteErr)
		}
	}
	t.Logf("outcomes over %d rounds: %v", rounds, outcomes)
	e.assertConsistent()
}

// A layer id, once deleted, is never given to another layer: a reused id
// made a new delta its own parent (M7), and ids are kept in other records.
func TestDeletedLayerIDIsNeverReused(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	maxID := func() int64 {
		var m int64
		if err := e.db.View(ctx, func(tx store.Tx) error {
			ls, err := tx.Layers().List()
			for _, l := range ls {
				m = max(m, l.ID)
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return m
	}
	e.smallTemplate("t1")
	e.config("c1", lab.VMSpec{Name: "vm", Template: "t1"})
	top := maxID() // c1's delta, the newest layer
	if err := e.svc.Configs.Delete(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	e.config("c2", lab.VMSpec{Name: "vm", Template: "t1"})
	if got := maxID(); got <= top {
		t.Fatalf("new delta has id %d, want above the deleted layer's %d", got, top)
	}
}

// SetIP without an address is refused and leaves the NIC as it was (L5: a
// PUT with {} re-addressed a manual NIC from the pool).
func TestSetIPRequiresAnAddress(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.smallTemplate("t1")
	e.network("lan", "10.9.0.0/24", "10.9.0.10-10.9.0.50")
	e.config("c1", lab.VMSpec{Name: "vm1", Template: "t1", Network: "lan", IP: "10.9.0.33"})
	for _, ip := range []string{"", "  "} {
		if _, err := e.svc.Networks.SetIP(ctx, "c1", "vm1", 0, ip); !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), "ip is required") {
			t.Errorf("SetIP(%q): want invalid naming ip, got %v", ip, err)
		}
	}
	n := e.get("c1").VMs[0].NICs[0]
	if n.IP != "10.9.0.33" || n.IPMode != "manual" {
		t.Errorf("NIC after refused SetIP: %s %s, want manual 10.9.0.33", n.IPMode, n.IP)
	}
}

// Free text and names that would reach a terminal raw, or hold "..", are
// refused before anything is written (L2, L6, L8).
func TestCreateConfigRefusesHostileText(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.smallTemplate("t1")
	vm := []lab.VMSpec{{Name: "vm", Template: "t1"}}
	many := make([]lab.VMSpec, lab.MaxVMs+1)
	for i := range many {
		many[i] = lab.VMSpec{Name: fmt.Sprintf("v%d", i), Template: "t1"}
	}
	for _, spec := range []lab.ConfigSpec{
		{Name: "esc1", Description: "\x1b[2J\x1b]0;owned\x07", VMs: vm},
		{Name: "nul1", Description: "a\x00b", VMs: vm},
		{Name: "nl1", Owner: "me\nyou", VMs: vm},
		{Name: "c1", Description: "\xff\xfe", VMs: vm},
		{Name: "big1", Description: strings.Repeat("x", lab.MaxDescription+1), VMs: vm},
		{Name: "big2", Owner: strings.Repeat("x", lab.MaxOwner+1), VMs: vm},
		{Name: "a..b", VMs: vm},
		{Name: "ok1", VMs: []lab.VMSpec{{Name: "x..y", Template: "t1"}}},
		{Name: "many", VMs: many},
	} {
		if _, err := e.svc.Configs.Create(ctx, spec); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("config %q (description %q, owner %q, %d VMs): want invalid, got %v", spec.Name, spec.Description, spec.Owner, len(spec.VMs), err)
		}
	}
	if cs, err := e.svc.Configs.List(ctx); err != nil || len(cs) != 0 {
		t.Errorf("configurations after refusals: %d (%v), want none", len(cs), err)
	}
	// Printable unicode stays allowed.
	e.svc.Configs.Create(ctx, lab.ConfigSpec{Name: "uni", Description: "Prüfstand für Ünïcödé ✓", Owner: "Zoë", VMs: vm})
	if c := e.get("uni"); c.Owner != "Zoë" {
		t.Errorf("owner %q", c.Owner)
	}
	e.assertConsistent()
}
