package api_test

import (
	"net/http"
	"testing"
	"time"

	"stagehand/internal/api/wire"
)

// TestConfigSpaceOfALinkedClone: GET /configs/{name}/space says a linked
// clone frees only its own writable tops (the frozen layers it shares
// with its origin stay), in bytes equal to those tops' allocated size,
// and equal to what the cleanup view says for the same clone once its
// storage lease ran out.
func TestConfigSpaceOfALinkedClone(t *testing.T) {
	srv, _ := newServer(t)
	if st, _, b := call(t, srv, http.MethodPost, "/api/v1/configs/web/clone", `{"name":"web-2","mode":"linked"}`); st != http.StatusCreated {
		t.Fatalf("clone: %d %s", st, b)
	}
	st, _, b := call(t, srv, http.MethodGet, "/api/v1/configs/web-2/vms/vm1/disks/0/chain", "")
	if st != http.StatusOK {
		t.Fatalf("chain: %d %s", st, b)
	}
	chain := decodeAs[[]wire.Layer](t, b)
	if len(chain) < 2 || chain[0].Frozen {
		t.Fatalf("chain of a linked clone: want a writable top over frozen layers, got %+v", chain)
	}
	top := chain[0]

	st, _, b = call(t, srv, http.MethodGet, "/api/v1/configs/web-2/space", "")
	if st != http.StatusOK {
		t.Fatalf("space: %d %s", st, b)
	}
	sp := decodeAs[wire.ConfigSpace](t, b)
	if len(sp.Layers) != 1 || sp.Layers[0].ID != top.ID || sp.Layers[0].Path != top.Path {
		t.Fatalf("space of web-2 frees layers %+v, want only its top %d %s", sp.Layers, top.ID, top.Path)
	}
	if sp.FreesBytes != top.ActualSize || sp.Layers[0].Bytes != top.ActualSize {
		t.Errorf("space of web-2: frees %d (layer %d), its top takes %d", sp.FreesBytes, sp.Layers[0].Bytes, top.ActualSize)
	}

	// The origin's old top is now a frozen layer the clone builds on:
	// deleting the origin frees only its own new top, too.
	st, _, b = call(t, srv, http.MethodGet, "/api/v1/configs/web/space", "")
	if st != http.StatusOK {
		t.Fatalf("space of web: %d %s", st, b)
	}
	if o := decodeAs[wire.ConfigSpace](t, b); len(o.Layers) != 1 || o.Layers[0].ID == top.ID || o.Layers[0].ID == chain[1].ID {
		t.Errorf("space of web frees %+v; want its own top only, not the shared %d", o.Layers, chain[1].ID)
	}

	// The cleanup view counts the same bytes for the same clone.
	if st, _, b := call(t, srv, http.MethodPost, "/api/v1/configs/web-2/lease", `{"storage":"1s"}`); st != http.StatusOK {
		t.Fatalf("lease: %d %s", st, b)
	}
	time.Sleep(1100 * time.Millisecond)
	st, _, b = call(t, srv, http.MethodGet, "/api/v1/cleanup", "")
	if st != http.StatusOK {
		t.Fatalf("cleanup: %d %s", st, b)
	}
	var found bool
	for _, it := range decodeAs[wire.CleanupReport](t, b).Items {
		if it.Name == "web-2" {
			found = true
			if it.Frees != sp.FreesBytes {
				t.Errorf("cleanup says web-2 frees %d, space says %d", it.Frees, sp.FreesBytes)
			}
		}
	}
	if !found {
		t.Errorf("cleanup does not list web-2 after its lease ran out: %s", b)
	}

	if st, _, _ := call(t, srv, http.MethodGet, "/api/v1/configs/nope/space", ""); st != http.StatusNotFound {
		t.Errorf("space of a missing configuration: %d, want 404", st)
	}
}
