package store

import (
	"context"
	"strconv"
	"time"
)

// Records of many hosts sharing one store (issue 13): which frozen layers
// each host holds, the queue of host-local work that another host decides,
// and the VXLAN identifiers of fences spread over hosts.

// HostLayers records which frozen layers each host holds in its own
// storage. Deleting a host or a layer deletes its rows.
type HostLayers interface {
	// Add records that the host holds the layer; adding it again is no
	// change. A missing host or layer is ErrConflict.
	Add(hostID, layerID int64) error
	// Remove forgets that the host holds the layer; removing what was not
	// recorded is no change.
	Remove(hostID, layerID int64) error
	// OfHost returns the ids of the layers the host holds, in order.
	OfHost(hostID int64) ([]int64, error)
	// Holders returns the hosts that hold the layer, ordered by ID.
	Holders(layerID int64) ([]Host, error)
}

// Work item states.
const (
	WorkQueued  = "queued"
	WorkClaimed = "claimed"
	WorkDone    = "done"
	WorkFailed  = "failed"
)

// WorkItem is one piece of host-local work (undeploy a configuration
// that runs on that host, delete its files, a drain step) that another
// host decided and the owning host carries out.
type WorkItem struct {
	ID     int64
	HostID int64
	// Kind names the handler that carries it out; Subject what it is
	// about (a configuration's name); Payload the handler's arguments.
	Kind    string
	Subject string
	Payload []byte
	State   string
	// Attempts counts the claims: more than one means a host claimed it,
	// died, and claimed it again.
	Attempts int
	// Error is why it failed (state failed).
	Error     string
	CreatedAt time.Time
	ClaimedAt time.Time // zero until claimed
	DoneAt    time.Time // zero until done or failed
}

// Work is the queue of work items. Each host claims its own items, oldest
// first; two workers of one host never claim the same item.
type Work interface {
	// Enqueue adds w (HostID, Kind, Subject, Payload) queued, and sets its
	// ID, State and CreatedAt. On PostgreSQL the owning host is notified
	// on WorkChannel(w.HostID) at commit. A missing host is ErrConflict.
	Enqueue(w *WorkItem) error
	// Claim marks the host's oldest queued item claimed at now and
	// returns it; nil when none is queued. On PostgreSQL it skips the
	// items other transactions are claiming, never waiting for them.
	Claim(hostID int64, now time.Time) (*WorkItem, error)
	// Finish marks a claimed item done (errText "") or failed with
	// errText. An item that is not claimed is ErrConflict.
	Finish(id int64, errText string) error
	// Requeue puts back the host's items claimed before claimedBefore
	// (a daemon that died while it carried them out) and returns how many.
	Requeue(hostID int64, claimedBefore time.Time) (int64, error)
	Get(id int64) (*WorkItem, error)
	// OfHost and OfSubject list items ordered by ID.
	OfHost(hostID int64) ([]WorkItem, error)
	OfSubject(subject string) ([]WorkItem, error)
}

// VNI range: VXLAN network identifiers are 24 bits; 0 is not used.
const (
	MinVNI = 1
	MaxVNI = 1<<24 - 1
)

// FenceVNI is the VXLAN identifier of one fenced network of a
// configuration spread over hosts. Each VNI is held by one at a time.
type FenceVNI struct {
	ID        int64
	ConfigID  int64
	NetworkID int64
	VNI       int
}

// FenceVNIs: deleting the configuration frees its VNIs.
type FenceVNIs interface {
	// Allocate returns the VNI of (configID, networkID), taking the
	// lowest free one when it has none. All taken is ErrUnavailable; a
	// missing configuration or network is ErrConflict.
	Allocate(configID, networkID int64) (int, error)
	// OfConfig returns the configuration's VNIs ordered by network.
	OfConfig(configID int64) ([]FenceVNI, error)
	// Free frees the configuration's VNIs and returns how many.
	Free(configID int64) (int64, error)
}

// Notification channels of a store whose daemons run on several hosts
// (PostgreSQL's LISTEN/NOTIFY). Payloads are ids only: a notification is
// a hint to read the store, which stays the one source of truth.
const EventsChannel = "stagehand_events"

// WorkChannel is the channel on which host hostID is told of new work.
func WorkChannel(hostID int64) string {
	return "stagehand_work_" + strconv.FormatInt(hostID, 10)
}

// Notification is one notification of a Listener.
type Notification struct {
	Channel string
	Payload string
	// Resumed marks the first notification after the listener lost its
	// connection and listens again (Channel and Payload are empty):
	// whatever was notified in between is lost, and the receiver should
	// read the store for what it may have missed.
	Resumed bool
}

// Listener is a store that delivers notifications of other transactions
// (PostgreSQL). A store with one daemon (SQLite) has none: its daemon
// sees its own changes.
type Listener interface {
	// Listen delivers the notifications on channels, committed after it
	// listens, until ctx ends; then it closes the returned channel. It
	// reconnects after a lost connection, with backoff.
	Listen(ctx context.Context, channels ...string) <-chan Notification
}
