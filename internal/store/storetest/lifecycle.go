package storetest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"stagehand/internal/errdefs"
	"stagehand/internal/store"
)

// Archives, leases and the event log: what the library, archive, lease
// and event code of the lab keeps.

func testArchives(t *testing.T, s store.Store) {
	ctx := context.Background()
	var full, bare, dated store.Archive
	var ann *store.User
	before := time.Now()
	update(t, s, func(tx store.Tx) error {
		ann = mustUser(t, tx, "ann")
		// Created so that id order is neither name nor CreatedAt order.
		full = store.Archive{Name: "web-2024", Source: "web", Dir: "archives/a-1",
			Manifest: []byte(`{"vms":[{"name":"db","disks":["d0.qcow2"]}],"sha256":{"d0.qcow2":"ab12"}}`),
			Size:     5<<30 + 7, WorkspaceID: mainWorkspace(t, tx).ID, OwnerID: ann.ID}
		bare = store.Archive{Name: "bare", Dir: "archives/a-2", Manifest: []byte("{}")}
		dated = store.Archive{Name: "a-dated", Source: "/tmp/web.stagehand.tar", Dir: "archives/a-0", Manifest: []byte("{}"), CreatedAt: someTime}
		for _, a := range []*store.Archive{&full, &bare, &dated} {
			if err := tx.Archives().Create(a); err != nil {
				return err
			}
		}
		return nil
	})
	if full.ID == 0 || full.ID == bare.ID || bare.ID == dated.ID {
		t.Fatalf("CreateArchive set ids %d, %d, %d", full.ID, bare.ID, dated.ID)
	}
	checkStamped(t, "CreatedAt", full.CreatedAt, before, time.Now())
	if !dated.CreatedAt.Equal(someTime) {
		t.Errorf("CreatedAt given as %v became %v", someTime, dated.CreatedAt)
	}
	view(t, s, func(tx store.Tx) error {
		for _, want := range []store.Archive{full, bare, dated} {
			got, err := tx.Archives().Get(want.Name)
			if err != nil {
				return err
			}
			diff(t, "GetArchive("+want.Name+")", &want, got)
		}
		all, err := tx.Archives().List()
		if err != nil {
			return err
		}
		diff(t, "ListArchives, by id", []store.Archive{full, bare, dated}, all)
		_, err = tx.Archives().Get("nope")
		wantKind(t, "GetArchive of a missing name", err, errdefs.ErrNotFound, "nope")
		return nil
	})

	for _, c := range []struct {
		what    string
		kind    error
		mention string
		a       store.Archive
	}{
		{"CreateArchive with a taken name", errdefs.ErrConflict, "web-2024", store.Archive{Name: "web-2024", Dir: "archives/other", Manifest: []byte("{}")}},
		{"CreateArchive with a taken directory", errdefs.ErrConflict, "", store.Archive{Name: "other", Dir: "archives/a-1", Manifest: []byte("{}")}},
		{"CreateArchive in a missing workspace", errdefs.ErrConflict, "", store.Archive{Name: "other", Dir: "archives/other", Manifest: []byte("{}"), WorkspaceID: 987654}},
	} {
		err := s.Update(ctx, func(tx store.Tx) error { return tx.Archives().Create(&c.a) })
		if c.mention != "" {
			wantKind(t, c.what, err, c.kind, c.mention)
		} else {
			wantKind(t, c.what, err, c.kind)
		}
	}

	// Deleting an archive deletes its lease and its shares, and frees its
	// name and directory.
	update(t, s, func(tx store.Tx) error {
		if err := tx.Leases().Put(&store.Lease{ArchiveID: full.ID, StorageExpires: someTime, UndeployAction: store.UndeploySave}); err != nil {
			return err
		}
		if err := tx.Shares().Put(&store.Share{ObjectKind: store.ObjectArchive, ObjectID: full.ID, UserID: ann.ID, Level: store.ShareRead}); err != nil {
			return err
		}
		return tx.Archives().Delete(full.ID)
	})
	view(t, s, func(tx store.Tx) error {
		_, err := tx.Archives().Get("web-2024")
		wantKind(t, "GetArchive after delete", err, errdefs.ErrNotFound, "web-2024")
		_, err = tx.Leases().OfArchive(full.ID)
		wantKind(t, "LeaseOfArchive of a deleted archive", err, errdefs.ErrNotFound)
		ss, err := tx.Shares().ToUser(ann.ID)
		if err != nil {
			return err
		}
		diff(t, "shares of a deleted archive", []store.Share(nil), ss)
		all, err := tx.Archives().List()
		if err != nil {
			return err
		}
		diff(t, "ListArchives after delete", []store.Archive{bare, dated}, all)
		return nil
	})
	err := s.Update(ctx, func(tx store.Tx) error { return tx.Archives().Delete(full.ID) })
	wantKind(t, "DeleteArchive of a missing id", err, errdefs.ErrNotFound)
	update(t, s, func(tx store.Tx) error {
		return tx.Archives().Create(&store.Archive{Name: "web-2024", Dir: "archives/a-1", Manifest: []byte("{}")})
	})
}

func testLeases(t *testing.T, s store.Store) {
	ctx := context.Background()
	var web, lib store.Config
	var arch store.Archive
	update(t, s, func(tx store.Tx) error {
		web = store.Config{Name: "web", State: store.StateUndeployed}
		lib = store.Config{Name: "lib", Kind: store.KindLibrary, State: store.StateUndeployed}
		for _, c := range []*store.Config{&web, &lib} {
			if err := tx.Configs().Create(c); err != nil {
				return err
			}
		}
		arch = store.Archive{Name: "arch", Dir: "archives/a-1", Manifest: []byte("{}")}
		return tx.Archives().Create(&arch)
	})

	// Every field, times with nanoseconds and a zone; zero times are none.
	ofArchive := store.Lease{ArchiveID: arch.ID, StorageExpires: someTime, UndeployAction: store.UndeployDiscard}
	ofConfig := store.Lease{ConfigID: web.ID, StorageExpires: someTime.Add(30 * 24 * time.Hour), ExpiredAt: someTime.Add(time.Hour),
		DeployLease: 90*time.Minute + time.Nanosecond, DeployExpires: someTime.Add(2 * time.Hour), UndeployAction: store.UndeploySave,
		LastUsed: someTime.Add(-time.Hour), LadderStep: "suspend", LadderExpires: someTime.Add(time.Hour), LadderAt: someTime.Add(time.Hour + time.Second)}
	ofLibrary := store.Lease{ConfigID: lib.ID}
	update(t, s, func(tx store.Tx) error {
		for _, l := range []*store.Lease{&ofArchive, &ofConfig, &ofLibrary} {
			if err := tx.Leases().Put(l); err != nil {
				return err
			}
		}
		return nil
	})
	if ofArchive.ID == 0 || ofArchive.ID == ofConfig.ID || ofConfig.ID == ofLibrary.ID {
		t.Fatalf("PutLease set ids %d, %d, %d", ofArchive.ID, ofConfig.ID, ofLibrary.ID)
	}
	view(t, s, func(tx store.Tx) error {
		got, err := tx.Leases().OfConfig(web.ID)
		if err != nil {
			return err
		}
		diff(t, "LeaseOfConfig (every field)", &ofConfig, got)
		got, err = tx.Leases().OfConfig(lib.ID)
		if err != nil {
			return err
		}
		diff(t, "LeaseOfConfig of a library entry (zero times)", &ofLibrary, got)
		for what, tm := range map[string]time.Time{"StorageExpires": got.StorageExpires, "ExpiredAt": got.ExpiredAt,
			"DeployExpires": got.DeployExpires, "LastUsed": got.LastUsed, "LadderExpires": got.LadderExpires, "LadderAt": got.LadderAt} {
			if !tm.IsZero() {
				t.Errorf("zero %s read back as %v", what, tm)
			}
		}
		got, err = tx.Leases().OfArchive(arch.ID)
		if err != nil {
			return err
		}
		diff(t, "Leases.OfArchive", &ofArchive, got)
		all, err := tx.Leases().List()
		if err != nil {
			return err
		}
		diff(t, "ListLeases, by id", []store.Lease{ofArchive, ofConfig, ofLibrary}, all)
		_, err = tx.Leases().OfConfig(987654)
		wantKind(t, "LeaseOfConfig of a configuration without one", err, errdefs.ErrNotFound)
		_, err = tx.Leases().OfArchive(987654)
		wantKind(t, "LeaseOfArchive of an archive without one", err, errdefs.ErrNotFound)
		return nil
	})

	// PutLease replaces: one lease per configuration, with the new fields
	// (times cleared included), whatever ID the caller gives.
	extended := store.Lease{ConfigID: web.ID, StorageExpires: someTime.Add(60 * 24 * time.Hour), UndeployAction: store.UndeployDiscard,
		LastUsed: someTime}
	update(t, s, func(tx store.Tx) error { return tx.Leases().Put(&extended) })
	view(t, s, func(tx store.Tx) error {
		got, err := tx.Leases().OfConfig(web.ID)
		if err != nil {
			return err
		}
		diff(t, "LeaseOfConfig after PutLease replaced it", &extended, got)
		all, err := tx.Leases().List()
		if err != nil {
			return err
		}
		want := []store.Lease{ofArchive, extended, ofLibrary}
		slices.SortFunc(want, func(a, b store.Lease) int { return int(a.ID - b.ID) })
		diff(t, "ListLeases after a replace", want, all)
		return nil
	})

	for _, c := range []struct {
		what string
		kind error
		l    store.Lease
	}{
		{"PutLease of neither", errdefs.ErrInvalid, store.Lease{StorageExpires: someTime}},
		{"PutLease of both", errdefs.ErrInvalid, store.Lease{ConfigID: web.ID, ArchiveID: arch.ID}},
		{"PutLease of a missing configuration", errdefs.ErrConflict, store.Lease{ConfigID: 987654}},
		{"PutLease of a missing archive", errdefs.ErrConflict, store.Lease{ArchiveID: 987654}},
	} {
		wantKind(t, c.what, s.Update(ctx, func(tx store.Tx) error { return tx.Leases().Put(&c.l) }), c.kind)
	}

	// Deleting the configuration or archive deletes its lease.
	update(t, s, func(tx store.Tx) error {
		if err := tx.Configs().Delete(web.ID); err != nil {
			return err
		}
		return tx.Archives().Delete(arch.ID)
	})
	view(t, s, func(tx store.Tx) error {
		_, err := tx.Leases().OfConfig(web.ID)
		wantKind(t, "LeaseOfConfig of a deleted configuration", err, errdefs.ErrNotFound)
		_, err = tx.Leases().OfArchive(arch.ID)
		wantKind(t, "LeaseOfArchive of a deleted archive", err, errdefs.ErrNotFound)
		all, err := tx.Leases().List()
		if err != nil {
			return err
		}
		diff(t, "ListLeases after deletes", []store.Lease{ofLibrary}, all)
		return nil
	})
}

// testEvents is the event log: ids that increase and are never reused
// (followers resume after the last id they saw, even after the log was
// pruned to nothing and the store reopened), pages by id, and pruning by
// time.
func testEvents(t *testing.T, h harness) {
	s := h.fresh(t)
	e1 := store.Event{Actor: "alice", Action: "create", Object: "config", Subject: "web", Result: "ok", Detail: "from template debian"}
	e2 := store.Event{Actor: "reaper", Action: "lease-expired", Object: "archive", Subject: "old", Result: "ok", At: someTime}
	e3 := store.Event{Actor: "bob", Action: "deploy", Object: "config", Subject: "web", Result: "failed", Detail: "qemu exited: 1", At: someTime.Add(time.Hour)}
	e4 := store.Event{Actor: "alice", Action: "delete", Object: "network", Subject: "lan", Result: "ok"}
	before := time.Now()
	update(t, s, func(tx store.Tx) error {
		for _, e := range []*store.Event{&e1, &e2, &e3, &e4} {
			if err := tx.Events().Add(e); err != nil {
				return err
			}
		}
		return nil
	})
	if !(0 < e1.ID && e1.ID < e2.ID && e2.ID < e3.ID && e3.ID < e4.ID) {
		t.Fatalf("AddEvent set ids %d, %d, %d, %d: want increasing", e1.ID, e2.ID, e3.ID, e4.ID)
	}
	checkStamped(t, "At", e1.At, before, time.Now())
	if !e2.At.Equal(someTime) {
		t.Errorf("At given as %v became %v", someTime, e2.At)
	}
	all := []store.Event{e1, e2, e3, e4}
	view(t, s, func(tx store.Tx) error {
		for _, c := range []struct {
			after int64
			limit int
			want  []store.Event
		}{
			{0, 0, all}, // by id, not by time: e2 is the oldest
			{0, -1, all},
			{0, 1, all[:1]},
			{e1.ID, 0, all[1:]},
			{e1.ID, 2, all[1:3]},
			{e3.ID, 100, all[3:]},
			{e4.ID, 0, nil},
		} {
			got, err := tx.Events().List(c.after, c.limit)
			if err != nil {
				return err
			}
			diff(t, fmt.Sprintf("ListEvents(%d, %d)", c.after, c.limit), c.want, got)
		}
		return nil
	})

	// DeleteEventsBefore deletes the events strictly older than its time.
	prune := func(before time.Time, want int64) {
		t.Helper()
		update(t, s, func(tx store.Tx) error {
			n, err := tx.Events().DeleteBefore(before)
			if err == nil && n != want {
				t.Errorf("DeleteEventsBefore(%v) deleted %d, want %d", before, n, want)
			}
			return err
		})
	}
	prune(someTime, 0)
	prune(someTime.Add(time.Nanosecond), 1)
	view(t, s, func(tx store.Tx) error {
		got, err := tx.Events().List(0, 0)
		if err != nil {
			return err
		}
		diff(t, "ListEvents after pruning the oldest", []store.Event{e1, e3, e4}, got)
		return nil
	})
	prune(time.Now().Add(time.Minute), 3)

	// The log is empty now; a new event still gets a new id, also after
	// the store is reopened.
	last := e4.ID
	for _, reopen := range []bool{false, true} {
		if reopen {
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = h.fresh(t)
		}
		e := store.Event{Actor: "alice", Action: "create", Object: "config", Subject: "again", Result: "ok"}
		update(t, s, func(tx store.Tx) error { return tx.Events().Add(&e) })
		if e.ID <= last {
			t.Errorf("event added after the log was emptied (reopened: %v) got id %d, not above %d: ids are reused", reopen, e.ID, last)
		}
		last = e.ID
		prune(time.Now().Add(time.Minute), 1)
	}
}

// testEventsOf is one object's history: its events only (not those of
// another name, nor of another kind of object under the same name),
// newest first, a page of limit before an id at a time.
func testEventsOf(t *testing.T, s store.Store) {
	view(t, s, func(tx store.Tx) error {
		if id, err := tx.Events().Newest(); err != nil || id != 0 {
			t.Errorf("Events.Newest of an empty log: %d, %v; want 0", id, err)
		}
		return nil
	})
	add := func(object, subject, action string) store.Event {
		e := store.Event{Actor: "alice", Action: action, Object: object, Subject: subject, Result: "ok"}
		update(t, s, func(tx store.Tx) error { return tx.Events().Add(&e) })
		return e
	}
	w1 := add("config", "web", "create")
	lib := add("library", "web", "publish")
	add("config", "web-2", "create")
	w2 := add("config", "web", "deploy")
	add("network", "web", "create")
	add("config", "we", "create")
	w3 := add("config", "web", "undeploy")
	last := add("config", "webb", "create")
	web := []store.Event{w3, w2, w1}
	view(t, s, func(tx store.Tx) error {
		for _, c := range []struct {
			object, subject string
			before          int64
			limit           int
			want            []store.Event
		}{
			{"config", "web", 0, 0, web},
			{"config", "web", -1, -1, web},
			{"config", "web", 0, 2, web[:2]},
			{"config", "web", w3.ID, 0, web[1:]},
			{"config", "web", w2.ID, 1, web[2:]},
			{"config", "web", w2.ID + 1, 1, web[1:2]},
			{"config", "web", w1.ID, 0, nil},
			{"config", "web", w3.ID + 100, 10, web},
			{"library", "web", 0, 0, []store.Event{lib}},
			{"template", "web", 0, 0, nil},
			{"config", "nobody", 0, 0, nil},
		} {
			got, err := tx.Events().Of(c.object, c.subject, c.before, c.limit)
			if err != nil {
				return err
			}
			diff(t, fmt.Sprintf("Events.Of(%q, %q, %d, %d)", c.object, c.subject, c.before, c.limit), c.want, got)
		}
		if id, err := tx.Events().Newest(); err != nil || id != last.ID {
			t.Errorf("Events.Newest: %d, %v; want the last added, %d", id, err, last.ID)
		}
		return nil
	})
}

// testEventsFollowed: a follower that pages through the log after the
// last id it saw, while events are added from many goroutines, sees every
// event exactly once. The lab's followers (the event stream, the web
// console) rely on it: an event must not appear below an id a reader has
// already passed, so ids must increase in commit order.
func testEventsFollowed(t *testing.T, s store.Store) {
	const writers, perWriter = 8, 15
	var (
		wg       sync.WaitGroup
		errs     = make(chan error, writers*perWriter)
		finished = make(chan struct{})
	)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				err := s.Update(context.Background(), func(tx store.Tx) error {
					if err := tx.Events().Add(&store.Event{Actor: fmt.Sprintf("w%d", w), Action: "create", Object: "config", Subject: fmt.Sprint(i), Result: "ok"}); err != nil {
						return err
					}
					// Hold the transaction open a little after taking an
					// id, so that a store whose ids do not follow commit
					// order shows it.
					time.Sleep(time.Duration(rand.IntN(1500)) * time.Microsecond)
					return nil
				})
				if err != nil {
					errs <- err
				}
			}
		}()
	}
	go func() { wg.Wait(); close(finished) }()

	var seen []int64
	after := int64(0)
	follow := func() {
		view(t, s, func(tx store.Tx) error {
			es, err := tx.Events().List(after, 7)
			for _, e := range es {
				seen = append(seen, e.ID)
				after = e.ID
			}
			return err
		})
	}
	for done := false; !done; {
		select {
		case <-finished:
			done = true
		case <-time.After(time.Millisecond):
		}
		follow()
	}
	for n := -1; n != len(seen); {
		n = len(seen)
		follow()
	}
	close(errs)
	for err := range errs {
		t.Fatalf("AddEvent: %v", err)
	}
	var ids []int64
	view(t, s, func(tx store.Tx) error {
		es, err := tx.Events().List(0, 0)
		for _, e := range es {
			ids = append(ids, e.ID)
		}
		return err
	})
	if len(ids) != writers*perWriter {
		t.Fatalf("%d events in the log, want %d", len(ids), writers*perWriter)
	}
	if !slices.Equal(seen, ids) {
		missed := slices.DeleteFunc(slices.Clone(ids), func(id int64) bool { return slices.Contains(seen, id) })
		t.Errorf("a follower paging after the last id it saw read %d events of %d; it missed %v (committed below an id it had passed)",
			len(seen), len(ids), missed)
	}
}

// testEventsVisible: ListEventsVisible and EventVisible select the events
// of the filter's actor and those whose object (by kind and name, as it is
// now) the viewer may see, in one query with the page's limit applied
// after filtering.
func testEventsVisible(t *testing.T, s store.Store) {
	var vic, olga, sam *store.User
	var team, priv, other *store.Workspace
	var web store.Config
	update(t, s, func(tx store.Tx) error {
		org := mustOrg(t, tx, "acme")
		team = mustWorkspace(t, tx, org.ID, "team", store.WorkspaceShared)
		priv = mustWorkspace(t, tx, org.ID, "priv", store.WorkspacePrivate)
		other = mustWorkspace(t, tx, org.ID, "other", store.WorkspaceShared)
		vic, olga, sam = mustUser(t, tx, "vic"), mustUser(t, tx, "olga"), mustUser(t, tx, "sam")
		sam.SystemAdmin = true
		if err := tx.Users().Update(sam); err != nil {
			return err
		}
		for _, m := range []store.Membership{
			{UserID: vic.ID, WorkspaceID: team.ID, Role: "user"}, {UserID: vic.ID, WorkspaceID: priv.ID, Role: "user"},
			{UserID: olga.ID, WorkspaceID: team.ID, Role: "user"}, {UserID: olga.ID, WorkspaceID: priv.ID, Role: "user"},
		} {
			if err := tx.Memberships().Put(&m); err != nil {
				return err
			}
		}
		web = store.Config{Name: "web", State: store.StateUndeployed, WorkspaceID: team.ID, OwnerID: olga.ID}
		if err := tx.Configs().Create(&web); err != nil {
			return err
		}
		if err := tx.Configs().Create(&store.Config{Name: "lib", Kind: store.KindLibrary, State: store.StateUndeployed, WorkspaceID: team.ID, OwnerID: olga.ID}); err != nil {
			return err
		}
		for _, tm := range []store.Template{
			{Name: "tmpl", CPUs: 1, MemoryMiB: 64, WorkspaceID: priv.ID, OwnerID: olga.ID},
			{Name: "mine", CPUs: 1, MemoryMiB: 64, WorkspaceID: priv.ID, OwnerID: vic.ID},
		} {
			if err := tx.Templates().Create(&tm); err != nil {
				return err
			}
		}
		lan := store.Network{Name: "lan", WorkspaceID: other.ID, OwnerID: olga.ID}
		shared := store.Network{Name: "shared-lan", WorkspaceID: other.ID, OwnerID: olga.ID}
		for _, n := range []*store.Network{&lan, &shared} {
			if err := tx.Networks().Create(n); err != nil {
				return err
			}
		}
		if err := tx.Shares().Put(&store.Share{ObjectKind: store.ObjectNetwork, ObjectID: shared.ID, UserID: vic.ID, Level: store.ShareRead}); err != nil {
			return err
		}
		return tx.Archives().Create(&store.Archive{Name: "arch", Dir: "archives/arch", Manifest: []byte("{}"), WorkspaceID: team.ID, OwnerID: olga.ID})
	})

	// The events, numbered from 1 in the order added.
	added := []store.Event{
		{Actor: "olga", Action: "create", Object: "config", Subject: "web"},         // 1: team, shared: members see it
		{Actor: "olga", Action: "create", Object: "library", Subject: "lib"},        // 2: a library entry is a configuration
		{Actor: "olga", Action: "import", Object: "template", Subject: "tmpl"},      // 3: priv, private, olga's
		{Actor: "vic", Action: "import", Object: "template", Subject: "mine"},       // 4: priv, private, vic's
		{Actor: "olga", Action: "create", Object: "network", Subject: "lan"},        // 5: other: no member
		{Actor: "olga", Action: "create", Object: "network", Subject: "shared-lan"}, // 6: other, shared with vic
		{Actor: "olga", Action: "archive", Object: "archive", Subject: "arch"},      // 7: team
		{Actor: "olga", Action: "archive", Object: "archive", Subject: "gone"},      // 8: no such archive
		{Actor: "vic", Action: "delete", Object: "archive", Subject: "gone"},        // 9: vic's own
		{Actor: "olga", Action: "deploy", Object: "config", Subject: "tmpl"},        // 10: no configuration of that name
		{Actor: "olga", Action: "start", Object: "host", Subject: "web"},            // 11: not an object kind
	}
	update(t, s, func(tx store.Tx) error {
		for i := range added {
			added[i].Result = "ok"
			if err := tx.Events().Add(&added[i]); err != nil {
				return err
			}
		}
		return nil
	})
	var vv, ov, sv store.Viewer
	view(t, s, func(tx store.Tx) error {
		for _, x := range []struct {
			u *store.User
			v *store.Viewer
		}{{vic, &vv}, {olga, &ov}, {sam, &sv}} {
			v, err := tx.Viewers().Load(x.u.ID)
			if err != nil {
				return err
			}
			*x.v = *v
		}
		return nil
	})
	filters := map[string]store.EventFilter{
		"vic":            {Actor: "vic", Viewer: vv},
		"vic in team":    {Actor: "vic", Viewer: vv, Workspace: team.ID},
		"vic's own":      {Actor: "vic", Viewer: vv, NoObjects: true},
		"vic, no actor":  {Viewer: vv},
		"olga":           {Actor: "olga", Viewer: ov},
		"sam, no actor":  {Viewer: sv},
		"nobody":         {},
		"a missing user": {Actor: "nobody", Viewer: store.Viewer{UserID: 987654}},
	}
	check := func(when string, want map[string][]int) {
		t.Helper()
		view(t, s, func(tx store.Tx) error {
			for name, f := range filters {
				wantEvents := []store.Event{}
				for _, n := range want[name] {
					wantEvents = append(wantEvents, added[n-1])
				}
				got, err := tx.Visible().Events(f, 0, 0)
				if err != nil {
					return err
				}
				diff(t, fmt.Sprintf("%s: ListEventsVisible(%s)", when, name), wantEvents, got)
				for _, e := range added {
					ok, err := tx.Visible().Event(f, e.ID)
					if err != nil {
						return err
					}
					if in := slices.ContainsFunc(wantEvents, func(w store.Event) bool { return w.ID == e.ID }); ok != in {
						t.Errorf("%s: EventVisible(%s, %s %s %q by %s) = %v, want %v", when, name, e.Action, e.Object, e.Subject, e.Actor, ok, in)
					}
				}
				if ok, err := tx.Visible().Event(f, 987654); err != nil || ok {
					t.Errorf("%s: EventVisible(%s) of a missing event = %v, %v; want false", when, name, ok, err)
				}
				// Pages: after an id and with a limit that counts the
				// selected events only.
				if len(wantEvents) >= 3 {
					got, err := tx.Visible().Events(f, wantEvents[0].ID, 2)
					if err != nil {
						return err
					}
					diff(t, fmt.Sprintf("%s: ListEventsVisible(%s) after the first, 2", when, name), wantEvents[1:3], got)
				}
			}
			return nil
		})
	}
	check("at first", map[string][]int{
		"vic":           {1, 2, 4, 6, 7, 9},
		"vic in team":   {1, 2, 4, 7, 9},
		"vic's own":     {4, 9},
		"vic, no actor": {1, 2, 4, 6, 7},
		"olga":          {1, 2, 3, 5, 6, 7, 8, 10, 11},
		"sam, no actor": {1, 2, 3, 4, 5, 6, 7},
	})

	// An event names its object, not its id: when web is deleted and made
	// again under its name, web's events go with the new one.
	update(t, s, func(tx store.Tx) error {
		if err := tx.Configs().Delete(web.ID); err != nil {
			return err
		}
		web = store.Config{Name: "web", State: store.StateUndeployed, WorkspaceID: priv.ID, OwnerID: olga.ID}
		if err := tx.Configs().Create(&web); err != nil {
			return err
		}
		added = append(added, store.Event{Actor: "olga", Action: "create", Object: "config", Subject: "web", Result: "ok"}) // 12
		return tx.Events().Add(&added[len(added)-1])
	})
	check("web made again in priv, olga's", map[string][]int{
		"vic":           {2, 4, 6, 7, 9},
		"vic in team":   {2, 4, 7, 9},
		"vic's own":     {4, 9},
		"vic, no actor": {2, 4, 6, 7},
		"olga":          {1, 2, 3, 5, 6, 7, 8, 10, 11, 12},
		"sam, no actor": {1, 2, 3, 4, 5, 6, 7, 12},
	})
	update(t, s, func(tx store.Tx) error { return tx.Objects().SetOwnership(store.ObjectConfig, web.ID, priv.ID, vic.ID) })
	check("web given to vic", map[string][]int{
		"vic":           {1, 2, 4, 6, 7, 9, 12},
		"vic in team":   {2, 4, 7, 9},
		"vic's own":     {4, 9},
		"vic, no actor": {1, 2, 4, 6, 7, 12},
		"olga":          {1, 2, 3, 5, 6, 7, 8, 10, 11, 12},
		"sam, no actor": {1, 2, 3, 4, 5, 6, 7, 12},
	})
}

// testLibrary: library entries are configurations of Kind KindLibrary, in
// the same table and name space; "" is stored as KindConfig, and the kind
// never changes.
func testLibrary(t *testing.T, s store.Store) {
	ctx := context.Background()
	f := newConfigFixture(t, s)
	plain := store.Config{Name: "web", State: store.StateUndeployed}
	entry := f.webConfig()
	entry.Name, entry.Kind, entry.Description = "web-v1", store.KindLibrary, "checked in from web"
	update(t, s, func(tx store.Tx) error {
		if err := tx.Configs().Create(&plain); err != nil {
			return err
		}
		return tx.Configs().Create(&entry)
	})
	if plain.Kind != store.KindConfig {
		t.Errorf("CreateConfig of kind \"\": Kind %q, want %q", plain.Kind, store.KindConfig)
	}
	entry = sorted(entry)
	view(t, s, func(tx store.Tx) error {
		got, err := tx.Configs().Get("web")
		if err != nil {
			return err
		}
		diff(t, "GetConfig of a configuration made with kind \"\"", &plain, got)
		got, err = tx.Configs().GetByID(entry.ID)
		if err != nil {
			return err
		}
		diff(t, "GetConfigByID of a library entry", &entry, got)
		all, err := tx.Configs().List()
		if err != nil {
			return err
		}
		diff(t, "ListConfigs: configurations and library entries, by id", []store.Config{plain, entry}, all)
		return nil
	})
	err := s.Update(ctx, func(tx store.Tx) error {
		return tx.Configs().Create(&store.Config{Name: "web-v1", State: store.StateUndeployed})
	})
	wantKind(t, "CreateConfig with a library entry's name", err, errdefs.ErrConflict, "web-v1")

	update(t, s, func(tx store.Tx) error {
		c := plain
		c.Kind, c.Description = store.KindLibrary, "still a configuration"
		if err := tx.Configs().Update(&c); err != nil {
			return err
		}
		e := entry
		e.Kind, e.Description = store.KindConfig, "still a library entry"
		return tx.Configs().Update(&e)
	})
	view(t, s, func(tx store.Tx) error {
		for name, want := range map[string]string{"web": store.KindConfig, "web-v1": store.KindLibrary} {
			got, err := tx.Configs().Get(name)
			if err != nil {
				return err
			}
			if got.Kind != want {
				t.Errorf("%s: Kind %q after UpdateConfig, want %q (the kind never changes)", name, got.Kind, want)
			}
		}
		return nil
	})
}
