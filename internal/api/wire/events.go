package wire

import "time"

// Objects of events and cleanup items.
const (
	ObjectConfig   = "config"
	ObjectLibrary  = "library"
	ObjectArchive  = "archive"
	ObjectTemplate = "template"
	ObjectNetwork  = "network"
)

// Event results.
const (
	ResultOK     = "ok"
	ResultFailed = "failed"
)

// Event is one entry of the log of state changes: GET /events (a JSON
// list, ?after=ID&limit=N), or with ?follow=1 or "Accept:
// text/event-stream" a stream of server-sent events, each "id: ID" and
// "data: <Event as JSON>", resumable with Last-Event-ID.
type Event struct {
	ID      int64     `json:"id"`
	At      time.Time `json:"at"`
	Actor   string    `json:"actor"`
	Action  string    `json:"action"`
	Object  string    `json:"object"`
	Subject string    `json:"subject"`
	Result  string    `json:"result"`
	Detail  string    `json:"detail"`
}
