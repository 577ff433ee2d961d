// Package miniosource turns MinIO bucket notifications into function events. MinIO's
// notify_redis target (format access) appends each notification to a Redis list; the
// poller consumes that list like the redis trigger and decodes every entry here into one
// event per object put or delete. See docs/design.md for why this route.
package miniosource

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"

	"github.com/getkipper/skipper/poller/deliver"
)

// Trigger is the X-Skipper-Trigger of MinIO events.
const Trigger = "minio"

// record is the part of an S3 event record the poller reads; the whole record is passed on.
type record struct {
	EventName string `json:"eventName"`
	EventTime string `json:"eventTime"`
	S3        struct {
		Bucket struct {
			Name string `json:"name"`
		} `json:"bucket"`
		Object struct {
			Key         string `json:"key"`
			Size        int64  `json:"size"`
			ETag        string `json:"eTag"`
			ContentType string `json:"contentType"`
			VersionID   string `json:"versionId"`
			Sequencer   string `json:"sequencer"`
		} `json:"object"`
	} `json:"s3"`
}

// Event is the body the function receives for one object change.
type Event struct {
	Type        string          `json:"type"` // put or delete
	EventName   string          `json:"eventName"`
	Bucket      string          `json:"bucket"`
	Key         string          `json:"key"`
	Size        int64           `json:"size,omitempty"`
	ETag        string          `json:"eTag,omitempty"`
	ContentType string          `json:"contentType,omitempty"`
	VersionID   string          `json:"versionId,omitempty"`
	Sequencer   string          `json:"sequencer,omitempty"`
	EventTime   string          `json:"eventTime,omitempty"`
	Record      json.RawMessage `json:"record"`
}

// entry is one element of the Redis list in access format: {"Event": [records], "EventTime": t}.
// MinIO pushes a JSON array of entries; a bare entry or an S3 {"Records": [...]} is accepted too.
type entry struct {
	Event   []json.RawMessage `json:"Event"`
	Records []json.RawMessage `json:"Records"`
}

// Decoder decodes list items for one bucket.
type Decoder struct {
	Bucket string
}

// Decode returns one event per object put or delete in the item. Other event kinds are
// dropped; a record of another bucket is an error so it lands in the dead list, not lost.
func (d Decoder) Decode(item string) ([]deliver.Event, error) {
	raw := []byte(strings.TrimSpace(item))
	var entries []entry
	if len(raw) > 0 && raw[0] == '[' {
		if err := json.Unmarshal(raw, &entries); err != nil {
			return nil, fmt.Errorf("decode MinIO notification (want the notify_redis access format): %w", err)
		}
	} else {
		var e entry
		if err := json.Unmarshal(raw, &e); err != nil {
			return nil, fmt.Errorf("decode MinIO notification (want the notify_redis access format): %w", err)
		}
		entries = []entry{e}
	}
	var out []deliver.Event
	for _, e := range entries {
		for _, rr := range append(e.Event, e.Records...) {
			var r record
			if err := json.Unmarshal(rr, &r); err != nil {
				return nil, fmt.Errorf("decode MinIO event record: %w", err)
			}
			typ := ""
			switch {
			case strings.HasPrefix(r.EventName, "s3:ObjectCreated:"):
				typ = "put"
			case strings.HasPrefix(r.EventName, "s3:ObjectRemoved:"):
				typ = "delete"
			default:
				continue
			}
			if d.Bucket != "" && r.S3.Bucket.Name != d.Bucket {
				return nil, fmt.Errorf("MinIO event for bucket %q reached the list of bucket %q: give each bucket its own notify_redis target and key", r.S3.Bucket.Name, d.Bucket)
			}
			key := r.S3.Object.Key
			if k, err := url.QueryUnescape(key); err == nil {
				key = k // S3 event keys are URL-encoded
			}
			ev := Event{
				Type: typ, EventName: r.EventName, Bucket: r.S3.Bucket.Name, Key: key,
				Size: r.S3.Object.Size, ETag: r.S3.Object.ETag, ContentType: r.S3.Object.ContentType,
				VersionID: r.S3.Object.VersionID, Sequencer: r.S3.Object.Sequencer,
				EventTime: r.EventTime, Record: rr,
			}
			body, err := json.Marshal(ev)
			if err != nil {
				return nil, fmt.Errorf("encode MinIO event: %w", err)
			}
			out = append(out, deliver.Event{ID: eventID(ev), Trigger: Trigger, Body: body})
		}
	}
	return out, nil
}

// eventID is stable for one change of one object: the sequencer orders changes per key.
func eventID(e Event) string {
	sum := sha256.Sum256([]byte(strings.Join([]string{e.Bucket, e.Key, e.EventName, e.VersionID, e.Sequencer, e.EventTime}, "\x00")))
	return hex.EncodeToString(sum[:16])
}
