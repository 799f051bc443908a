package webui_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"stagehand/internal/lab"
	"stagehand/internal/webui"
)

// benchConfigs is how many configurations BenchmarkConfigsPage lists, as
// e2e/browser's BenchmarkWebConsole does (docs/benchmarks.md).
const benchConfigs = 1000

// manyConfigs adds n configurations of one VM each (on template tmpl, no
// network) to c's lab, as the system, 4 at a time.
func manyConfigs(b *testing.B, c *console, n int) {
	b.Helper()
	began := time.Now()
	names := make(chan string)
	errs := make(chan error, 4)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for name := range names {
				if _, err := c.Configs.Create(context.Background(), lab.ConfigSpec{Name: name,
					Description: "benchmark configuration " + name, VMs: []lab.VMSpec{{Name: "vm", Template: "tmpl"}}}); err != nil {
					errs <- fmt.Errorf("create %s: %w", name, err)
					return
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		select {
		case names <- fmt.Sprintf("bench-%04d", i):
		case err := <-errs:
			b.Fatal(err)
		}
	}
	close(names)
	wg.Wait()
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
	b.Logf("created %d configurations in %s", n, time.Since(began).Round(time.Millisecond))
}

// BenchmarkConfigsPage times the daemon's side of GET /ui/configs with
// 1,000 configurations, through the API's handler (session, gate) as an
// author of main sees it: run with -cpuprofile to see where the time
// goes.
func BenchmarkConfigsPage(b *testing.B) {
	c := newConsole(b, webui.Options{})
	manyConfigs(b, c, benchConfigs)
	session := c.member(b, "author", "author")
	get := func(path string) int {
		res, body := c.get(b, session, path)
		if res.StatusCode != http.StatusOK {
			b.Fatalf("GET %s: %d %s", path, res.StatusCode, body)
		}
		return len(body)
	}
	b.Run("page", func(b *testing.B) {
		var size int
		for i := 0; i < b.N; i++ {
			size = get("/ui/configs")
		}
		b.ReportMetric(float64(size)/1024, "KiB")
	})
}
