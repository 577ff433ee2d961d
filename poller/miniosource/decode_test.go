package miniosource

import (
	"encoding/json"
	"strings"
	"testing"
)

func rec(name, bucket, key, seq string) string {
	return `{"eventVersion":"2.0","eventSource":"minio:s3","eventTime":"2026-11-25T14:08:49.804Z","eventName":"` + name +
		`","s3":{"bucket":{"name":"` + bucket + `"},"object":{"key":"` + key + `","size":5,"eTag":"e","sequencer":"` + seq + `"}}}`
}

func TestDecode(t *testing.T) {
	d := Decoder{Bucket: "up"}
	cases := map[string]struct {
		item string
		want []string // type bucket/key
		err  string
	}{
		"access format put": {item: `[{"Event":[` + rec("s3:ObjectCreated:Put", "up", "a.txt", "1") + `],"EventTime":"t"}]`, want: []string{"put up/a.txt"}},
		"delete":            {item: `[{"Event":[` + rec("s3:ObjectRemoved:Delete", "up", "a.txt", "2") + `],"EventTime":"t"}]`, want: []string{"delete up/a.txt"}},
		"url-encoded key":   {item: `[{"Event":[` + rec("s3:ObjectCreated:Put", "up", "dir%2Fb+c.txt", "3") + `]}]`, want: []string{"put up/dir/b c.txt"}},
		"several records":   {item: `[{"Event":[` + rec("s3:ObjectCreated:Put", "up", "a", "1") + `,` + rec("s3:ObjectCreated:Copy", "up", "b", "2") + `]}]`, want: []string{"put up/a", "put up/b"}},
		"bare entry":        {item: `{"Event":[` + rec("s3:ObjectCreated:Put", "up", "a", "1") + `]}`, want: []string{"put up/a"}},
		"s3 records":        {item: `{"Records":[` + rec("s3:ObjectRemoved:DeleteMarkerCreated", "up", "a", "1") + `]}`, want: []string{"delete up/a"}},
		"other kinds drop":  {item: `[{"Event":[` + rec("s3:ObjectAccessed:Get", "up", "a", "1") + `]}]`, want: nil},
		"other bucket":      {item: `[{"Event":[` + rec("s3:ObjectCreated:Put", "other", "a", "1") + `]}]`, err: `MinIO event for bucket "other" reached the list of bucket "up"`},
		"not json":          {item: `hello`, err: "decode MinIO notification"},
		"bad record":        {item: `[{"Event":[42]}]`, err: "decode MinIO event record"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			evs, err := d.Decode(tc.item)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, ev := range evs {
				var e Event
				if err := json.Unmarshal(ev.Body, &e); err != nil {
					t.Fatal(err)
				}
				if ev.Trigger != Trigger || len(ev.ID) != 32 || len(e.Record) == 0 {
					t.Fatalf("event %+v", ev)
				}
				got = append(got, e.Type+" "+e.Bucket+"/"+e.Key)
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestEventIDStable(t *testing.T) {
	item := `[{"Event":[` + rec("s3:ObjectCreated:Put", "up", "a", "17") + `]}]`
	a, _ := Decoder{Bucket: "up"}.Decode(item)
	b, _ := Decoder{Bucket: "up"}.Decode(item)
	c, _ := Decoder{Bucket: "up"}.Decode(strings.Replace(item, `"17"`, `"18"`, 1))
	if a[0].ID != b[0].ID || a[0].ID == c[0].ID {
		t.Fatalf("ids %s %s %s: same change must share an id, another change must not", a[0].ID, b[0].ID, c[0].ID)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(`[{"Event":[` + rec("s3:ObjectCreated:Put", "up", "a", "1") + `]}]`)
	f.Add(`{"Records":[]}`)
	f.Add(`[`)
	f.Fuzz(func(t *testing.T, item string) {
		evs, err := Decoder{Bucket: "up"}.Decode(item)
		if err != nil {
			return
		}
		for _, ev := range evs {
			if !json.Valid(ev.Body) {
				t.Fatalf("invalid body %s", ev.Body)
			}
		}
	})
}
