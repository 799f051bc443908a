package webui

import (
	"context"
	"fmt"
	"sort"

	"stagehand/internal/auth"
	"stagehand/internal/errdefs"
	"stagehand/internal/jobs"
	"stagehand/internal/lab"
	"stagehand/internal/lab/access"
	"stagehand/internal/lab/events"
	"stagehand/internal/store"
)

// Lab is what the pages read, each part behind the small interface it is
// read through; LabOf gives the real lab's. Every read runs with the
// request's context, so the lab filters and decides for the signed-in
// user exactly as it does for the API.
type Lab struct {
	Configs   Configs
	Library   Library
	Templates Templates
	Networks  Networks
	Archives  Archives
	Cleanup   Cleanup
	// Snapshots are the configurations' snapshot trees (page_snapshots.go).
	Snapshots Snapshots
	Jobs      Jobs
	// Events is the event log as the caller of ctx may read it (the
	// activity page).
	Events EventLog
	Access Access
	// Store gives the names of the user's workspaces (the switcher) and
	// the event log (an object's history).
	Store store.Store
}

// Objects is what the pages read of one kind of object: those the caller
// of ctx may see, and one of them by name.
type Objects[V any] interface {
	List(ctx context.Context) ([]V, error)
	Get(ctx context.Context, name string) (*V, error)
}

// Configs is what the pages read of configurations (lab.Configs).
type Configs interface {
	Objects[lab.ConfigView]
	DiskChain(ctx context.Context, config, vm string, disk int) ([]lab.LayerView, error)
}

// Templates is what the pages read of templates (lab.Templates).
type Templates = Objects[lab.TemplateView]

// Networks is what the pages read of networks (lab.Networks): a network's
// usage names only the configurations the caller may see.
type Networks = Objects[lab.NetworkView]

// Library is what the pages read of the library (lab.Library).
type Library = Objects[lab.ConfigView]

// Archives is what the pages read of archives (lab.Archives).
type Archives = Objects[lab.ArchiveView]

// Cleanup is the cleanup view (lab.Leases): what the caller may see that
// expired or is idle, and what deleting it frees. The pages only read it
// (no Apply); applying is the API's POST /cleanup.
type Cleanup interface {
	Cleanup(ctx context.Context, opts lab.CleanupOptions) (*lab.CleanupReport, error)
	// Space is what deleting one configuration alone frees, by the same
	// model (GET /configs/{name}/space).
	Space(ctx context.Context, name string) (*lab.ConfigSpace, error)
}

// Jobs is what the pages read of the background operations
// (jobs.Manager); each is shown only when access allows job.read on it.
type Jobs interface {
	List() []jobs.Job
	Get(id string) (jobs.Job, error)
}

// EventLog is the event log as the caller of ctx reads it
// (events.Reader): the events they may see after id after.
type EventLog interface {
	List(ctx context.Context, after int64, limit int) ([]events.View, error)
}

// Access decides, for the caller of ctx, what a page shows and offers
// (access.Checker).
type Access interface {
	Check(ctx context.Context, action auth.Action, obj access.Ref) error
	Viewer(ctx context.Context) (v store.Viewer, all bool, err error)
}

// LabOf returns the parts of svc the console reads.
func LabOf(svc *lab.Service) Lab {
	l := Lab{Configs: svc.Configs, Library: svc.Library, Templates: svc.Templates, Networks: svc.Networks,
		Archives: svc.Archives, Cleanup: svc.Leases, Snapshots: svc.Snapshots, Store: svc.Store()}
	if j := svc.Jobs(); j != nil {
		l.Jobs = j
	}
	if svc.EventReader != nil {
		l.Events = svc.EventReader
	}
	if svc.Access != nil { // a nil *Checker must stay a nil Access
		l.Access = svc.Access
	}
	return l
}

// check returns nil when the caller of ctx may do action on obj, else the
// checker's refusal (errdefs NotFound for an invisible object, Forbidden).
func (l Lab) check(ctx context.Context, action auth.Action, obj access.Ref) error {
	if l.Access == nil {
		return errdefs.Unavailable("authorization is not configured on this server")
	}
	return l.Access.Check(ctx, action, obj)
}

// allowed reports whether the caller of ctx may do action on obj. A
// refusal (not found, forbidden) is a plain false; any other failure is
// returned, so that a page does not silently hide what the store failed
// to decide.
func (l Lab) allowed(ctx context.Context, action auth.Action, obj access.Ref) (bool, error) {
	if l.Access == nil {
		return false, nil
	}
	err := l.Access.Check(ctx, action, obj)
	switch errdefs.Kind(err) {
	case nil:
		if err == nil {
			return true, nil
		}
	case errdefs.ErrNotFound, errdefs.ErrForbidden, errdefs.ErrUnauthenticated:
		return false, nil
	}
	return false, err
}

// workspaces returns the names of the workspaces the caller of ctx is a
// member of ("ws" in organization default, "org/ws" elsewhere), sorted;
// every workspace for the system administrator.
func (l Lab) workspaces(ctx context.Context) ([]string, error) {
	if l.Access == nil || l.Store == nil {
		return nil, nil
	}
	v, all, err := l.Access.Viewer(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	err = l.Store.View(ctx, func(tx store.Tx) error {
		names := access.NewNames(tx)
		if all {
			ws, err := tx.Workspaces().List(0)
			if err != nil {
				return err
			}
			for _, w := range ws {
				out = append(out, names.Workspace(w.ID))
			}
			return nil
		}
		for _, w := range v.Workspaces {
			if n := names.Workspace(w.ID); n != "" {
				out = append(out, n)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("workspaces of the signed-in user: %w", err)
	}
	sort.Strings(out)
	return out, nil
}

// historyMax is how many events about an object its page shows at a
// time, newest first; the older ones are the next page (historyPage.Older).
const historyMax = 30

// historyPage is one page of an object's history, newest first.
type historyPage struct {
	Events []events.View
	// Before is the cursor the page was read with: its events have
	// smaller ids (0: from the newest). Older, when not 0, is the cursor
	// of the next, older page.
	Before, Older int64
}

// history returns the page of the events about object kind/name
// (Event.Object and Subject) before the event with id before (0: the
// newest), read from the store's index by object (Events.Of) however old
// they are; and the id of the newest event of all, from which the page's
// live updates follow. The caller has checked that the object is visible:
// its events are then readable (see store.EventFilter).
func (l Lab) history(ctx context.Context, kind, name string, before int64) (h historyPage, latest int64, err error) {
	h.Before = before
	if l.Store == nil {
		return h, 0, nil
	}
	err = l.Store.View(ctx, func(tx store.Tx) error {
		var err error
		if latest, err = tx.Events().Newest(); err != nil {
			return err
		}
		// One more than a page tells whether an older page follows.
		es, err := tx.Events().Of(kind, name, before, historyMax+1)
		if err != nil {
			return err
		}
		if len(es) > historyMax {
			es = es[:historyMax]
			h.Older = es[historyMax-1].ID
		}
		for _, e := range es {
			h.Events = append(h.Events, events.View{ID: e.ID, At: e.At, Actor: e.Actor, Action: e.Action,
				Object: e.Object, Subject: e.Subject, Result: e.Result, Detail: e.Detail})
		}
		return nil
	})
	if err != nil {
		return historyPage{}, 0, fmt.Errorf("history of %s %q: %w", kind, name, err)
	}
	return h, latest, nil
}

// latestEvent returns the id of the newest event (0: none), from which a
// page's event stream starts: the stream then sends only what happens
// after the page was made.
func (l Lab) latestEvent(ctx context.Context) (int64, error) {
	if l.Store == nil {
		return 0, nil
	}
	var id int64
	err := l.Store.View(ctx, func(tx store.Tx) error {
		var err error
		id, err = tx.Events().Newest()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("newest event: %w", err)
	}
	return id, nil
}
