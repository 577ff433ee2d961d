package miniosource

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// The poller needs two S3 calls (read and write a bucket's notification configuration), so
// it signs them itself instead of linking an S3 SDK: that SDK was a fifth of the sidecar's
// binary and resident memory.

const (
	eventCreatedAll = "s3:ObjectCreated:*"
	eventRemovedAll = "s3:ObjectRemoved:*"
	s3Namespace     = "http://s3.amazonaws.com/doc/2006-03-01/"
	defaultRegion   = "us-east-1" // MinIO's unless the server sets another
	maxResponse     = 1 << 20     // a notification configuration is a few KiB
)

// notificationConfig is an S3 NotificationConfiguration. Queue configurations are decoded;
// topic and Lambda configurations (and anything newer) are kept verbatim so that writing
// the configuration back does not drop them.
type notificationConfig struct {
	XMLName xml.Name      `xml:"NotificationConfiguration"`
	Queues  []queueConfig `xml:"QueueConfiguration"`
	Other   []rawElement  `xml:",any"`
}

type queueConfig struct {
	ID     string    `xml:"Id,omitempty"`
	Queue  string    `xml:"Queue"`
	Events []string  `xml:"Event"`
	Filter *s3Filter `xml:"Filter,omitempty"`
}

type s3Filter struct {
	S3Key struct {
		Rules []filterRule `xml:"FilterRule"`
	} `xml:"S3Key"`
}

type filterRule struct {
	Name  string `xml:"Name"`
	Value string `xml:"Value"`
}

type rawElement struct {
	XMLName xml.Name
	Inner   []byte `xml:",innerxml"`
}

// EnsureNotification makes the bucket send object puts and deletes to the notify_redis
// target arn (arn:minio:sqs::<ID>:redis). It is idempotent: an existing matching queue
// configuration is left alone.
func EnsureNotification(ctx context.Context, endpoint, accessKey, secretKey, bucket, arn string) error {
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return fmt.Errorf("SKIPPER_SOURCE_URL=%q is not a MinIO endpoint: use http://host:port", endpoint)
	}
	if err := checkARN(arn); err != nil {
		return fmt.Errorf("SKIPPER_MINIO_ARN=%q: %w (use arn:minio:sqs::<ID>:redis)", arn, err)
	}
	c := &s3Client{scheme: u.Scheme, host: u.Host, creds: credentials{accessKey, secretKey}, region: defaultRegion, http: &http.Client{}}
	defer c.http.CloseIdleConnections()
	body, err := c.do(ctx, http.MethodGet, bucket, nil)
	if err != nil {
		return fmt.Errorf("read notification config of bucket %s: %w", bucket, err)
	}
	var cfg notificationConfig
	if err := xml.Unmarshal(body, &cfg); err != nil {
		return fmt.Errorf("read notification config of bucket %s: MinIO's answer is not a NotificationConfiguration: %w", bucket, err)
	}
	if hasQueue(cfg, arn) {
		return nil
	}
	cfg.Queues = append(cfg.Queues, queueConfig{Queue: arn, Events: []string{eventCreatedAll, eventRemovedAll}})
	cfg.XMLName = xml.Name{Space: s3Namespace, Local: "NotificationConfiguration"}
	out, err := xml.Marshal(cfg)
	if err != nil {
		return fmt.Errorf("encode notification config of bucket %s: %w", bucket, err)
	}
	if _, err := c.do(ctx, http.MethodPut, bucket, out); err != nil {
		return fmt.Errorf("configure bucket %s to notify %s (is MINIO_NOTIFY_REDIS_ENABLE_<ID>=on set on the MinIO server?): %w", bucket, arn, err)
	}
	return nil
}

// checkARN accepts arn:partition:service:region:account:resource, which is what MinIO
// prints for its targets (arn:minio:sqs::<ID>:redis; the region may be empty).
func checkARN(arn string) error {
	f := strings.Split(arn, ":")
	if len(f) != 6 || f[0] != "arn" || f[1] == "" || f[2] == "" || f[4] == "" || f[5] == "" {
		return errors.New("not an ARN")
	}
	return nil
}

// hasQueue reports whether the bucket already sends all puts and deletes, unfiltered, to arn.
// (MinIO refuses a second, overlapping rule, so adding it again would fail.)
func hasQueue(cfg notificationConfig, arn string) bool {
	created, removed := false, false
	for _, q := range cfg.Queues {
		if q.Queue != arn || (q.Filter != nil && len(q.Filter.S3Key.Rules) > 0) {
			continue
		}
		for _, e := range q.Events {
			switch e {
			case eventCreatedAll:
				created = true
			case eventRemovedAll:
				removed = true
			}
		}
	}
	return created && removed
}

// s3Client sends signed requests to one bucket sub-resource, ?notification.
type s3Client struct {
	scheme, host string
	creds        credentials
	region       string
	http         *http.Client
}

// s3Error is the body of a failed S3 request.
type s3Error struct {
	Code    string `xml:"Code"`
	Message string `xml:"Message"`
	Region  string `xml:"Region"`
}

// do sends method /<bucket>?notification with body and returns the response body of a
// 2xx. A server in another region than the one signed for says so in its error; the
// request is then signed again for that region, once.
func (c *s3Client) do(ctx context.Context, method, bucket string, body []byte) ([]byte, error) {
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, method, c.scheme+"://"+c.host+"/"+uriEncode(bucket, false)+"?notification=", bytes.NewReader(body))
		if err != nil {
			return nil, fmt.Errorf("build request: %w", err)
		}
		if body != nil {
			// S3 asks for Content-MD5 on bucket configuration writes; MinIO checks it when sent.
			sum := md5.Sum(body)
			req.Header.Set("Content-Md5", base64.StdEncoding.EncodeToString(sum[:]))
			req.Header.Set("Content-Type", "application/xml")
		}
		sign(req, body, c.creds, c.region, time.Now())
		resp, err := c.http.Do(req)
		if err != nil {
			return nil, err // already names the method, URL and cause
		}
		data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("%s %s: read response: %w", method, req.URL.Redacted(), err)
		}
		if resp.StatusCode/100 == 2 {
			return data, nil
		}
		var e s3Error
		_ = xml.Unmarshal(data, &e) // not XML: the status alone is reported
		if attempt == 0 && e.Region != "" && e.Region != c.region {
			c.region = e.Region
			continue
		}
		if e.Code == "" {
			return nil, fmt.Errorf("%s %s: %s", method, req.URL.Redacted(), resp.Status)
		}
		return nil, fmt.Errorf("%s %s: %s: %s: %s", method, req.URL.Redacted(), resp.Status, e.Code, e.Message)
	}
}
