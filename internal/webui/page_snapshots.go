package webui

import (
	"context"
	"net/http"
	"net/url"
	"strings"

	"stagehand/internal/auth"
	"stagehand/internal/lab"
	"stagehand/internal/lab/access"
)

// Snapshots is what the configuration page reads of its snapshot tree
// (lab.Snapshots).
type Snapshots interface {
	List(ctx context.Context, config string) ([]lab.SnapshotView, error)
}

// snapshotPart is the snapshot section of the configuration page: the
// tree (depth-first, indented) with each snapshot's own actions, and the
// action that takes a new one.
type snapshotPart struct {
	Rows []snapshotRow
	Take []Action
}

// snapshotRow is one snapshot with what the user may do with it.
type snapshotRow struct {
	lab.SnapshotView
	Indent  string // the tree drawn in front of the name
	Actions []Action
}

// snapshotPart reads c's snapshot tree and the actions the user may take:
// take, revert and delete are config.edit, a clone from one config.clone.
func (p *configPages) snapshotPart(ctx context.Context, c *lab.ConfigView) (snapshotPart, error) {
	var out snapshotPart
	if p.lab.Snapshots == nil {
		return out, nil
	}
	snaps, err := p.lab.Snapshots.List(ctx, c.Name)
	if err != nil {
		return out, err
	}
	ref := access.Ref{Kind: access.KindConfig, Name: c.Name}
	api := "/api/v1/configs/" + url.PathEscape(c.Name) + "/snapshots"
	q := shellQuote(c.Name)
	o := p.offers(ctx)
	if c.State == "undeployed" || c.State == "deployed" {
		o.add(auth.ConfigEdit, ref, Action{
			Name: "config.snapshot", Label: "Take snapshot", Method: http.MethodPost, Path: api,
			CLI: "stagehand snapshot create " + q + " {name}",
			Confirm: "Freeze every disk of " + c.Name + " as a snapshot; the VMs go on writing fresh layers. " +
				"A deployed configuration's guests pause together for a few milliseconds; with state they stay paused while their memory is saved.",
			Fields: []Field{
				{Name: "name", Label: "Snapshot name", Required: true},
				{Name: "with_state", Label: "Save the guests' memory (deployed only)", Kind: FieldBool, Flag: "--with-state"},
			},
		})
	}
	if out.Take, err = o.result(); err != nil {
		return out, err
	}
	for _, s := range snaps {
		row := snapshotRow{SnapshotView: s}
		if s.Depth > 0 {
			row.Indent = strings.Repeat("\u00a0\u00a0", s.Depth-1) + "└─ "
		}
		one := api + "/" + url.PathEscape(s.Name)
		qs := shellQuote(s.Name)
		o := p.offers(ctx)
		o.add(auth.ConfigEdit, ref, Action{
			Name: "config.snapshot.revert", Label: "Revert", Method: http.MethodPost, Path: one + "/revert", Key: s.Name,
			CLI: "stagehand snapshot revert " + q + " " + qs,
			Confirm: "Discard the current disks of " + c.Name + " and go on from " + s.Name + ". A deployed configuration is powered off and deployed again" +
				map[bool]string{true: ", resuming the guests from the snapshot's memory.", false: "; its guests boot."}[s.WithState],
		})
		o.add(auth.ConfigClone, ref, Action{
			Name: "config.snapshot.clone", Label: "Clone", Method: http.MethodPost, Path: one + "/clone", Key: s.Name,
			CLI:     "stagehand config clone " + q + " {name} --from-snapshot " + qs,
			Confirm: "A linked clone of " + c.Name + " as it was at " + s.Name + ".",
			Fields:  []Field{{Name: "name", Label: "New name", Required: true, Value: c.Name + "-" + s.Name}},
			Then:    "/ui/configs/{name}",
		})
		o.add(auth.ConfigEdit, ref, Action{
			Name: "config.snapshot.delete", Label: "Delete", Method: http.MethodDelete, Path: one, Key: s.Name, Danger: true,
			CLI:     "stagehand snapshot delete " + q + " " + qs,
			Confirm: "Delete snapshot " + s.Name + ". Layers its child snapshots, clones or the current disks build on are kept.",
		})
		if row.Actions, err = o.result(); err != nil {
			return out, err
		}
		out.Rows = append(out.Rows, row)
	}
	return out, nil
}
