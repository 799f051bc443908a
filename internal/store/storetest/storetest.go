// Package storetest is the conformance suite of store.Store. Every
// implementation (store/sqlite, store/postgres) runs Run from its own tests
// against a real database, so that all of them keep the same contract:
// round-tripping every field, the error kinds, cascades, rollback, and
// atomic read-then-write under concurrency.
//
// Besides what store.go documents, the suite holds implementations to:
//   - a given CreatedAt (StartedAt for Op) is kept; a zero one is stamped;
//     times compare with Equal (the location may change);
//   - an empty list (LayerIDs, DNS, Pools, file lists) may read back as nil;
//   - a foreign key violation is ErrConflict: deleting what is still
//     referred to (a parent layer, a disk's top layer, a network with
//     allocations, an allocation a NIC carries) or referring to what does
//     not exist;
//   - CreateConfig is all or nothing even if fn goes on after its error;
//   - UpdateConfig stamps UpdatedAt with the current time;
//   - View rejects writes; a context that ends inside Update commits nothing;
//   - a new store holds the organization store.DefaultOrg with its shared
//     workspace store.MainWorkspace (and nothing else of the directory);
//   - a share or quota goes with the object, user or workspace it names; a
//     token goes with its user and with the workspace it is restricted to;
//   - every visibility rule of store.Directory holds for every kind of
//     object, in the lists and in ObjectVisible alike, and for events in
//     ListEventsVisible and EventVisible;
//   - times read back are in UTC, zero ones zero;
//   - event ids are never reused (not after the log was pruned to nothing,
//     nor after a reopen) and increase in commit order, so that a reader
//     paging after the last id it saw misses nothing;
//   - a write the store refuses inside Update (ErrConflict, ErrInvalid)
//     fails alone: fn may go on, and what it writes next is committed;
//   - writers are serialised: of goroutines racing to allocate the last
//     free address (read, then write), one wins and the others see it.
//
// MethodCoverage fails when a method of store.Store or store.Tx has no
// case (see coverage.go).
package storetest

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"stagehand/internal/errdefs"
	"stagehand/internal/store"
)

// Open returns a store for the test t. The first call for a given t must
// return a store backed by a new, empty database; a later call with the
// same t (made after the suite has closed the previous store) must open
// that same database again, which is how the suite checks that committed
// data survives a reopen. The suite closes every store it opens.
type Open func(t *testing.T) store.Store

// Run runs the whole suite. Subtests get a database each, so they may run
// in parallel; the load tests run first, one at a time, so that their
// timings (logged with t.Logf) are not disturbed by the others.
// MethodCoverage checks that every store method has a case (coverage.go).
func Run(t *testing.T, open Open) {
	cases := suiteCases()
	t.Run("MethodCoverage", func(t *testing.T) { testMethodCoverage(t, cases) })
	for _, c := range cases {
		if c.serial {
			t.Run(c.name, func(t *testing.T) { c.run(t, open) })
		}
	}
	for _, c := range cases {
		if !c.serial {
			t.Run(c.name, func(t *testing.T) {
				t.Parallel()
				c.run(t, open)
			})
		}
	}
}

// suiteCase is one test of the suite and the store methods it tests.
type suiteCase struct {
	name string
	// covers names the methods of store.Store and store.Tx whose contract
	// the case asserts (not those it merely calls to set up).
	covers []string
	// fn runs on a fresh store; load runs with the harness, to open its
	// store (and reopen it) itself.
	fn     func(*testing.T, store.Store)
	load   func(*testing.T, harness)
	serial bool
}

func (c suiteCase) run(t *testing.T, open Open) {
	h := harness{open: open, rec: newRecorder()}
	if c.load != nil {
		c.load(t, h)
	} else {
		c.fn(t, h.fresh(t))
	}
	// Reached only when the case did not stop the test (t.Fatal).
	h.rec.checkCalled(t, c.covers)
}

// suiteCases lists the cases of Run.
func suiteCases() []suiteCase {
	return append(append(baseCases(), clusterCases()...), shortcutCases()...)
}

func baseCases() []suiteCase {
	return []suiteCase{
		{name: "ConcurrentAllocations", load: testConcurrentAllocations, serial: true,
			covers: []string{"Update", "View", "Close", "Allocations.Create", "Allocations.List"}},
		{name: "ConcurrentSmallUpdates", load: testConcurrentSmallUpdates, serial: true,
			covers: []string{"Update", "Ops.Create", "Ops.List"}},

		{name: "Templates", fn: testTemplates,
			covers: []string{"Templates.Create", "Templates.Get", "Templates.GetByID", "Templates.List", "Templates.Delete"}},
		{name: "Layers", fn: testLayers,
			covers: []string{"Layers.Create", "Layers.Get", "Layers.List", "Layers.Update", "Layers.Delete", "Layers.Children", "Layers.DisksWithTop"}},
		{name: "Networks", fn: testNetworks,
			covers: []string{"Networks.Create", "Networks.Get", "Networks.GetByID", "Networks.List", "Networks.Delete"}},
		{name: "Allocations", fn: testAllocations,
			covers: []string{"Allocations.Create", "Allocations.Get", "Allocations.List", "Allocations.Delete", "Allocations.NICs"}},
		{name: "Configs", fn: testConfigs,
			covers: []string{"Configs.Create", "Configs.Get", "Configs.GetByID", "Configs.List"}},
		{name: "ConfigUpdates", fn: testConfigUpdates,
			covers: []string{"Configs.Update", "Configs.UpdateVM", "Configs.SetDiskTop", "Configs.UpdateNIC"}},
		{name: "GuestIdentity", fn: testGuestIdentity,
			covers: []string{"Templates.Create", "Templates.Get", "Templates.GetByID", "Configs.Create", "Configs.Get", "Configs.GetByID", "Configs.UpdateVM"}},
		{name: "ConfigDeleteCascades", fn: testConfigDeleteCascades,
			covers: []string{"Configs.Delete"}},
		{name: "Ops", fn: testOps,
			covers: []string{"Ops.Create", "Ops.Update", "Ops.Delete", "Ops.List"}},
		{name: "RollbackOnError", fn: testRollbackOnError, covers: []string{"Update"}},
		{name: "RollbackOnPanic", fn: testRollbackOnPanic, covers: []string{"Update"}},
		{name: "ViewIsReadOnly", fn: testViewIsReadOnly, covers: []string{"View"}},
		{name: "ViewSeesCommittedSnapshot", fn: testViewSeesCommittedSnapshot, covers: []string{"Update", "View"}},
		{name: "Context", fn: testContext, covers: []string{"Update", "View"}},

		{name: "DefaultWorkspace", fn: testDefaultWorkspace, covers: []string{"Orgs.List", "Workspaces.Get"}},
		{name: "OrgsAndWorkspaces", fn: testOrgsAndWorkspaces,
			covers: []string{"Orgs.Create", "Orgs.Get", "Orgs.GetByID", "Orgs.List", "Orgs.Delete",
				"Workspaces.Create", "Workspaces.Get", "Workspaces.GetByID", "Workspaces.List", "Workspaces.Update", "Workspaces.Delete"}},
		{name: "Users", fn: testUsers,
			covers: []string{"Users.Create", "Users.Get", "Users.GetByID", "Users.GetByEmail", "Users.List", "Users.Update", "Users.Delete"}},
		{name: "GroupsAndAdmins", fn: testGroupsAndAdmins,
			covers: []string{"Groups.Create", "Groups.Get", "Groups.GetByID", "Groups.List", "Groups.Delete", "Groups.AddMember",
				"Groups.RemoveMember", "Groups.Members", "Groups.OfUser", "Orgs.AddAdmin", "Orgs.RemoveAdmin", "Orgs.Admins", "Orgs.AdministeredBy"}},
		{name: "Memberships", fn: testMemberships,
			covers: []string{"Memberships.Put", "Memberships.Get", "Memberships.Delete", "Memberships.OfUser", "Memberships.OfWorkspace"}},
		{name: "Tokens", fn: testTokens,
			covers: []string{"Tokens.Create", "Tokens.Get", "Tokens.List", "Tokens.Revoke", "Tokens.Touch", "Tokens.DeleteExpired"}},
		{name: "Shares", fn: testShares,
			covers: []string{"Shares.Put", "Shares.Remove", "Shares.Of", "Shares.ToUser", "Shares.ToGroup"}},
		{name: "Quotas", fn: testQuotas,
			covers: []string{"Quotas.Set", "Quotas.Get", "Quotas.Delete", "Quotas.Use"}},
		{name: "Ownership", fn: testOwnership, covers: []string{"Objects.SetOwnership"}},
		{name: "Library", fn: testLibrary,
			covers: []string{"Configs.Create", "Configs.Get", "Configs.GetByID", "Configs.List", "Configs.Update"}},
		{name: "Archives", fn: testArchives,
			covers: []string{"Archives.Create", "Archives.Get", "Archives.List", "Archives.Delete"}},
		{name: "Leases", fn: testLeases,
			covers: []string{"Leases.Put", "Leases.OfConfig", "Leases.OfArchive", "Leases.List"}},
		{name: "LeasePolicies", fn: testLeasePolicies,
			covers: []string{"LeasePolicies.Put", "LeasePolicies.Get", "LeasePolicies.Delete", "LeasePolicies.List"}},
		{name: "Events", load: testEvents,
			covers: []string{"Events.Add", "Events.List", "Events.DeleteBefore"}},
		{name: "EventsOf", fn: testEventsOf, covers: []string{"Events.Of", "Events.Newest"}},
		{name: "EventsFollowed", fn: testEventsFollowed, covers: []string{"Update", "Events.Add", "Events.List"}},
		{name: "EventsVisible", fn: testEventsVisible, covers: []string{"Visible.Events", "Visible.Event"}},
		{name: "LastFreeAddress", fn: testLastFreeAddress, covers: []string{"Update", "Allocations.Create", "Allocations.List"}},
		{name: "QuotaRace", fn: testQuotaRace, covers: []string{"Update", "Quotas.Use"}},
		{name: "RefusedWriteKeepsTx", fn: testRefusedWriteKeepsTx, covers: []string{"Update"}},

		{name: "Hosts", fn: testHosts,
			covers: []string{"Hosts.Register", "Hosts.Get", "Hosts.List", "Hosts.Touch", "Hosts.SetState"}},
		{name: "Snapshots", fn: testSnapshots,
			covers: []string{"Snapshots.Create", "Snapshots.Get", "Snapshots.List", "Snapshots.SetParent", "Snapshots.Delete", "Snapshots.WithLayer"}},

		{name: "Visibility", fn: testVisibility,
			covers: []string{"Viewers.Load", "Viewers.LoadIn", "Objects.Ref", "Objects.Access", "Objects.Visible",
				"Visible.Configs", "Visible.Templates", "Visible.Networks", "Visible.Archives"}},
	}
}

type harness struct {
	open Open
	rec  *recorder // the methods the case calls
}

// fresh opens the test's store and closes it when the test ends.
func (h harness) fresh(t *testing.T) store.Store {
	t.Helper()
	s := h.open(t)
	var once sync.Once
	closeStore := func() error {
		var err error
		once.Do(func() { err = s.Close() })
		return err
	}
	t.Cleanup(func() {
		if err := closeStore(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	return recordingStore{Store: closingStore{Store: s, close: closeStore}, rec: h.rec}
}

// closingStore makes Close idempotent for the suite, which closes a store
// before reopening it and again in its cleanup.
type closingStore struct {
	store.Store
	close func() error
}

func (c closingStore) Close() error { return c.close() }

// update runs fn in an Update and fails the test on error.
func update(t *testing.T, s store.Store, fn func(store.Tx) error) {
	t.Helper()
	if err := s.Update(context.Background(), fn); err != nil {
		t.Fatalf("update: %v", err)
	}
}

// view runs fn in a View and fails the test on error.
func view(t *testing.T, s store.Store, fn func(store.Tx) error) {
	t.Helper()
	if err := s.View(context.Background(), fn); err != nil {
		t.Fatalf("view: %v", err)
	}
}

// wantKind fails the test unless err is of kind and its message mentions
// every one of mentions (the name of the thing).
func wantKind(t *testing.T, what string, err, kind error, mentions ...string) {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Errorf("%s: error %v, want kind %v", what, err, kind)
		return
	}
	for _, m := range mentions {
		if !strings.Contains(err.Error(), m) {
			t.Errorf("%s: error %q does not mention %q", what, err, m)
		}
	}
}

// cmpOpts compares records: times with Equal (the location may change),
// addresses by value, and a nil list equal to an empty one.
var cmpOpts = cmp.Options{
	cmpopts.EquateEmpty(),
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
}

// diff compares what the store returned (got) with want, and checks that
// every time in got is in UTC.
func diff(t *testing.T, what string, want, got any) {
	t.Helper()
	if d := cmp.Diff(want, got, cmpOpts); d != "" {
		t.Errorf("%s mismatch (-want +got):\n%s", what, d)
	}
	checkUTC(t, what, reflect.ValueOf(got), "")
}

// checkUTC fails for each time in v (a record, a pointer to one, or a list
// of them) that is not in UTC: the store gives times back in UTC, whatever
// zone they were written in, so that the API and the logs show one zone.
func checkUTC(t *testing.T, what string, v reflect.Value, path string) {
	t.Helper()
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			checkUTC(t, what, v.Elem(), path)
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			checkUTC(t, what, v.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
	case reflect.Struct:
		if tm, ok := v.Interface().(time.Time); ok {
			if tm.Location() != time.UTC {
				t.Errorf("%s: %s = %v is not in UTC", what, path, tm)
			}
			return
		}
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				checkUTC(t, what, v.Field(i), path+"."+v.Type().Field(i).Name)
			}
		}
	}
}

func mustAddr(s string) netip.Addr     { return netip.MustParseAddr(s) }
func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// A fixed time with nanoseconds and a zone, to check that given times are
// kept (as the same instant) rather than replaced.
var someTime = time.Date(2024, 2, 29, 13, 14, 15, 123456789, time.FixedZone("CET", 3600))

// checkStamped fails unless got was stamped by the store between before and
// after (allowing for clock granularity).
func checkStamped(t *testing.T, what string, got, before, after time.Time) {
	t.Helper()
	if got.IsZero() || got.Before(before.Add(-time.Second)) || got.After(after.Add(time.Second)) {
		t.Errorf("%s = %v, want the time of the call (%v..%v)", what, got, before, after)
	}
}

func testTemplates(t *testing.T, s store.Store) {
	var full, empty, dated store.Template
	before := time.Now()
	update(t, s, func(tx store.Tx) error {
		l1 := &store.Layer{Path: "layers/t1.qcow2", Frozen: true}
		l2 := &store.Layer{Path: "layers/t2.qcow2", Frozen: true}
		for _, l := range []*store.Layer{l1, l2} {
			if err := tx.Layers().Create(l); err != nil {
				return err
			}
		}
		full = store.Template{
			Name: "debian", Description: "Debian 12 with tools", CPUs: 2, MemoryMiB: 1024,
			LayerIDs: []int64{l2.ID, l1.ID}, Kernel: "files/t-1-vmlinuz", Initrd: "files/t-1-initrd",
			KernelSHA256: strings.Repeat("ab", 32), KernelSize: 5 << 20, InitrdSHA256: strings.Repeat("cd", 32), InitrdSize: 1 << 20,
			Cmdline: "console=ttyS0 root=/dev/vda",
		}
		empty = store.Template{Name: "bare", CPUs: 1, MemoryMiB: 64}
		dated = store.Template{Name: "dated", CPUs: 1, MemoryMiB: 64, LayerIDs: []int64{l1.ID}, CreatedAt: someTime}
		for _, tm := range []*store.Template{&full, &empty, &dated} {
			if err := tx.Templates().Create(tm); err != nil {
				return err
			}
		}
		return nil
	})
	after := time.Now()
	if full.ID == 0 || empty.ID == 0 || full.ID == empty.ID {
		t.Fatalf("CreateTemplate set ids %d, %d", full.ID, empty.ID)
	}
	checkStamped(t, "CreatedAt", full.CreatedAt, before, after)
	if !dated.CreatedAt.Equal(someTime) {
		t.Errorf("CreatedAt given as %v became %v", someTime, dated.CreatedAt)
	}

	view(t, s, func(tx store.Tx) error {
		got, err := tx.Templates().Get("debian")
		if err != nil {
			return err
		}
		diff(t, "Templates.Get", &full, got)
		got, err = tx.Templates().GetByID(empty.ID)
		if err != nil {
			return err
		}
		diff(t, "GetTemplateByID (empty lists, zero boot files)", &empty, got)
		all, err := tx.Templates().List()
		if err != nil {
			return err
		}
		diff(t, "Templates.List", []store.Template{full, empty, dated}, all)

		_, err = tx.Templates().Get("nope")
		wantKind(t, "GetTemplate of a missing name", err, errdefs.ErrNotFound, "nope")
		_, err = tx.Templates().GetByID(987654)
		wantKind(t, "GetTemplateByID of a missing id", err, errdefs.ErrNotFound)
		return nil
	})

	err := s.Update(context.Background(), func(tx store.Tx) error {
		return tx.Templates().Create(&store.Template{Name: "debian", CPUs: 1, MemoryMiB: 64})
	})
	wantKind(t, "CreateTemplate with a taken name", err, errdefs.ErrConflict, "debian")

	update(t, s, func(tx store.Tx) error { return tx.Templates().Delete(full.ID) })
	view(t, s, func(tx store.Tx) error {
		_, err := tx.Templates().Get("debian")
		wantKind(t, "GetTemplate after delete", err, errdefs.ErrNotFound, "debian")
		for _, id := range full.LayerIDs {
			if _, err := tx.Layers().Get(id); err != nil {
				t.Errorf("DeleteTemplate touched layer %d: %v", id, err)
			}
		}
		return nil
	})
	err = s.Update(context.Background(), func(tx store.Tx) error { return tx.Templates().Delete(full.ID) })
	wantKind(t, "DeleteTemplate of a missing id", err, errdefs.ErrNotFound)
}

func testLayers(t *testing.T, s store.Store) {
	var base, mid, a, b store.Layer
	var tm store.Template
	before := time.Now()
	update(t, s, func(tx store.Tx) error {
		base = store.Layer{Path: "layers/base.qcow2", Frozen: true, VirtualSize: 10 << 30}
		if err := tx.Layers().Create(&base); err != nil {
			return err
		}
		tm = store.Template{Name: "tmpl", CPUs: 1, MemoryMiB: 64, LayerIDs: []int64{base.ID}}
		if err := tx.Templates().Create(&tm); err != nil {
			return err
		}
		base.TemplateID = tm.ID
		if err := tx.Layers().Update(&base); err != nil {
			return err
		}
		mid = store.Layer{Path: "layers/mid.qcow2", ParentID: base.ID, Frozen: true, VirtualSize: 10 << 30, CreatedAt: someTime}
		if err := tx.Layers().Create(&mid); err != nil {
			return err
		}
		a = store.Layer{Path: "layers/a.qcow2", ParentID: mid.ID, VirtualSize: 10 << 30}
		b = store.Layer{Path: "layers/b.qcow2", ParentID: mid.ID, VirtualSize: 10 << 30}
		if err := tx.Layers().Create(&a); err != nil {
			return err
		}
		return tx.Layers().Create(&b)
	})
	after := time.Now()
	checkStamped(t, "CreatedAt", a.CreatedAt, before, after)

	view(t, s, func(tx store.Tx) error {
		got, err := tx.Layers().Get(base.ID)
		if err != nil {
			return err
		}
		diff(t, "GetLayer (base, template)", &base, got)
		got, err = tx.Layers().Get(mid.ID)
		if err != nil {
			return err
		}
		diff(t, "GetLayer (delta)", &mid, got)
		all, err := tx.Layers().List()
		if err != nil {
			return err
		}
		diff(t, "Layers.List", []store.Layer{base, mid, a, b}, all)
		kids, err := tx.Layers().Children(mid.ID)
		if err != nil {
			return err
		}
		diff(t, "LayerChildren(mid)", []store.Layer{a, b}, kids)
		kids, err = tx.Layers().Children(a.ID)
		if err != nil {
			return err
		}
		diff(t, "LayerChildren(leaf)", []store.Layer(nil), kids)
		_, err = tx.Layers().Get(987654)
		wantKind(t, "GetLayer of a missing id", err, errdefs.ErrNotFound)
		return nil
	})

	// UpdateLayer writes Frozen, TemplateID and VirtualSize, and nothing else.
	update(t, s, func(tx store.Tx) error {
		changed := a
		changed.Frozen, changed.TemplateID, changed.VirtualSize = true, tm.ID, 20<<30
		changed.Path, changed.ParentID = "layers/elsewhere.qcow2", 0
		if err := tx.Layers().Update(&changed); err != nil {
			return err
		}
		a.Frozen, a.TemplateID, a.VirtualSize = true, tm.ID, 20<<30
		got, err := tx.Layers().Get(a.ID)
		if err != nil {
			return err
		}
		diff(t, "GetLayer after UpdateLayer", &a, got)
		a.TemplateID = 0
		if err := tx.Layers().Update(&a); err != nil {
			return err
		}
		got, err = tx.Layers().Get(a.ID)
		if err != nil {
			return err
		}
		diff(t, "GetLayer after clearing TemplateID", &a, got)
		return nil
	})

	ctx := context.Background()
	err := s.Update(ctx, func(tx store.Tx) error { return tx.Layers().Create(&store.Layer{Path: "layers/a.qcow2"}) })
	wantKind(t, "CreateLayer with a taken path", err, errdefs.ErrConflict, "layers/a.qcow2")
	err = s.Update(ctx, func(tx store.Tx) error {
		return tx.Layers().Create(&store.Layer{Path: "layers/orphan.qcow2", ParentID: 987654})
	})
	wantKind(t, "CreateLayer with a missing parent", err, errdefs.ErrConflict)
	err = s.Update(ctx, func(tx store.Tx) error { return tx.Layers().Update(&store.Layer{ID: 987654}) })
	wantKind(t, "UpdateLayer of a missing id", err, errdefs.ErrNotFound)

	// A parent with children cannot go; neither can a disk's top layer.
	for _, l := range []store.Layer{mid, base} {
		err = s.Update(ctx, func(tx store.Tx) error { return tx.Layers().Delete(l.ID) })
		wantKind(t, "DeleteLayer of a parent", err, errdefs.ErrConflict)
	}
	nw := createNetwork(t, s, "lan", "10.0.0.0/24")
	var c store.Config
	update(t, s, func(tx store.Tx) error {
		c = store.Config{Name: "web", State: store.StateUndeployed, VMs: []store.VM{{
			Name: "vm", CPUs: 1, MemoryMiB: 64, State: store.StateUndeployed,
			Disks: []store.Disk{{Index: 0, TopLayerID: a.ID}},
			NICs:  []store.NIC{{NetworkID: nw.ID, MAC: "52:54:00:00:00:01", IPMode: store.IPModeDHCP}},
		}}}
		return tx.Configs().Create(&c)
	})
	err = s.Update(ctx, func(tx store.Tx) error { return tx.Layers().Delete(a.ID) })
	wantKind(t, "DeleteLayer of a disk's top", err, errdefs.ErrConflict)
	view(t, s, func(tx store.Tx) error {
		ds, err := tx.Layers().DisksWithTop(a.ID)
		if err != nil {
			return err
		}
		diff(t, "DisksWithTop(a)", c.VMs[0].Disks, ds)
		ds, err = tx.Layers().DisksWithTop(b.ID)
		if err != nil {
			return err
		}
		diff(t, "DisksWithTop(b)", []store.Disk(nil), ds)
		if _, err := tx.Layers().Get(mid.ID); err != nil {
			t.Errorf("refused DeleteLayer removed the layer anyway: %v", err)
		}
		return nil
	})

	// Released from the top down, the whole chain goes.
	update(t, s, func(tx store.Tx) error {
		if err := tx.Configs().Delete(c.ID); err != nil {
			return err
		}
		for _, id := range []int64{a.ID, b.ID, mid.ID, base.ID} {
			if err := tx.Layers().Delete(id); err != nil {
				return err
			}
		}
		return nil
	})
	view(t, s, func(tx store.Tx) error {
		_, err := tx.Layers().Get(b.ID)
		wantKind(t, "GetLayer after delete", err, errdefs.ErrNotFound)
		return nil
	})
	err = s.Update(ctx, func(tx store.Tx) error { return tx.Layers().Delete(b.ID) })
	wantKind(t, "DeleteLayer of a missing id", err, errdefs.ErrNotFound)
}

// createNetwork makes a network with a pool covering the subnet's hosts.
func createNetwork(t *testing.T, s store.Store, name, subnet string) *store.Network {
	t.Helper()
	p := mustPrefix(subnet)
	first := p.Addr().Next().Next()
	last := first
	for n := p.Addr().Next(); p.Contains(n.Next()); n = n.Next() {
		last = n
	}
	nw := &store.Network{Name: name, Subnet: p, Gateway: p.Addr().Next(), Pools: []store.IPRange{{First: first, Last: last}}}
	update(t, s, func(tx store.Tx) error { return tx.Networks().Create(nw) })
	return nw
}

func testNetworks(t *testing.T, s store.Store) {
	lan := store.Network{
		Name: "lan", Subnet: mustPrefix("10.0.0.0/24"), Gateway: mustAddr("10.0.0.1"),
		DNS: []netip.Addr{mustAddr("10.0.0.1"), mustAddr("1.1.1.1")},
		Pools: []store.IPRange{
			{First: mustAddr("10.0.0.10"), Last: mustAddr("10.0.0.99")},
			{First: mustAddr("10.0.0.200"), Last: mustAddr("10.0.0.250")},
		},
	}
	bare := store.Network{Name: "bare", Subnet: mustPrefix("192.168.5.0/24")}
	v6 := store.Network{
		Name: "v6", Subnet: mustPrefix("fd00:1::/64"), Gateway: mustAddr("fd00:1::1"),
		DNS: []netip.Addr{mustAddr("fd00:1::53")}, CreatedAt: someTime,
		Pools: []store.IPRange{{First: mustAddr("fd00:1::100"), Last: mustAddr("fd00:1::1ff")}},
	}
	before := time.Now()
	update(t, s, func(tx store.Tx) error {
		for _, n := range []*store.Network{&lan, &bare, &v6} {
			if err := tx.Networks().Create(n); err != nil {
				return err
			}
		}
		return nil
	})
	checkStamped(t, "CreatedAt", lan.CreatedAt, before, time.Now())

	view(t, s, func(tx store.Tx) error {
		got, err := tx.Networks().Get("lan")
		if err != nil {
			return err
		}
		diff(t, "Networks.Get", &lan, got)
		got, err = tx.Networks().GetByID(bare.ID)
		if err != nil {
			return err
		}
		diff(t, "GetNetworkByID (zero gateway, no DNS, no pools)", &bare, got)
		all, err := tx.Networks().List()
		if err != nil {
			return err
		}
		diff(t, "Networks.List", []store.Network{lan, bare, v6}, all)
		_, err = tx.Networks().Get("wan")
		wantKind(t, "GetNetwork of a missing name", err, errdefs.ErrNotFound, "wan")
		_, err = tx.Networks().GetByID(987654)
		wantKind(t, "GetNetworkByID of a missing id", err, errdefs.ErrNotFound)
		return nil
	})

	ctx := context.Background()
	err := s.Update(ctx, func(tx store.Tx) error {
		return tx.Networks().Create(&store.Network{Name: "lan", Subnet: mustPrefix("10.9.0.0/24")})
	})
	wantKind(t, "CreateNetwork with a taken name", err, errdefs.ErrConflict, "lan")

	update(t, s, func(tx store.Tx) error {
		return tx.Allocations().Create(&store.Allocation{NetworkID: lan.ID, IP: mustAddr("10.0.0.10"), Kind: store.AllocInternal})
	})
	err = s.Update(ctx, func(tx store.Tx) error { return tx.Networks().Delete(lan.ID) })
	wantKind(t, "DeleteNetwork with held addresses", err, errdefs.ErrConflict, "lan")

	update(t, s, func(tx store.Tx) error { return tx.Networks().Delete(bare.ID) })
	view(t, s, func(tx store.Tx) error {
		_, err := tx.Networks().Get("bare")
		wantKind(t, "GetNetwork after delete", err, errdefs.ErrNotFound, "bare")
		_, err = tx.Networks().Get("lan")
		return err
	})
	err = s.Update(ctx, func(tx store.Tx) error { return tx.Networks().Delete(bare.ID) })
	wantKind(t, "DeleteNetwork of a missing id", err, errdefs.ErrNotFound)
}

func testAllocations(t *testing.T, s store.Store) {
	lan := createNetwork(t, s, "lan", "10.0.0.0/24")
	other := createNetwork(t, s, "other", "10.0.0.0/24")
	a1 := store.Allocation{NetworkID: lan.ID, IP: mustAddr("10.0.0.10"), Kind: store.AllocInternal}
	a2 := store.Allocation{NetworkID: lan.ID, IP: mustAddr("10.0.0.11"), Kind: store.AllocExternal, Holder: "fence of web", CreatedAt: someTime}
	a3 := store.Allocation{NetworkID: other.ID, IP: mustAddr("10.0.0.10"), Kind: store.AllocInternal}
	// Below a1's address but made after it: lists are by id, not address.
	low := store.Allocation{NetworkID: other.ID, IP: mustAddr("10.0.0.2"), Kind: store.AllocExternal, Holder: "fence of db"}
	v6 := createNetwork(t, s, "v6", "fd00:1::/120")
	a6 := store.Allocation{NetworkID: v6.ID, IP: mustAddr("fd00:1::10"), Kind: store.AllocInternal}
	before := time.Now()
	update(t, s, func(tx store.Tx) error {
		for _, a := range []*store.Allocation{&a1, &a2, &a3, &low, &a6} {
			if err := tx.Allocations().Create(a); err != nil {
				return err
			}
		}
		return nil
	})
	checkStamped(t, "CreatedAt", a1.CreatedAt, before, time.Now())

	view(t, s, func(tx store.Tx) error {
		got, err := tx.Allocations().Get(a2.ID)
		if err != nil {
			return err
		}
		diff(t, "Allocations.Get", &a2, got)
		as, err := tx.Allocations().List(lan.ID)
		if err != nil {
			return err
		}
		diff(t, "ListAllocations(lan)", []store.Allocation{a1, a2}, as)
		as, err = tx.Allocations().List(other.ID)
		if err != nil {
			return err
		}
		diff(t, "ListAllocations(other): same address on another network, by id", []store.Allocation{a3, low}, as)
		got, err = tx.Allocations().Get(a6.ID)
		if err != nil {
			return err
		}
		diff(t, "GetAllocation (IPv6)", &a6, got)
		as, err = tx.Allocations().List(987654)
		if err != nil {
			return err
		}
		diff(t, "ListAllocations(missing network)", []store.Allocation(nil), as)
		_, err = tx.Allocations().Get(987654)
		wantKind(t, "GetAllocation of a missing id", err, errdefs.ErrNotFound)
		return nil
	})

	ctx := context.Background()
	err := s.Update(ctx, func(tx store.Tx) error {
		return tx.Allocations().Create(&store.Allocation{NetworkID: lan.ID, IP: mustAddr("10.0.0.10"), Kind: store.AllocExternal})
	})
	wantKind(t, "CreateAllocation of a held address", err, errdefs.ErrConflict, "10.0.0.10")
	err = s.Update(ctx, func(tx store.Tx) error {
		return tx.Allocations().Create(&store.Allocation{NetworkID: 987654, IP: mustAddr("10.0.0.10"), Kind: store.AllocInternal})
	})
	wantKind(t, "CreateAllocation on a missing network", err, errdefs.ErrConflict)

	// A family: two VMs of two configurations carry a1; a fence maps the
	// external address a2 to the first (which does not make it a carrier).
	var c1, c2 store.Config
	update(t, s, func(tx store.Tx) error {
		for i, c := range []*store.Config{&c1, &c2} {
			*c = store.Config{Name: fmt.Sprintf("c%d", i), State: store.StateUndeployed, VMs: []store.VM{{
				Name: "vm", CPUs: 1, MemoryMiB: 64, State: store.StateUndeployed,
				NICs: []store.NIC{{NetworkID: lan.ID, MAC: fmt.Sprintf("52:54:00:00:00:%02x", i), IPMode: store.IPModePool, IP: a1.IP, AllocationID: a1.ID}},
			}}}
			if i == 0 {
				c.VMs[0].NICs[0].ExternalAllocationID = a2.ID
			}
			if err := tx.Configs().Create(c); err != nil {
				return err
			}
		}
		return nil
	})
	view(t, s, func(tx store.Tx) error {
		nics, err := tx.Allocations().NICs(a1.ID)
		if err != nil {
			return err
		}
		diff(t, "NICsWithAllocation(a1)", []store.NIC{c1.VMs[0].NICs[0], c2.VMs[0].NICs[0]}, nics)
		nics, err = tx.Allocations().NICs(a2.ID)
		if err != nil {
			return err
		}
		diff(t, "NICsWithAllocation(a2)", []store.NIC(nil), nics)
		return nil
	})
	err = s.Update(ctx, func(tx store.Tx) error { return tx.Allocations().Delete(a1.ID) })
	wantKind(t, "DeleteAllocation carried by NICs", err, errdefs.ErrConflict, "10.0.0.10")
	err = s.Update(ctx, func(tx store.Tx) error { return tx.Allocations().Delete(a2.ID) })
	wantKind(t, "DeleteAllocation mapped to a NIC by a fence", err, errdefs.ErrConflict, "10.0.0.11")

	update(t, s, func(tx store.Tx) error {
		for _, c := range []*store.Config{&c1, &c2} {
			n := c.VMs[0].NICs[0]
			n.IP, n.AllocationID, n.ExternalAllocationID, n.IPMode = netip.Addr{}, 0, 0, store.IPModeDHCP
			if err := tx.Configs().UpdateNIC(&n); err != nil {
				return err
			}
		}
		if err := tx.Allocations().Delete(a2.ID); err != nil {
			return err
		}
		return tx.Allocations().Delete(a1.ID)
	})
	view(t, s, func(tx store.Tx) error {
		_, err := tx.Allocations().Get(a2.ID)
		wantKind(t, "GetAllocation after delete", err, errdefs.ErrNotFound)
		as, err := tx.Allocations().List(lan.ID)
		if err != nil {
			return err
		}
		diff(t, "ListAllocations(lan) after deletes", []store.Allocation(nil), as)
		return nil
	})
	err = s.Update(ctx, func(tx store.Tx) error { return tx.Allocations().Delete(a2.ID) })
	wantKind(t, "DeleteAllocation of a missing id", err, errdefs.ErrNotFound)
}

// configFixture is what a configuration refers to.
type configFixture struct {
	tmpl     store.Template
	lan      *store.Network
	layers   []store.Layer      // a base and deltas on it
	allocs   []store.Allocation // internal
	external store.Allocation   // a fence's outside address
}

func newConfigFixture(t *testing.T, s store.Store) *configFixture {
	t.Helper()
	f := &configFixture{lan: createNetwork(t, s, "lan", "10.0.0.0/24")}
	update(t, s, func(tx store.Tx) error {
		base := store.Layer{Path: "layers/base.qcow2", Frozen: true, VirtualSize: 1 << 30}
		if err := tx.Layers().Create(&base); err != nil {
			return err
		}
		f.tmpl = store.Template{Name: "tmpl", CPUs: 1, MemoryMiB: 256, LayerIDs: []int64{base.ID}}
		if err := tx.Templates().Create(&f.tmpl); err != nil {
			return err
		}
		f.layers = append(f.layers, base)
		for i := range 6 {
			l := store.Layer{Path: fmt.Sprintf("layers/delta-%d.qcow2", i), ParentID: base.ID, VirtualSize: 1 << 30}
			if err := tx.Layers().Create(&l); err != nil {
				return err
			}
			f.layers = append(f.layers, l)
		}
		for i := range 4 {
			a := store.Allocation{NetworkID: f.lan.ID, IP: mustAddr(fmt.Sprintf("10.0.0.%d", 10+i)), Kind: store.AllocInternal}
			if err := tx.Allocations().Create(&a); err != nil {
				return err
			}
			f.allocs = append(f.allocs, a)
		}
		f.external = store.Allocation{NetworkID: f.lan.ID, IP: mustAddr("10.0.0.200"), Kind: store.AllocExternal, Holder: "fence of web"}
		return tx.Allocations().Create(&f.external)
	})
	return f
}

// webConfig is a configuration with two VMs, several disks (given out of
// index order) and NICs of every IP mode.
func (f *configFixture) webConfig() store.Config {
	return store.Config{
		Name: "web", Description: "three-tier demo", Owner: "alice", State: store.StateUndeployed,
		FencePolicy: "in-out",
		VMs: []store.VM{
			{
				Name: "db", TemplateID: f.tmpl.ID, CPUs: 2, MemoryMiB: 1024, State: store.StateUndeployed,
				Disks: []store.Disk{{Index: 1, TopLayerID: f.layers[2].ID}, {Index: 0, TopLayerID: f.layers[1].ID}},
				NICs: []store.NIC{
					{Index: 1, NetworkID: f.lan.ID, MAC: "52:54:00:aa:00:02", IPMode: store.IPModeDHCP},
					{Index: 0, NetworkID: f.lan.ID, MAC: "52:54:00:aa:00:01", IPMode: store.IPModePool, IP: f.allocs[0].IP, AllocationID: f.allocs[0].ID, ExternalAllocationID: f.external.ID},
				},
			},
			{
				Name: "app", CPUs: 1, MemoryMiB: 512, State: store.StateUndeployed,
				Disks: []store.Disk{{Index: 0, TopLayerID: f.layers[3].ID}},
				NICs: []store.NIC{
					{Index: 0, NetworkID: f.lan.ID, MAC: "52:54:00:aa:00:03", IPMode: store.IPModeManual, IP: f.allocs[1].IP, AllocationID: f.allocs[1].ID},
				},
			},
		},
	}
}

// sorted returns c as Get returns it: disks and NICs in index order.
func sorted(c store.Config) store.Config {
	c.VMs = slices.Clone(c.VMs)
	for i := range c.VMs {
		v := &c.VMs[i]
		v.Disks = slices.Clone(v.Disks)
		v.NICs = slices.Clone(v.NICs)
		slices.SortFunc(v.Disks, func(a, b store.Disk) int { return a.Index - b.Index })
		slices.SortFunc(v.NICs, func(a, b store.NIC) int { return a.Index - b.Index })
	}
	return c
}

func testConfigs(t *testing.T, s store.Store) {
	f := newConfigFixture(t, s)
	web := f.webConfig()
	empty := store.Config{Name: "empty", State: store.StateFailed, LastError: "boom", Fenced: true, FencePolicy: "block", CreatedAt: someTime, Host: "host-a"}
	before := time.Now()
	update(t, s, func(tx store.Tx) error {
		if err := tx.Configs().Create(&web); err != nil {
			return err
		}
		return tx.Configs().Create(&empty)
	})
	checkStamped(t, "CreatedAt", web.CreatedAt, before, time.Now())
	if !web.UpdatedAt.Equal(web.CreatedAt) {
		t.Errorf("new configuration: UpdatedAt %v, want CreatedAt %v", web.UpdatedAt, web.CreatedAt)
	}
	if !empty.CreatedAt.Equal(someTime) {
		t.Errorf("CreatedAt given as %v became %v", someTime, empty.CreatedAt)
	}
	ids := map[string]int64{"config": web.ID}
	for _, v := range web.VMs {
		if v.ID == 0 || v.ConfigID != web.ID {
			t.Errorf("VM %q: ID %d, ConfigID %d (config %d)", v.Name, v.ID, v.ConfigID, web.ID)
		}
		ids["vm "+v.Name] = v.ID
		for _, d := range v.Disks {
			if d.ID == 0 || d.VMID != v.ID {
				t.Errorf("VM %q disk %d: ID %d, VMID %d", v.Name, d.Index, d.ID, d.VMID)
			}
			ids[fmt.Sprintf("disk %s/%d", v.Name, d.Index)] = d.ID
		}
		for _, n := range v.NICs {
			if n.ID == 0 || n.VMID != v.ID {
				t.Errorf("VM %q NIC %d: ID %d, VMID %d", v.Name, n.Index, n.ID, n.VMID)
			}
			ids[fmt.Sprintf("nic %s/%d", v.Name, n.Index)] = n.ID
		}
	}
	if web.ID == 0 {
		t.Fatal("CreateConfig did not set the ID")
	}

	want := sorted(web)
	view(t, s, func(tx store.Tx) error {
		got, err := tx.Configs().Get("web")
		if err != nil {
			return err
		}
		diff(t, "Configs.Get", &want, got)
		got, err = tx.Configs().GetByID(web.ID)
		if err != nil {
			return err
		}
		diff(t, "Configs.GetByID", &want, got)
		got, err = tx.Configs().Get("empty")
		if err != nil {
			return err
		}
		diff(t, "GetConfig (no VMs)", &empty, got)
		all, err := tx.Configs().List()
		if err != nil {
			return err
		}
		diff(t, "Configs.List", []store.Config{want, empty}, all)

		_, err = tx.Configs().Get("x")
		wantKind(t, "GetConfig of a missing name", err, errdefs.ErrNotFound, `configuration "x" not found`)
		_, err = tx.Configs().GetByID(987654)
		wantKind(t, "GetConfigByID of a missing id", err, errdefs.ErrNotFound)
		return nil
	})

	ctx := context.Background()
	err := s.Update(ctx, func(tx store.Tx) error {
		return tx.Configs().Create(&store.Config{Name: "web", State: store.StateUndeployed})
	})
	wantKind(t, "CreateConfig with a taken name", err, errdefs.ErrConflict, "web")

	// A VM name is unique in its configuration only.
	update(t, s, func(tx store.Tx) error {
		return tx.Configs().Create(&store.Config{Name: "web2", State: store.StateUndeployed, VMs: []store.VM{{Name: "db", CPUs: 1, MemoryMiB: 64, State: store.StateUndeployed}}})
	})

	// A failed CreateConfig writes nothing, even if fn goes on and commits.
	bad := []struct {
		what    string
		mention string
		c       store.Config
	}{
		{"two VMs of one name", "db", store.Config{Name: "dupvm", State: store.StateUndeployed, VMs: []store.VM{
			{Name: "db", CPUs: 1, MemoryMiB: 64, State: store.StateUndeployed, Disks: []store.Disk{{Index: 0, TopLayerID: f.layers[4].ID}}},
			{Name: "db", CPUs: 1, MemoryMiB: 64, State: store.StateUndeployed},
		}}},
		{"a MAC in use", "52:54:00:aa:00:01", store.Config{Name: "dupmac", State: store.StateUndeployed, VMs: []store.VM{
			{Name: "vm", CPUs: 1, MemoryMiB: 64, State: store.StateUndeployed,
				Disks: []store.Disk{{Index: 0, TopLayerID: f.layers[4].ID}},
				NICs:  []store.NIC{{NetworkID: f.lan.ID, MAC: "52:54:00:aa:00:01", IPMode: store.IPModeDHCP}}},
		}}},
	}
	for _, b := range bad {
		var createErr error
		update(t, s, func(tx store.Tx) error {
			createErr = tx.Configs().Create(&b.c)
			return nil
		})
		wantKind(t, "CreateConfig with "+b.what, createErr, errdefs.ErrConflict, b.mention)
		view(t, s, func(tx store.Tx) error {
			_, err := tx.Configs().Get(b.c.Name)
			wantKind(t, "GetConfig after a failed CreateConfig", err, errdefs.ErrNotFound, b.c.Name)
			ds, err := tx.Layers().DisksWithTop(f.layers[4].ID)
			if err != nil {
				return err
			}
			diff(t, "disks left by a failed CreateConfig", []store.Disk(nil), ds)
			return nil
		})
	}
}

func testConfigUpdates(t *testing.T, s store.Store) {
	f := newConfigFixture(t, s)
	web := f.webConfig()
	other := store.Config{Name: "other", State: store.StateUndeployed, VMs: []store.VM{{
		Name: "vm", CPUs: 1, MemoryMiB: 64, State: store.StateUndeployed,
		NICs: []store.NIC{{NetworkID: f.lan.ID, MAC: "52:54:00:bb:00:01", IPMode: store.IPModeDHCP}},
	}}}
	update(t, s, func(tx store.Tx) error {
		if err := tx.Configs().Create(&web); err != nil {
			return err
		}
		return tx.Configs().Create(&other)
	})
	web = sorted(web)
	// An instant copy keeps its source's MACs (and its InstantOf); the
	// MACs stay unique among every other configuration.
	copyOf := func(name, instantOf string) *store.Config {
		return &store.Config{Name: name, State: store.StateUndeployed, InstantOf: instantOf, VMs: []store.VM{{
			Name: "vm", CPUs: 1, MemoryMiB: 64, State: store.StateUndeployed,
			NICs: []store.NIC{{NetworkID: f.lan.ID, MAC: "52:54:00:bb:00:01", IPMode: store.IPModeDHCP}},
		}}}
	}
	update(t, s, func(tx store.Tx) error {
		for _, n := range []string{"copy1", "copy2"} {
			if err := tx.Configs().Create(copyOf(n, "other")); err != nil {
				return err
			}
		}
		got, err := tx.Configs().Get("copy2")
		if err != nil {
			return err
		}
		if got.InstantOf != "other" || got.VMs[0].NICs[0].MAC != "52:54:00:bb:00:01" {
			t.Errorf("Get of an instant copy: InstantOf %q, MAC %s; want other's", got.InstantOf, got.VMs[0].NICs[0].MAC)
		}
		return nil
	})
	err := s.Update(context.Background(), func(tx store.Tx) error { return tx.Configs().Create(copyOf("notacopy", "")) })
	wantKind(t, "CreateConfig of an ordinary configuration with an instant copy's MAC", err, errdefs.ErrConflict, "52:54:00:bb:00:01")
	update(t, s, func(tx store.Tx) error {
		for _, n := range []string{"copy1", "copy2"} {
			c, err := tx.Configs().Get(n)
			if err != nil {
				return err
			}
			if err := tx.Configs().Delete(c.ID); err != nil {
				return err
			}
		}
		return nil
	})

	// UpdateConfig writes the configuration's own fields, not its VMs, and
	// moves UpdatedAt forward.
	time.Sleep(2 * time.Millisecond)
	before := time.Now()
	update(t, s, func(tx store.Tx) error {
		c := web
		c.Name, c.Description, c.Owner = "web-renamed", "new text", "bob"
		c.State, c.Fenced, c.FencePolicy, c.LastError = store.StateFailed, true, "block", "deploy: qemu exited"
		c.FenceAllow = "10.0.0.1/32:80/tcp,192.0.2.0/24"
		c.Host = "host-b"
		c.VMs = nil
		if err := tx.Configs().Update(&c); err != nil {
			return err
		}
		checkStamped(t, "UpdatedAt after UpdateConfig", c.UpdatedAt, before, time.Now())
		if !c.UpdatedAt.After(web.UpdatedAt) {
			t.Errorf("UpdateConfig: UpdatedAt %v not after %v", c.UpdatedAt, web.UpdatedAt)
		}
		got, err := tx.Configs().Get("web-renamed")
		if err != nil {
			return err
		}
		want := c
		want.VMs = web.VMs
		diff(t, "GetConfig after UpdateConfig", &want, got)
		web = want
		return nil
	})
	ctx := context.Background()
	err = s.Update(ctx, func(tx store.Tx) error {
		c := web
		c.Name = "other"
		return tx.Configs().Update(&c)
	})
	wantKind(t, "UpdateConfig to a taken name", err, errdefs.ErrConflict, "other")
	err = s.Update(ctx, func(tx store.Tx) error { return tx.Configs().Update(&store.Config{ID: 987654, Name: "ghost"}) })
	wantKind(t, "UpdateConfig of a missing id", err, errdefs.ErrNotFound)

	// UpdateVM writes state, CPUs and memory.
	update(t, s, func(tx store.Tx) error {
		v := web.VMs[0]
		v.State, v.CPUs, v.MemoryMiB = store.StateDeployed, 4, 4096
		v.Name, v.TemplateID, v.Disks, v.NICs = "renamed", 0, nil, nil
		if err := tx.Configs().UpdateVM(&v); err != nil {
			return err
		}
		web.VMs[0].State, web.VMs[0].CPUs, web.VMs[0].MemoryMiB = store.StateDeployed, 4, 4096
		return nil
	})
	err = s.Update(ctx, func(tx store.Tx) error { return tx.Configs().UpdateVM(&store.VM{ID: 987654}) })
	wantKind(t, "UpdateVM of a missing id", err, errdefs.ErrNotFound)

	// SetDiskTop moves a disk to a new layer.
	disk := web.VMs[0].Disks[1]
	newTop := f.layers[5]
	update(t, s, func(tx store.Tx) error { return tx.Configs().SetDiskTop(disk.ID, newTop.ID) })
	web.VMs[0].Disks[1].TopLayerID = newTop.ID
	err = s.Update(ctx, func(tx store.Tx) error { return tx.Configs().SetDiskTop(987654, newTop.ID) })
	wantKind(t, "SetDiskTop of a missing disk", err, errdefs.ErrNotFound)
	err = s.Update(ctx, func(tx store.Tx) error { return tx.Configs().SetDiskTop(disk.ID, 987654) })
	wantKind(t, "SetDiskTop to a missing layer", err, errdefs.ErrConflict)

	// UpdateNIC writes MAC, IP mode, IP, allocation and external
	// allocation; a dhcp NIC has the zero address and no allocation.
	update(t, s, func(tx store.Tx) error {
		n := web.VMs[0].NICs[0]
		n.MAC, n.IPMode, n.IP, n.AllocationID, n.ExternalAllocationID = "52:54:00:cc:00:01", store.IPModeDHCP, netip.Addr{}, 0, 0
		if err := tx.Configs().UpdateNIC(&n); err != nil {
			return err
		}
		web.VMs[0].NICs[0] = n
		m := web.VMs[0].NICs[1]
		m.IPMode, m.IP, m.AllocationID, m.ExternalAllocationID = store.IPModeManual, f.allocs[2].IP, f.allocs[2].ID, f.external.ID
		if err := tx.Configs().UpdateNIC(&m); err != nil {
			return err
		}
		web.VMs[0].NICs[1] = m
		return nil
	})
	err = s.Update(ctx, func(tx store.Tx) error {
		n := web.VMs[1].NICs[0]
		n.MAC = "52:54:00:bb:00:01"
		return tx.Configs().UpdateNIC(&n)
	})
	wantKind(t, "UpdateNIC to a MAC in use", err, errdefs.ErrConflict, "52:54:00:bb:00:01")
	err = s.Update(ctx, func(tx store.Tx) error {
		n := web.VMs[1].NICs[0]
		n.AllocationID = 987654
		return tx.Configs().UpdateNIC(&n)
	})
	wantKind(t, "UpdateNIC to a missing allocation", err, errdefs.ErrConflict)
	err = s.Update(ctx, func(tx store.Tx) error {
		n := web.VMs[1].NICs[0]
		n.ExternalAllocationID = 987654
		return tx.Configs().UpdateNIC(&n)
	})
	wantKind(t, "UpdateNIC to a missing external allocation", err, errdefs.ErrConflict)
	err = s.Update(ctx, func(tx store.Tx) error { return tx.Configs().UpdateNIC(&store.NIC{ID: 987654, MAC: "x"}) })
	wantKind(t, "UpdateNIC of a missing id", err, errdefs.ErrNotFound)

	view(t, s, func(tx store.Tx) error {
		got, err := tx.Configs().GetByID(web.ID)
		if err != nil {
			return err
		}
		diff(t, "GetConfig after VM, disk and NIC updates", &web, got)
		nics, err := tx.Allocations().NICs(f.allocs[2].ID)
		if err != nil {
			return err
		}
		diff(t, "NICsWithAllocation after UpdateNIC", []store.NIC{web.VMs[0].NICs[1]}, nics)
		return nil
	})
}

func testConfigDeleteCascades(t *testing.T, s store.Store) {
	f := newConfigFixture(t, s)
	web := f.webConfig()
	keep := store.Config{Name: "keep", State: store.StateUndeployed, VMs: []store.VM{{
		Name: "vm", CPUs: 1, MemoryMiB: 64, State: store.StateUndeployed,
		Disks: []store.Disk{{Index: 0, TopLayerID: f.layers[4].ID}},
		NICs:  []store.NIC{{NetworkID: f.lan.ID, MAC: "52:54:00:dd:00:01", IPMode: store.IPModePool, IP: f.allocs[0].IP, AllocationID: f.allocs[0].ID}},
	}}}
	update(t, s, func(tx store.Tx) error {
		if err := tx.Configs().Create(&web); err != nil {
			return err
		}
		return tx.Configs().Create(&keep)
	})
	update(t, s, func(tx store.Tx) error { return tx.Configs().Delete(web.ID) })

	view(t, s, func(tx store.Tx) error {
		_, err := tx.Configs().Get("web")
		wantKind(t, "GetConfig after delete", err, errdefs.ErrNotFound, "web")
		_, err = tx.Configs().GetByID(web.ID)
		wantKind(t, "GetConfigByID after delete", err, errdefs.ErrNotFound)
		for _, l := range f.layers[1:4] {
			ds, err := tx.Layers().DisksWithTop(l.ID)
			if err != nil {
				return err
			}
			diff(t, fmt.Sprintf("disks on layer %d after delete", l.ID), []store.Disk(nil), ds)
			// The layers themselves are the caller's to release.
			if _, err := tx.Layers().Get(l.ID); err != nil {
				t.Errorf("DeleteConfig removed layer %d: %v", l.ID, err)
			}
		}
		nics, err := tx.Allocations().NICs(f.allocs[1].ID)
		if err != nil {
			return err
		}
		diff(t, "NICs of a deleted VM", []store.NIC(nil), nics)
		nics, err = tx.Allocations().NICs(f.allocs[0].ID)
		if err != nil {
			return err
		}
		diff(t, "NICs of the family that remains", keep.VMs[0].NICs, nics)
		as, err := tx.Allocations().List(f.lan.ID)
		if err != nil {
			return err
		}
		diff(t, "allocations (released by the caller, not the store)", append(slices.Clone(f.allocs), f.external), as)
		all, err := tx.Configs().List()
		if err != nil {
			return err
		}
		diff(t, "ListConfigs after delete", []store.Config{keep}, all)
		return nil
	})
	// Its VMs are gone: updates to them find nothing.
	ctx := context.Background()
	err := s.Update(ctx, func(tx store.Tx) error { v := web.VMs[0]; return tx.Configs().UpdateVM(&v) })
	wantKind(t, "UpdateVM of a deleted VM", err, errdefs.ErrNotFound)
	err = s.Update(ctx, func(tx store.Tx) error { n := web.VMs[0].NICs[0]; return tx.Configs().UpdateNIC(&n) })
	wantKind(t, "UpdateNIC of a deleted NIC", err, errdefs.ErrNotFound)
	err = s.Update(ctx, func(tx store.Tx) error { return tx.Configs().SetDiskTop(web.VMs[0].Disks[0].ID, f.layers[5].ID) })
	wantKind(t, "SetDiskTop of a deleted disk", err, errdefs.ErrNotFound)
	err = s.Update(ctx, func(tx store.Tx) error { return tx.Configs().Delete(web.ID) })
	wantKind(t, "DeleteConfig of a missing id", err, errdefs.ErrNotFound)

	// Its MACs and names are free again.
	update(t, s, func(tx store.Tx) error {
		again := f.webConfig()
		return tx.Configs().Create(&again)
	})
}

func testOps(t *testing.T, s store.Store) {
	clone := store.Op{Kind: "clone", Subject: "web", CreatedFiles: []string{"layers/a.qcow2", "layers/b c,\"ü\".qcow2"}, FrozenFiles: []string{"layers/t.qcow2"}}
	bare := store.Op{Kind: "delete", Subject: "old"}
	dated := store.Op{Kind: "import", Subject: "debian", StartedAt: someTime, RemoveFiles: []string{"x"}, Committed: true}
	before := time.Now()
	update(t, s, func(tx store.Tx) error {
		for _, o := range []*store.Op{&clone, &bare, &dated} {
			if err := tx.Ops().Create(o); err != nil {
				return err
			}
		}
		return nil
	})
	checkStamped(t, "StartedAt", clone.StartedAt, before, time.Now())
	if !dated.StartedAt.Equal(someTime) {
		t.Errorf("StartedAt given as %v became %v", someTime, dated.StartedAt)
	}
	view(t, s, func(tx store.Tx) error {
		ops, err := tx.Ops().List()
		if err != nil {
			return err
		}
		diff(t, "Ops.List", []store.Op{clone, bare, dated}, ops)
		return nil
	})

	update(t, s, func(tx store.Tx) error {
		clone.Committed = true
		clone.RemoveFiles = []string{"layers/old.qcow2"}
		clone.FrozenFiles = nil
		if err := tx.Ops().Update(&clone); err != nil {
			return err
		}
		return tx.Ops().Delete(bare.ID)
	})
	view(t, s, func(tx store.Tx) error {
		ops, err := tx.Ops().List()
		if err != nil {
			return err
		}
		diff(t, "ListOps after update and delete", []store.Op{clone, dated}, ops)
		return nil
	})
	ctx := context.Background()
	err := s.Update(ctx, func(tx store.Tx) error { return tx.Ops().Delete(bare.ID) })
	wantKind(t, "DeleteOp of a missing id", err, errdefs.ErrNotFound)
	err = s.Update(ctx, func(tx store.Tx) error { return tx.Ops().Update(&bare) })
	wantKind(t, "UpdateOp of a missing id", err, errdefs.ErrNotFound)
}

// writeSome writes one record of several kinds inside tx: a network, a
// template, an operation, an archive with its lease, and an event.
func writeSome(tx store.Tx, name string) error {
	if err := tx.Networks().Create(&store.Network{Name: name, Subnet: mustPrefix("10.7.0.0/24")}); err != nil {
		return err
	}
	if err := tx.Templates().Create(&store.Template{Name: name, CPUs: 1, MemoryMiB: 64}); err != nil {
		return err
	}
	if err := tx.Ops().Create(&store.Op{Kind: "test", Subject: name}); err != nil {
		return err
	}
	a := store.Archive{Name: name, Dir: "archives/" + name, Manifest: []byte("{}")}
	if err := tx.Archives().Create(&a); err != nil {
		return err
	}
	if err := tx.Leases().Put(&store.Lease{ArchiveID: a.ID, StorageExpires: someTime}); err != nil {
		return err
	}
	return tx.Events().Add(&store.Event{Actor: "test", Action: "create", Object: "archive", Subject: name, Result: "ok"})
}

// wantNothing fails unless nothing named name was written.
func wantNothing(t *testing.T, s store.Store, name string) {
	t.Helper()
	view(t, s, func(tx store.Tx) error {
		_, err := tx.Networks().Get(name)
		wantKind(t, "network written by a rolled back transaction", err, errdefs.ErrNotFound)
		_, err = tx.Templates().Get(name)
		wantKind(t, "template written by a rolled back transaction", err, errdefs.ErrNotFound)
		_, err = tx.Archives().Get(name)
		wantKind(t, "archive written by a rolled back transaction", err, errdefs.ErrNotFound)
		ops, err := tx.Ops().List()
		if err != nil {
			return err
		}
		for _, o := range ops {
			if o.Subject == name {
				t.Errorf("operation written by a rolled back transaction: %+v", o)
			}
		}
		es, err := tx.Events().List(0, 0)
		if err != nil {
			return err
		}
		for _, e := range es {
			if e.Subject == name {
				t.Errorf("event written by a rolled back transaction: %+v", e)
			}
		}
		// A lease of an archive that is not there was written with it.
		ls, err := tx.Leases().List()
		if err != nil {
			return err
		}
		as, err := tx.Archives().List()
		if err != nil {
			return err
		}
		for _, l := range ls {
			if l.ArchiveID != 0 && !slices.ContainsFunc(as, func(a store.Archive) bool { return a.ID == l.ArchiveID }) {
				t.Errorf("lease written by a rolled back transaction: %+v", l)
			}
		}
		return nil
	})
}

func testRollbackOnError(t *testing.T, s store.Store) {
	errStop := errors.New("stop here")
	err := s.Update(context.Background(), func(tx store.Tx) error {
		if err := writeSome(tx, "doomed"); err != nil {
			return err
		}
		// Inside the transaction its own writes are visible.
		if _, err := tx.Networks().Get("doomed"); err != nil {
			return err
		}
		return fmt.Errorf("step 3: %w", errStop)
	})
	if !errors.Is(err, errStop) {
		t.Fatalf("Update returned %v, want fn's error", err)
	}
	wantNothing(t, s, "doomed")

	// A failed Create inside fn, returned by fn, also leaves nothing.
	update(t, s, func(tx store.Tx) error { return tx.Networks().Create(&store.Network{Name: "taken"}) })
	err = s.Update(context.Background(), func(tx store.Tx) error {
		if err := writeSome(tx, "doomed2"); err != nil {
			return err
		}
		return tx.Networks().Create(&store.Network{Name: "taken"})
	})
	wantKind(t, "Update whose fn failed on a conflict", err, errdefs.ErrConflict, "taken")
	wantNothing(t, s, "doomed2")
}

func testRollbackOnPanic(t *testing.T, s store.Store) {
	type marker struct{ n int }
	got := func() (r any) {
		defer func() { r = recover() }()
		_ = s.Update(context.Background(), func(tx store.Tx) error {
			if err := writeSome(tx, "panicked"); err != nil {
				t.Errorf("writeSome: %v", err)
			}
			panic(marker{42})
		})
		return nil
	}()
	if got != (marker{42}) {
		t.Fatalf("recovered %v, want the panic value of fn", got)
	}
	wantNothing(t, s, "panicked")

	// The store is still usable: the panic released the writer.
	done := make(chan error, 1)
	go func() {
		done <- s.Update(context.Background(), func(tx store.Tx) error { return writeSome(tx, "after") })
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Update after a panic: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Update after a panic did not finish: the writer was not released")
	}
}

func testViewIsReadOnly(t *testing.T, s store.Store) {
	err := s.View(context.Background(), func(tx store.Tx) error { return writeSome(tx, "viewed") })
	if err == nil {
		t.Error("writing inside View succeeded")
	}
	wantNothing(t, s, "viewed")
}

func testViewSeesCommittedSnapshot(t *testing.T, s store.Store) {
	ctx := context.Background()
	written := make(chan struct{})
	release := make(chan struct{})
	updateDone := make(chan error, 1)
	go func() {
		updateDone <- s.Update(ctx, func(tx store.Tx) error {
			if err := writeSome(tx, "pending"); err != nil {
				return err
			}
			close(written)
			<-release
			return nil
		})
	}()
	select {
	case <-written:
	case err := <-updateDone:
		t.Fatalf("Update: %v", err)
	}
	// A View runs while the writer holds its transaction, and does not see
	// its uncommitted writes.
	viewDone := make(chan error, 1)
	go func() {
		viewDone <- s.View(ctx, func(tx store.Tx) error {
			_, err := tx.Networks().Get("pending")
			if !errors.Is(err, errdefs.ErrNotFound) {
				return fmt.Errorf("View saw an uncommitted network (err %v)", err)
			}
			return nil
		})
	}()
	select {
	case err := <-viewDone:
		if err != nil {
			t.Error(err)
		}
	case <-time.After(10 * time.Second):
		t.Error("View waited for a running Update")
	}
	close(release)
	if err := <-updateDone; err != nil {
		t.Fatalf("Update: %v", err)
	}
	view(t, s, func(tx store.Tx) error {
		_, err := tx.Networks().Get("pending")
		return err
	})
}

func testContext(t *testing.T, s store.Store) {
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	err := s.Update(canceled, func(tx store.Tx) error { return writeSome(tx, "canceled") })
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Update with a canceled context: %v, want context.Canceled", err)
	}
	err = s.View(canceled, func(tx store.Tx) error { _, err := tx.Networks().List(); return err })
	if !errors.Is(err, context.Canceled) {
		t.Errorf("View with a canceled context: %v, want context.Canceled", err)
	}

	// A context that ends inside fn: nothing is committed, even if fn
	// ignores the failures and returns nil.
	ctx, cancel := context.WithCancel(context.Background())
	err = s.Update(ctx, func(tx store.Tx) error {
		if err := writeSome(tx, "interrupted"); err != nil {
			return err
		}
		cancel()
		if err := tx.Ops().Create(&store.Op{Kind: "test", Subject: "interrupted"}); err == nil {
			t.Error("CreateOp after the context ended succeeded")
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Update whose context ended inside fn: %v, want context.Canceled", err)
	}
	wantNothing(t, s, "interrupted")
}
