package lab

import (
	"context"

	"stagehand/internal/lab/events"
	"stagehand/internal/store"
)

// The events of the operations: every operation that changes state ends by
// telling its Recorder what it did (record, or recordFailure from failOp).
// The log (package events) appends the event to the store and tells live
// followers. It keeps no other state: leases are written by the operations
// themselves, in the transaction that commits them (see leaseKeeper in
// leases.go).

// Objects of events.
const (
	ObjectConfig   = "config"
	ObjectLibrary  = "library"
	ObjectArchive  = "archive"
	ObjectTemplate = "template"
	ObjectNetwork  = "network"
)

// Actors of the lab's own actions.
const ActorReaper = "reaper"

// Recorder is the event log as the operations see it (*events.Log).
type Recorder interface {
	// Record appends e after the operation committed. It never fails the
	// operation, which is done: a failure to record is logged.
	Record(ctx context.Context, e events.Event)
}

var _ Recorder = (*events.Log)(nil)

// recorder is what the operations tell their Recorder, in the lab's words.
type recorder struct{ Recorder }

// record tells the Recorder that the operation did action to subject.
func (r recorder) record(ctx context.Context, object, action, subject, detail string) {
	r.Record(ctx, events.Event{Object: object, Action: action, Subject: subject, Result: events.ResultOK, Detail: detail})
}

// recordFailure tells the Recorder that action on subject failed.
func (r recorder) recordFailure(ctx context.Context, object, action, subject string, err error) {
	r.Record(ctx, events.Event{Object: object, Action: action, Subject: subject, Result: events.ResultFailed, Detail: err.Error()})
}

// opObjects names the object of the journal's operation kinds, for the
// failure events failOp records.
var opObjects = map[string]string{
	"import": ObjectTemplate, "delete-template": ObjectTemplate,
	"archive": ObjectArchive, "archive-import": ObjectArchive, "export": ObjectArchive, "delete-archive": ObjectArchive,
	"capture": ObjectLibrary,
}

// recordOpFailure records the failure of a journalled operation.
func (r recorder) recordOpFailure(ctx context.Context, op *store.Op, err error) {
	object := opObjects[op.Kind]
	if object == "" {
		object = ObjectConfig
	}
	r.recordFailure(ctx, object, op.Kind, op.Subject, err)
}

func kindObject(kind string) string {
	if kind == store.KindLibrary {
		return ObjectLibrary
	}
	return ObjectConfig
}
