// Package deliver POSTs events to the function and computes retry backoff.
package deliver

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"time"
)

// Header names every POST carries (docs/runtimes.md): the trigger and an id that stays the
// same across redeliveries of one event, so a handler can drop duplicates.
const (
	HeaderTrigger = "X-Skipper-Trigger"
	HeaderEventID = "X-Skipper-Event-Id"
	HeaderAttempt = "X-Skipper-Attempt"
)

// Event is one unit of work for the function.
type Event struct {
	ID      string
	Trigger string
	Body    []byte
	Attempt int // 1 for the first delivery
}

// Client posts events to one target URL.
type Client struct {
	URL     string
	Timeout time.Duration
	http    *http.Client
}

// NewClient returns a client with a connection pool sized for concurrency parallel POSTs.
func NewClient(url string, timeout time.Duration, concurrency int) *Client {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        concurrency * 2,
		MaxIdleConnsPerHost: concurrency * 2,
		IdleConnTimeout:     90 * time.Second,
		// One connection per delivery in flight: Go's 4 KiB buffers each way add up.
		// Headers and typical event bodies fit in 2 KiB; larger bodies are written
		// straight through.
		ReadBufferSize:  2 << 10,
		WriteBufferSize: 2 << 10,
	}
	return &Client{URL: url, Timeout: timeout, http: &http.Client{Transport: tr}}
}

// StatusError is a non-2xx answer.
type StatusError struct {
	Code int
	Body string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("function answered %d: %s", e.Code, e.Body)
}

// Post delivers ev once; nil means the function answered 2xx. Refused connections,
// timeouts and non-2xx are all errors the caller retries.
func (c *Client) Post(ctx context.Context, ev Event) error {
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL, bytes.NewReader(ev.Body))
	if err != nil {
		return fmt.Errorf("build request to %s: %w", c.URL, err)
	}
	ct := "application/octet-stream"
	if json.Valid(ev.Body) {
		ct = "application/json"
	}
	req.Header.Set("Content-Type", ct)
	req.Header.Set(HeaderTrigger, ev.Trigger)
	req.Header.Set(HeaderEventID, ev.ID)
	req.Header.Set(HeaderAttempt, strconv.Itoa(ev.Attempt))
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("post event %s: %w", ev.ID, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) // reuse the connection
		return &StatusError{Code: resp.StatusCode, Body: string(snippet)}
	}
	// Drained without a buffer of our own: io.Discard reads into a shared one.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) // reuse the connection
	return nil
}

// Backoff is exponential backoff with jitter.
type Backoff struct {
	Base, Max time.Duration
}

// Delay before attempt n+1 after n failures (n >= 1): base*2^(n-1) capped at Max, then
// drawn uniformly from its upper half so replicas that failed together spread out.
func (b Backoff) Delay(n int) time.Duration {
	d := b.Base
	for i := 1; i < n && d < b.Max; i++ {
		d *= 2
	}
	d = min(d, b.Max)
	if d <= 1 {
		return d
	}
	half := d / 2
	return half + rand.N(d-half+1)
}
