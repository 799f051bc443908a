package client_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"stagehand/internal/api/wire"
	"stagehand/internal/client"
	"stagehand/internal/errdefs"
)

func TestLibraryArchivesEventsRoundTrip(t *testing.T) {
	c, l := newClient(t)
	ctx := context.Background()
	if _, err := c.Templates().Import(ctx, wire.TemplateRequest{Name: "tmpl", Disks: []string{l.Image(t, "a.qcow2", 1<<30)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Networks().Create(ctx, wire.NetworkRequest{Name: "lan", Subnet: "10.0.0.0/24", Pools: []string{"10.0.0.10-10.0.0.20"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Configs().Create(ctx, wire.ConfigRequest{Name: "web", VMs: []wire.VMRequest{{Name: "vm1", Template: "tmpl", Network: "lan"}}}); err != nil {
		t.Fatal(err)
	}

	// Follow the event log from the start, while things happen.
	followCtx, stop := context.WithCancel(ctx)
	defer stop()
	got := make(chan wire.Event, 16)
	followed := make(chan error, 1)
	go func() {
		followed <- c.Events().Follow(followCtx, 0, func(e wire.Event) error { got <- e; return nil })
	}()

	entry, err := c.Library().Capture(ctx, wire.CaptureRequest{Config: "web", Name: "gold"})
	if err != nil || entry.Kind != wire.KindLibrary {
		t.Fatalf("Capture = %+v, %v", entry, err)
	}
	if es, err := c.Library().List(ctx); err != nil || len(es) != 1 || es[0].Name != "gold" {
		t.Fatalf("ListLibrary = %+v, %v", es, err)
	}
	ws, err := c.Library().Checkout(ctx, "gold", wire.CheckoutRequest{Name: "ws"})
	if err != nil || ws.Name != "ws" || ws.Kind != wire.KindConfig {
		t.Fatalf("Checkout = %+v, %v", ws, err)
	}
	if _, err := c.Library().Checkout(ctx, "nope", wire.CheckoutRequest{Name: "x"}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("checkout of a missing entry: %v", err)
	}
	if _, err := c.Configs().SetLease(ctx, "ws", wire.LeaseRequest{Storage: "soon"}); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("lease \"soon\": %v, want invalid", err)
	}
	cfg, err := c.Configs().SetLease(ctx, "ws", wire.LeaseRequest{Storage: "30d", Deploy: "4h", UndeployAction: wire.UndeployDiscard})
	if err != nil || cfg.Lease.StorageExpires.IsZero() || cfg.Lease.DeployLeaseSeconds != 4*3600 || cfg.Lease.UndeployAction != wire.UndeployDiscard {
		t.Fatalf("SetLease = %+v, %v", cfg, err)
	}

	j, err := c.Archives().Start(ctx, wire.ArchiveRequest{Config: "web", Name: "arch"})
	if err != nil {
		t.Fatal(err)
	}
	if j, err = c.Jobs().Wait(ctx, j.ID, 10*time.Second); err != nil || j.State != wire.JobSucceeded {
		t.Fatalf("archive job = %+v, %v", j, err)
	}
	a, err := c.Archives().Get(ctx, "arch")
	if err != nil || a.Source != "web" || len(a.VMs) != 1 {
		t.Fatalf("GetArchive = %+v, %v", a, err)
	}
	file := filepath.Join(t.TempDir(), "arch.tar")
	if _, err = c.Archives().Download(ctx, "arch", file); err != nil {
		t.Fatal(err)
	}
	if j, err = c.Archives().Upload(ctx, client.BundleUpload{File: file, Name: "copy", MapNetwork: map[string]string{"lan": "lan"}}); err != nil {
		t.Fatal(err)
	}
	if j, err = c.Jobs().Wait(ctx, j.ID, 10*time.Second); err != nil || j.State != wire.JobSucceeded || j.Subject != "copy" {
		t.Fatalf("import job = %+v, %v", j, err)
	}
	if as, err := c.Archives().List(ctx); err != nil || len(as) != 2 {
		t.Fatalf("ListArchives = %+v, %v", as, err)
	}
	rep, err := c.Server().Cleanup(ctx, 3)
	if err != nil || rep.Policy == "" {
		t.Fatalf("Cleanup = %+v, %v", rep, err)
	}
	if rep, err = c.Server().ApplyCleanup(ctx, wire.CleanupRequest{DryRun: true}); err != nil || rep.Applied {
		t.Fatalf("ApplyCleanup dry run = %+v, %v", rep, err)
	}

	// Every change reached the follower, in order, and the log lists them.
	want := []string{"import tmpl", "create lan", "create web", "capture gold", "checkout ws", "lease ws", "archive arch", "export arch", "import copy"}
	for i, w := range want {
		select {
		case e := <-got:
			if e.Action+" "+e.Subject != w || e.ID != int64(i+1) {
				t.Errorf("event %d: %+v, want %s", i+1, e, w)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no event %q after 10s", w)
		}
	}
	stop()
	if err := <-followed; !errors.Is(err, context.Canceled) {
		t.Errorf("FollowEvents ended with %v", err)
	}
	es, err := c.Events().List(ctx, 2, 2)
	if err != nil || len(es) != 2 || es[0].ID != 3 {
		t.Fatalf("Events(after 2, limit 2) = %+v, %v", es, err)
	}
}
