package skipper

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// DefaultLokiSince is how far back history goes without --since.
const DefaultLokiSince = 24 * time.Hour

// DefaultLokiSelector finds a Deployment's pods by the labels that common Kubernetes log
// shippers (Promtail, Grafana Alloy) set: namespace and pod. {namespace} and {name} are
// replaced; pods of Deployment NAME are named NAME-<hash>-<suffix>.
const DefaultLokiSelector = `{namespace="{namespace}", pod=~"{name}-[a-z0-9]+-[a-z0-9]+"}`

// lokiMaxLines caps a history query without --tail (Loki's default max_entries_limit_per_query).
const lokiMaxLines = 5000

// LokiConfig says where function logs are kept.
type LokiConfig struct {
	URL      string `json:"url,omitempty"`
	Selector string `json:"selector,omitempty"` // LogQL stream selector template
	OrgID    string `json:"orgID,omitempty"`    // X-Scope-OrgID for multi-tenant Loki
}

// LokiEntry is one log line read back from Loki.
type LokiEntry struct {
	Time   time.Time
	Labels map[string]string
	Line   string
}

// LokiQuery builds the LogQL query for a function's logs.
func LokiQuery(cfg LokiConfig, namespace, name, container string) string {
	sel := cfg.Selector
	if sel == "" {
		sel = DefaultLokiSelector
	}
	sel = strings.NewReplacer("{namespace}", namespace, "{name}", name).Replace(sel)
	if container != "" {
		sel = strings.TrimSuffix(strings.TrimSpace(sel), "}") + fmt.Sprintf(", container=%q}", container)
	}
	return sel
}

// QueryRange runs a LogQL query over [start, end] and returns the newest limit entries in
// time order.
func QueryRange(ctx context.Context, hc *http.Client, cfg LokiConfig, query string, start, end time.Time, limit int) ([]LokiEntry, error) {
	base, err := url.Parse(strings.TrimRight(cfg.URL, "/"))
	if err != nil || base.Scheme == "" || base.Host == "" {
		return nil, &InputError{Field: "--loki-url", Value: cfg.URL, Fix: "use the Loki base URL, e.g. http://loki.monitoring:3100"}
	}
	q := url.Values{}
	q.Set("query", query)
	q.Set("start", strconv.FormatInt(start.UnixNano(), 10))
	q.Set("end", strconv.FormatInt(end.UnixNano(), 10))
	q.Set("limit", strconv.Itoa(limit))
	// backward + limit returns the newest lines, as --tail expects; they are re-sorted below.
	q.Set("direction", "backward")
	u := base.JoinPath("/loki/api/v1/query_range")
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("loki query: %w", err)
	}
	if cfg.OrgID != "" {
		req.Header.Set("X-Scope-OrgID", cfg.OrgID)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("query Loki at %s: %w", cfg.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("read Loki response: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("query Loki at %s: %s: %s", cfg.URL, resp.Status, strings.TrimSpace(string(body)))
	}
	return ParseQueryRange(body)
}

// ParseQueryRange decodes a query_range response of resultType streams into entries sorted
// by time (ties keep stream order).
func ParseQueryRange(body []byte) ([]LokiEntry, error) {
	var r struct {
		Status string `json:"status"`
		Data   struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Stream map[string]string `json:"stream"`
				Values [][]string        `json:"values"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("decode Loki response: %w", err)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("loki query failed: status %q", r.Status)
	}
	if r.Data.ResultType != "streams" {
		return nil, fmt.Errorf("loki returned %q results, want streams: use a log query, not a metric query", r.Data.ResultType)
	}
	var out []LokiEntry
	for _, s := range r.Data.Result {
		for _, v := range s.Values {
			if len(v) < 2 {
				return nil, fmt.Errorf("decode Loki response: value with %d fields, want timestamp and line", len(v))
			}
			ns, err := strconv.ParseInt(v[0], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("decode Loki response: timestamp %q: %w", v[0], err)
			}
			out = append(out, LokiEntry{Time: time.Unix(0, ns), Labels: s.Stream, Line: v[1]})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out, nil
}

func (c *Client) lokiHistory(ctx context.Context, namespace, name string, o LogOptions, out io.Writer) error {
	since := o.Since
	if since <= 0 {
		since = DefaultLokiSince
	}
	end := c.now()
	limit := lokiMaxLines
	if o.Tail >= 0 {
		if o.Tail == 0 {
			return nil
		}
		limit = int(min(o.Tail, lokiMaxLines))
	}
	hc := &http.Client{Timeout: 30 * time.Second}
	entries, err := QueryRange(ctx, hc, o.Loki, LokiQuery(o.Loki, namespace, name, o.Container), end.Add(-since), end, limit)
	if err != nil {
		return err
	}
	lw := &lineWriter{out: out}
	for _, e := range entries {
		pod, ctr := e.Labels["pod"], e.Labels["container"]
		if pod == "" {
			pod = name
		}
		if ctr == "" {
			ctr = "-"
		}
		lw.write(Prefix(pod, ctr), strings.TrimRight(e.Line, "\n"))
	}
	return nil
}
