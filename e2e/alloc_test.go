package e2e

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"stagehand/internal/api/wire"
	"stagehand/internal/client"
)

// allocLoad is a daemon with one network and one single-NIC configuration
// per client, for concurrent address allocations over the API (`config
// set-ip … pool`: a new pool address each time, the old one released).
type allocLoad struct {
	d       *daemon
	c       *client.Client
	clients int
}

func newAllocLoad(t *testing.T, clients int) *allocLoad {
	t.Helper()
	requireTools(t)
	d := startDaemon(t, t.TempDir())
	d.ok("template", "import", "base", "--disk", makeImage(t, t.TempDir()))
	d.ok("network", "create", "big", "--subnet", "10.90.0.0/16", "--pool", "10.90.0.10-10.90.250.250")
	c := client.New(d.url, client.WithToken(d.token()))
	for i := 0; i < clients; i++ {
		req := wire.ConfigRequest{Name: fmt.Sprintf("c%d", i), VMs: []wire.VMRequest{{Name: "vm", Template: "base", Network: "big"}}}
		if _, err := c.Configs().Create(context.Background(), req); err != nil {
			t.Fatal(err)
		}
	}
	return &allocLoad{d: d, c: c, clients: clients}
}

// run makes each client allocate `each` times, all clients at once, and
// returns every allocation's latency and the wall time.
func (l *allocLoad) run(t *testing.T, each int) (lat []time.Duration, wall time.Duration) {
	t.Helper()
	ctx := context.Background()
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < l.clients; i++ {
		wg.Add(1)
		go func(name string) {
			defer wg.Done()
			for k := 0; k < each; k++ {
				t0 := time.Now()
				if _, err := l.c.VMs().SetIP(ctx, name, "vm", 0, wire.SetIPRequest{IP: "pool"}); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				lat = append(lat, time.Since(t0))
				mu.Unlock()
			}
		}(fmt.Sprintf("c%d", i))
	}
	wg.Wait()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return lat, time.Since(start)
}

// checkExclusive asserts that no address is held by two NICs and that the
// pool's usage is exactly the addresses the NICs hold (every replaced
// address went back to the pool).
func (l *allocLoad) checkExclusive(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	configs, err := l.c.Configs().List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{}
	for _, cfg := range configs {
		ip := cfg.VMs[0].NICs[0].IP
		if other, dup := seen[ip]; dup {
			t.Errorf("%s held by %s and %s", ip, other, cfg.Name)
		}
		seen[ip] = cfg.Name
	}
	nw, err := l.c.Networks().Get(ctx, "big")
	if err != nil {
		t.Fatal(err)
	}
	if len(nw.Usage) != l.clients {
		t.Errorf("pool usage has %d addresses, want %d (one per NIC; released ones back in the pool)", len(nw.Usage), l.clients)
	}
	l.d.ok("doctor")
}

// TestConcurrentAllocationsOverAPI is the correctness half of the
// allocation load: 20 clients allocating at once never get one address
// twice and leave the pool's usage exact. The 10,000-allocation load with
// latencies is BenchmarkAllocationsOverAPI.
func TestConcurrentAllocationsOverAPI(t *testing.T) {
	l := newAllocLoad(t, 20)
	lat, wall := l.run(t, 25)
	if t.Failed() {
		return
	}
	l.checkExclusive(t)
	t.Logf("%d allocations from %d clients in %v, p50 %v, p99 %v",
		len(lat), l.clients, wall.Round(time.Millisecond), lat[len(lat)/2], lat[len(lat)*99/100])
}
