package daemon

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"stagehand/internal/client"
	"stagehand/internal/metrics"
)

// TestMetricsEndpoint runs the daemon, uploads a template, and scrapes
// /metrics as root over the unix socket and with the administrator's
// token over TCP (a request without credentials is refused): the layer
// bytes the daemon reports are what the one layer file the API names
// takes, so the daemon points the sum at the lab's layers.
func TestMetricsEndpoint(t *testing.T) {
	requireQemuImg(t)
	d := runDaemon(t, slog.LevelInfo, nil)
	token := d.adminToken(t)
	src := filepath.Join(t.TempDir(), "base.img")
	data := make([]byte, 1<<20)
	for i := range data {
		data[i] = byte(i)
	}
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	c := client.New("http://"+d.addr, client.WithToken(token))
	if _, err := c.Templates().Upload(context.Background(), client.TemplateUpload{Name: "base", Disks: []string{src}, Format: "raw"}); err != nil {
		t.Fatal(err)
	}
	tm, err := c.Templates().Get(context.Background(), "base")
	if err != nil {
		t.Fatal(err)
	}
	if len(tm.Disks) != 1 {
		t.Fatalf("template layers %+v", tm.Disks)
	}
	// A template's view leaves actual sizes to the disk chain: the file's
	// own blocks are what qemu-img's actual-size would say.
	want, err := metrics.AllocatedBytes(tm.Disks[0].Path)
	if err != nil || want <= 0 {
		t.Fatalf("layer %s: %d bytes, %v", tm.Disks[0].Path, want, err)
	}

	get := func(hc *http.Client, base, token string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, base+"/metrics", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	layerBytes := regexp.MustCompile(`(?m)^stagehand_layer_bytes (\S+)$`)
	for _, tc := range []struct {
		name  string
		hc    *http.Client
		base  string
		token string
	}{
		{"root on the socket", socketClient(filepath.Join(d.cfg.DataDir, SocketFile)), "http://localhost", ""},
		{"an administrator's token over TCP", http.DefaultClient, "http://" + d.addr, token},
	} {
		status, body := get(tc.hc, tc.base, tc.token)
		if status != http.StatusOK {
			t.Fatalf("%s: GET /metrics = %d %s", tc.name, status, body)
		}
		m := layerBytes.FindStringSubmatch(body)
		if m == nil {
			t.Fatalf("%s: no stagehand_layer_bytes in\n%s", tc.name, body)
		}
		if got, _ := strconv.ParseFloat(m[1], 64); got != float64(want) {
			t.Errorf("%s: stagehand_layer_bytes = %s, the template's layer takes %d", tc.name, m[1], want)
		}
	}
	if status, _ := get(http.DefaultClient, "http://"+d.addr, ""); status != http.StatusUnauthorized {
		t.Errorf("no credentials over TCP: %d, want 401", status)
	}
}
