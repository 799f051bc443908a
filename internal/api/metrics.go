package api

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"stagehand/internal/api/wire"
	"stagehand/internal/auth"
	"stagehand/internal/lab"
	"stagehand/internal/metrics"
	"stagehand/internal/store"
)

// GET /metrics answers the Prometheus text format. It takes metrics.read,
// the system administrator's alone: the series count every workspace and
// carry the names of configurations, networks and VMs as labels, which a
// workspace's member may not see. The unix socket's root is a system
// administrator, so a local scraper needs no token; a remote one uses a
// system administrator's API token (a dedicated scrape user is one made
// system administrator for that purpose), like any other client, so there
// is no second kind of credential to issue, rotate or leak.
//
// What the lab holds (configurations by state, deployed VMs, pool usage,
// guest CPU) is read at scrape time, from the same lab calls that answer
// `config list` and `network show`, so the numbers cannot drift from
// theirs. What happens (requests, jobs, reaper actions) is counted as it
// happens.

// MetricsSources are the host's measurements the daemon adds to GET
// /metrics. The api does not reach the host itself (deps_test.go); a nil
// member leaves its series out.
type MetricsSources struct {
	// GuestCPU returns the CPU time the QEMU process pid has used
	// (hypervisor.ProcessCPUTime).
	GuestCPU func(pid int) (time.Duration, error)
	// LayerBytes returns the bytes the layer files take on the host,
	// cheaply (metrics.DirBytes caches its sum).
	LayerBytes func() (int64, error)
}

// SetMetricsSources gives GET /metrics the host's measurements. Call it
// before serving.
func (h *Handler) SetMetricsSources(s MetricsSources) { h.metrics.sources = s }

// metricsHandler serves GET /metrics and times every request of the API.
type metricsHandler struct {
	*env
	configs  Configs
	networks Networks
	sources  MetricsSources

	requests *prometheus.HistogramVec
	// process are the collectors shared by every scrape: the request
	// histogram, the packages' recorders, and the Go runtime's and the
	// process's own.
	process []prometheus.Collector
}

func newMetricsHandler(e *env, l Lab) *metricsHandler {
	m := &metricsHandler{env: e, configs: l.Configs, networks: l.Networks}
	m.requests = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: metrics.Namespace,
		Name:      "http_request_duration_seconds",
		Help:      "Duration of HTTP requests by route (the ServeMux pattern, \"METHOD /path/{param}\"; \"unmatched\" for none) and status. Console and stream routes last as long as their session.",
		Buckets:   []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
	}, []string{"route", "status"})
	m.process = append([]prometheus.Collector{m.requests,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})},
		metrics.Recorded()...)
	return m
}

func (m *metricsHandler) register(r *router) {
	r.route("GET /metrics", auth.MetricsRead, noObject, m.serve)
}

// observe records one request: route is the pattern the mux chose.
func (m *metricsHandler) observe(route string, status int, took time.Duration) {
	if route == "" {
		route = "unmatched" // raw paths would make a series per URL
	}
	if status == 0 {
		status = http.StatusOK // a handler that wrote nothing answered 200
	}
	m.requests.WithLabelValues(route, strconv.Itoa(status)).Observe(took.Seconds())
}

// serve gathers a registry made for this scrape: the lab's series are
// read with the request's context (and so its caller and cancellation).
func (m *metricsHandler) serve(w http.ResponseWriter, r *http.Request) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(m.process...)
	reg.MustRegister(&labCollector{ctx: r.Context(), m: m})
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(m.log.Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError, // one failed source must not hide the rest
	}).ServeHTTP(w, r)
	return nil
}

var (
	descConfigs = prometheus.NewDesc(metrics.Namespace+"_configurations",
		"Configurations (library entries not counted) by state, as `config list` shows them.", []string{"state"}, nil)
	descDeployedVMs = prometheus.NewDesc(metrics.Namespace+"_deployed_vms",
		"VMs of the configurations in state deployed.", nil, nil)
	descPool = prometheus.NewDesc(metrics.Namespace+"_network_pool_addresses",
		"Addresses of each network's pools by use: free, held (a NIC's own) or external (a fence's outside address), as `network show` counts them.", []string{"network", "use"}, nil)
	descLayerBytes = prometheus.NewDesc(metrics.Namespace+"_layer_bytes",
		"Bytes the qcow2 layer files take on the host (allocated, not virtual), summed at most every 30 s.", nil, nil)
	descGuestCPU = prometheus.NewDesc(metrics.Namespace+"_guest_cpu_seconds_total",
		"CPU time used by each running VM's QEMU process (user + system).", []string{"config", "vm"}, nil)
)

// configStates are the states a configuration may be in: each is exported,
// zero or not, so an alert on one does not see a missing series.
var configStates = []string{store.StateUndeployed, store.StateDeploying, store.StateDeployed, store.StateUndeploying, store.StateFailed}

// labCollector reads the lab's gauges for one scrape.
type labCollector struct {
	ctx context.Context
	m   *metricsHandler
}

func (c *labCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descConfigs, descDeployedVMs, descPool, descLayerBytes, descGuestCPU} {
		ch <- d
	}
}

func (c *labCollector) Collect(ch chan<- prometheus.Metric) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); c.collectConfigs(ch) }()
	go func() { defer wg.Done(); c.collectNetworks(ch) }()
	if f := c.m.sources.LayerBytes; f != nil {
		if n, err := f(); err != nil {
			ch <- prometheus.NewInvalidMetric(descLayerBytes, err)
		} else {
			ch <- prometheus.MustNewConstMetric(descLayerBytes, prometheus.GaugeValue, float64(n))
		}
	}
	wg.Wait()
}

func (c *labCollector) collectConfigs(ch chan<- prometheus.Metric) {
	cs, err := c.m.configs.ListIn(c.ctx, "")
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descConfigs, err)
		return
	}
	byState := map[string]int{}
	for _, s := range configStates {
		byState[s] = 0
	}
	deployed := 0
	for _, cfg := range cs {
		byState[cfg.State]++
		if cfg.State == store.StateDeployed {
			deployed += len(cfg.VMs)
		}
		c.collectGuestCPU(ch, &cfg)
	}
	for _, s := range sortedKeys(byState) {
		ch <- prometheus.MustNewConstMetric(descConfigs, prometheus.GaugeValue, float64(byState[s]), s)
	}
	ch <- prometheus.MustNewConstMetric(descDeployedVMs, prometheus.GaugeValue, float64(deployed))
}

// collectGuestCPU reports the CPU time of each VM of cfg that has a QEMU
// process. A process that ended since the list was read is skipped.
func (c *labCollector) collectGuestCPU(ch chan<- prometheus.Metric, cfg *lab.ConfigView) {
	f := c.m.sources.GuestCPU
	if f == nil {
		return
	}
	for _, vm := range cfg.VMs {
		if vm.PID <= 0 {
			continue
		}
		d, err := f(vm.PID)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			continue
		case err != nil:
			ch <- prometheus.NewInvalidMetric(descGuestCPU, err)
			continue
		}
		ch <- prometheus.MustNewConstMetric(descGuestCPU, prometheus.CounterValue, d.Seconds(), cfg.Name, vm.Name)
	}
}

func (c *labCollector) collectNetworks(ch chan<- prometheus.Metric) {
	ns, err := c.m.networks.ListIn(c.ctx, "")
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descPool, err)
		return
	}
	for _, n := range ns {
		held, external := 0, 0
		for _, u := range n.Usage {
			switch {
			case !u.InPool:
			case u.Kind == wire.IPExternal:
				external++
			default:
				held++
			}
		}
		for use, v := range map[string]int{"free": n.PoolSize - n.PoolUsed, "held": held, "external": external} {
			ch <- prometheus.MustNewConstMetric(descPool, prometheus.GaugeValue, float64(v), n.Name, use)
		}
	}
}

func sortedKeys(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
