package client_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"stagehand/internal/api/apitest"
	"stagehand/internal/api/wire"
	"stagehand/internal/client"
	"stagehand/internal/errdefs"
)

// newClient returns a client of the API over an empty real lab.
func newClient(t *testing.T, opts ...apitest.Option) (*client.Client, *apitest.Lab) {
	t.Helper()
	l := apitest.New(t, opts...)
	srv, _ := apitest.Serve(t, l)
	return client.New(srv.URL), l
}

func TestRoundTrip(t *testing.T) {
	c, l := newClient(t)
	ctx := context.Background()
	if err := c.Server().Health(ctx); err != nil {
		t.Fatal(err)
	}
	tmpl, err := c.Templates().Import(ctx, wire.TemplateRequest{Name: "tmpl", Disks: []string{l.Image(t, "a.qcow2", 1<<30)}, CPUs: 2})
	if err != nil || tmpl.Name != "tmpl" || tmpl.CPUs != 2 || len(tmpl.Disks) != 1 {
		t.Fatalf("ImportTemplate = %+v, %v", tmpl, err)
	}
	if _, err := c.Networks().Create(ctx, wire.NetworkRequest{Name: "lan", Subnet: "10.0.0.0/24", Pools: []string{"10.0.0.10-10.0.0.20"}}); err != nil {
		t.Fatal(err)
	}
	cfg, err := c.Configs().Create(ctx, wire.ConfigRequest{Name: "web", VMs: []wire.VMRequest{{Name: "vm1", Template: "tmpl", Network: "lan"}}})
	if err != nil || len(cfg.VMs) != 1 || len(cfg.VMs[0].NICs) != 1 {
		t.Fatalf("CreateConfig = %+v, %v", cfg, err)
	}
	linked, err := c.Configs().LinkedClone(ctx, "web", wire.CloneRequest{Name: "web-2"})
	if err != nil || linked.Name != "web-2" || linked.VMs[0].NICs[0].IP != cfg.VMs[0].NICs[0].IP {
		t.Fatalf("LinkedClone = %+v, %v", linked, err)
	}
	chain, err := c.VMs().DiskChain(ctx, "web-2", "vm1", 0)
	// web's top layer holds no data, so the clone's delta sits on the base
	// directly (the lab freezes a layer only when it holds data).
	if err != nil || len(chain) != 2 || chain[0].Path != linked.VMs[0].Disks[0].Path || chain[0].Frozen || !chain[1].Frozen {
		t.Fatalf("DiskChain = %+v, %v", chain, err)
	}
	n, err := c.Networks().Get(ctx, "lan")
	if err != nil || len(n.Usage) != 1 || len(n.Usage[0].Holders) != 2 {
		t.Fatalf("GetNetwork = %+v, %v", n, err)
	}
	changed, err := c.Configs().ChangeIPs(ctx, "web-2")
	if err != nil || changed.VMs[0].NICs[0].IP == cfg.VMs[0].NICs[0].IP {
		t.Fatalf("ChangeIPs = %+v, %v", changed, err)
	}
	set, err := c.VMs().SetIP(ctx, "web-2", "vm1", 0, wire.SetIPRequest{IP: "10.0.0.99"})
	if err != nil || set.VMs[0].NICs[0].IPMode != "manual" {
		t.Fatalf("SetIP = %+v, %v", set, err)
	}

	job, err := c.Configs().StartFullClone(ctx, "web", wire.CloneRequest{Name: "web-full"})
	if err != nil || job.Kind != "full-clone" {
		t.Fatalf("StartFullClone = %+v, %v", job, err)
	}
	job, err = c.Jobs().Wait(ctx, job.ID, 10*time.Second)
	if err != nil || job.State != wire.JobSucceeded {
		t.Fatalf("WaitJob = %+v, %v", job, err)
	}
	if got, err := c.Jobs().Get(ctx, job.ID); err != nil || got.State != wire.JobSucceeded {
		t.Fatalf("GetJob = %+v, %v", got, err)
	}
	if js, err := c.Jobs().List(ctx); err != nil || len(js) != 1 {
		t.Fatalf("ListJobs = %+v, %v", js, err)
	}
	if cs, err := c.Configs().List(ctx); err != nil || len(cs) != 3 {
		t.Fatalf("ListConfigs = %d, %v", len(cs), err)
	}

	l.Disks.Hold()
	job, err = c.VMs().StartConsolidate(ctx, "web", "vm1", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Jobs().Cancel(ctx, job.ID); err != nil {
		t.Fatal(err)
	}
	if job, err = c.Jobs().Wait(ctx, job.ID, 10*time.Second); err != nil || job.State != wire.JobCanceled {
		t.Fatalf("cancelled job = %+v, %v", job, err)
	}

	if rep, err := c.Server().Doctor(ctx, true); err != nil || rep.Problems == nil {
		t.Fatalf("Doctor = %+v, %v", rep, err)
	}
	for _, del := range []func() error{
		func() error { return c.Configs().Delete(ctx, "web-full") },
		func() error { return c.Configs().Delete(ctx, "web-2") },
		func() error { return c.Configs().Delete(ctx, "web") },
		func() error { return c.Networks().Delete(ctx, "lan") },
		func() error { return c.Templates().Delete(ctx, "tmpl") },
	} {
		if err := del(); err != nil {
			t.Fatal(err)
		}
	}
	if ts, err := c.Templates().List(ctx); err != nil || len(ts) != 0 {
		t.Fatalf("ListTemplates = %+v, %v", ts, err)
	}
}

func TestErrorsKeepTheirKind(t *testing.T) {
	c, l := newClient(t)
	ctx := context.Background()

	_, err := c.Configs().Get(ctx, "nope")
	if !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("GetConfig(nope) = %v, want not found", err)
	}
	if err.Error() != `configuration "nope" not found` {
		t.Errorf("message = %q, want the server's", err.Error())
	}
	var apiErr *client.Error
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusNotFound {
		t.Errorf("err = %#v", err)
	}

	// Kinds a healthy lab does not give on a list: a stub injects them.
	failing := func(err error) *client.Client {
		srv, _ := apitest.Serve(t, &apitest.Failing{Lab: l, Method: "ListConfigs", Err: err})
		return client.New(srv.URL)
	}
	for _, kind := range []error{errdefs.ErrConflict, errdefs.ErrInvalid, errdefs.ErrUnavailable, errdefs.ErrCanceled} {
		_, err := failing(kind).Configs().List(ctx)
		if !errors.Is(err, kind) {
			t.Errorf("kind %v: got %v", kind, err)
		}
		for _, other := range []error{errdefs.ErrNotFound, errdefs.ErrConflict, errdefs.ErrInvalid, errdefs.ErrUnavailable, errdefs.ErrCanceled} {
			if other != kind && errors.Is(err, other) {
				t.Errorf("kind %v: also Is %v", kind, other)
			}
		}
	}
	if _, err := failing(errors.New("boom")).Configs().List(ctx); err == nil || errdefs.Kind(err) != nil || err.Error() != "boom" {
		t.Errorf("internal error = %v (kind %v)", err, errdefs.Kind(err))
	}
}

func TestErrorWithoutJSONBody(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "upstream down\nmore", http.StatusBadGateway)
	}))
	t.Cleanup(srv.Close)
	_, err := client.New(srv.URL).Configs().Get(context.Background(), "web")
	if !errors.Is(err, errdefs.ErrUnavailable) || err.Error() != "server answered 502 Bad Gateway: upstream down" {
		t.Fatalf("err = %v", err)
	}
}

func TestUnreachableServerIsUnavailable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c := client.New(addr) // bare host:port means http
	if c.BaseURL() != "http://"+addr {
		t.Errorf("BaseURL = %q", c.BaseURL())
	}
	_, err = c.Configs().List(context.Background())
	if !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("err = %v, want unavailable", err)
	}
}

func TestNamesAreEscaped(t *testing.T) {
	var got string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.URL.EscapedPath()
		w.Write([]byte(`{}`))
	}))
	t.Cleanup(srv.Close)
	client.New(srv.URL+"/").Configs().Get(context.Background(), "a/b c")
	if got != "/api/v1/configs/a%2Fb%20c" {
		t.Errorf("path = %q", got)
	}
}
