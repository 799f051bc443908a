package hostlink_test

import (
	"context"
	"net/http"
	"slices"
	"sync"
	"testing"

	"stagehand/internal/hostlink"
)

// partMember records the part calls a host's endpoints pass on; the
// other methods of a move are not called here (nil interface).
type partMember struct {
	hostlink.Adopter
	mu    sync.Mutex
	calls []string
}

func (m *partMember) StartPart(_ context.Context, config, from string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls = append(m.calls, "start "+config+" from "+from)
	return nil
}

func (m *partMember) StopPart(_ context.Context, config, from string, saveState bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	call := "stop " + config + " from " + from
	if saveState {
		call += " saving"
	}
	m.calls = append(m.calls, call)
	return nil
}

// TestPartStopCarriesSaveState: the home's StopPart reaches the member
// with the save flag it was given (an undeploy --save-state suspends the
// member's VMs), and with the caller's verified name as the home.
func TestPartStopCarriesSaveState(t *testing.T) {
	table := hosts{}
	m := &partMember{}
	member := newSite(t, "member", table, func(h http.Handler) http.Handler {
		h.(*hostlink.Server).ServeMoves(m)
		return h
	})
	home := newSite(t, "home", table, nil)
	ctx := context.Background()
	if err := home.puller.StartPart(ctx, member.peer(), "web"); err != nil {
		t.Fatal(err)
	}
	if err := home.puller.StopPart(ctx, member.peer(), "web", true); err != nil {
		t.Fatal(err)
	}
	if err := home.puller.StopPart(ctx, member.peer(), "web", false); err != nil {
		t.Fatal(err)
	}
	want := []string{"start web from home", "stop web from home saving", "stop web from home"}
	if !slices.Equal(m.calls, want) {
		t.Errorf("member got %q, want %q", m.calls, want)
	}
}
