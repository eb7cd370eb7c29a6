package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
)

// promJob is one scrape job of the Prometheus under test, aimed at a
// proxy's metrics listener over https.
type promJob struct {
	name   string
	target string // host:port
	// clientCert makes Prometheus present the test client certificate.
	clientCert bool
}

// prometheusConfig returns a prometheus.yml that scrapes every job once a
// second. Every job trusts the test CA; only some present a certificate.
func prometheusConfig(k pki, jobs []promJob) string {
	var b strings.Builder
	// scrape_timeout may not exceed scrape_interval.
	b.WriteString("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n")
	b.WriteString("scrape_configs:\n")
	for _, j := range jobs {
		fmt.Fprintf(&b, "  - job_name: %q\n    scheme: https\n", j.name)
		fmt.Fprintf(&b, "    tls_config:\n      ca_file: %q\n", k.ca)
		if j.clientCert {
			fmt.Fprintf(&b, "      cert_file: %q\n      key_file: %q\n", k.clientCert, k.clientKey)
		}
		fmt.Fprintf(&b, "    static_configs:\n      - targets: [%q]\n", j.target)
	}
	return b.String()
}

// startPrometheus runs a Prometheus server with its own storage, bound to
// a port of the kernel's choosing on 127.0.0.1, and returns a client for
// its HTTP API once it is ready.
func startPrometheus(t testing.TB, bin string, k pki, jobs []promJob) *promAPI {
	t.Helper()
	cfg := writeFile(t, "prometheus.yml", prometheusConfig(k, jobs))
	_, addr := startExporterToolkitProgram(t, "prometheus", bin,
		"--config.file="+cfg,
		"--storage.tsdb.path="+filepath.Join(t.TempDir(), "tsdb"),
	)

	api := &promAPI{base: "http://" + addr, c: plainClient(t)}
	eventually(t, waitTimeout, "Prometheus ready", func() error {
		resp, err := api.c.Get(api.base + "/-/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/-/ready answered %s", resp.Status)
		}
		return nil
	})
	return api
}

// promAPI is a client for the Prometheus HTTP API.
type promAPI struct {
	base string
	c    *http.Client
}

// promTarget is an active target as /api/v1/targets describes it.
type promTarget struct {
	Labels    map[string]string `json:"labels"`
	ScrapeURL string            `json:"scrapeUrl"`
	Health    string            `json:"health"`
	LastError string            `json:"lastError"`
}

// promSample is an instant vector element from /api/v1/query.
type promSample struct {
	Metric map[string]string `json:"metric"`
	// Value is [unix time, value as a string].
	Value [2]any `json:"value"`
}

// value returns the sample's value as Prometheus formatted it.
func (s promSample) value() string {
	v, _ := s.Value[1].(string)
	return v
}

// get calls an API endpoint and decodes the data of a successful answer.
func (a *promAPI) get(path string, q url.Values, data any) error {
	resp, err := a.c.Get(a.base + path + "?" + q.Encode())
	if err != nil {
		return err
	}
	defer resp.Body.Close()

	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	var env struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return fmt.Errorf("decoding %s (%s): %w", path, resp.Status, err)
	}
	if env.Status != "success" {
		return fmt.Errorf("%s: status %q: %s", path, env.Status, env.Error)
	}
	return json.Unmarshal(env.Data, data)
}

// target returns the active target of job.
func (a *promAPI) target(job string) (promTarget, error) {
	var data struct {
		Active []promTarget `json:"activeTargets"`
	}
	if err := a.get("/api/v1/targets", url.Values{"state": {"active"}}, &data); err != nil {
		return promTarget{}, err
	}
	for _, tg := range data.Active {
		if tg.Labels["job"] == job {
			return tg, nil
		}
	}
	return promTarget{}, fmt.Errorf("no active target for job %q among %d", job, len(data.Active))
}

// query runs an instant query that must yield a vector.
func (a *promAPI) query(q string) ([]promSample, error) {
	var data struct {
		ResultType string       `json:"resultType"`
		Result     []promSample `json:"result"`
	}
	if err := a.get("/api/v1/query", url.Values{"query": {q}}, &data); err != nil {
		return nil, err
	}
	if data.ResultType != "vector" {
		return nil, fmt.Errorf("query %s: result type %q, want vector", q, data.ResultType)
	}
	return data.Result, nil
}

// waitTarget waits until job's target passes check, and returns it.
func (a *promAPI) waitTarget(t testing.TB, job string, check func(promTarget) error) promTarget {
	t.Helper()
	var last promTarget
	eventually(t, waitTimeout, "target of job "+job, func() error {
		tg, err := a.target(job)
		if err != nil {
			return err
		}
		last = tg
		return check(tg)
	})
	return last
}

// waitQuery waits until query yields exactly one sample, and returns it.
func (a *promAPI) waitQuery(t testing.TB, query string) promSample {
	t.Helper()
	var got promSample
	eventually(t, waitTimeout, "a sample for "+query, func() error {
		res, err := a.query(query)
		if err != nil {
			return err
		}
		if len(res) != 1 {
			return fmt.Errorf("%d samples: %v", len(res), res)
		}
		got = res[0]
		return nil
	})
	return got
}
