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

// TestConcurrentAllocationsOverAPI sends 10,000 address allocations
// (`config set-ip … pool`: a new pool address each, the old one released)
// from 50 concurrent API clients and checks that no address is ever given
// to two NICs and that the pool usage is exactly what the NICs hold.
func TestConcurrentAllocationsOverAPI(t *testing.T) {
	requireTools(t)
	d := startDaemon(t, t.TempDir())
	d.ok("template", "import", "base", "--disk", makeImage(t, t.TempDir()))
	d.ok("network", "create", "big", "--subnet", "10.90.0.0/16", "--pool", "10.90.0.10-10.90.250.250")
	c := client.New(d.url)
	ctx := context.Background()
	const clients, each = 50, 200
	for i := 0; i < clients; i++ {
		_, err := c.CreateConfig(ctx, wire.ConfigRequest{Name: fmt.Sprintf("c%d", i), VMs: []wire.VMRequest{{Name: "vm", Template: "base", Network: "big"}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func(name string) {
			defer wg.Done()
			for k := 0; k < each; k++ {
				t0 := time.Now()
				if _, err := c.SetIP(ctx, name, "vm", 0, "pool"); err != nil {
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
	total := time.Since(start)
	if t.Failed() {
		return
	}
	configs, err := c.ListConfigs(ctx)
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
	nw, err := c.GetNetwork(ctx, "big")
	if err != nil {
		t.Fatal(err)
	}
	if len(nw.Usage) != clients {
		t.Errorf("pool usage has %d addresses, want %d (one per NIC; released ones back in the pool)", len(nw.Usage), clients)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	t.Logf("%d allocations over the API from %d clients in %v: %.0f/s, p50 %v, p99 %v, duplicates 0",
		len(lat), clients, total.Round(time.Millisecond), float64(len(lat))/total.Seconds(), lat[len(lat)/2], lat[len(lat)*99/100])
	d.ok("doctor")
}
