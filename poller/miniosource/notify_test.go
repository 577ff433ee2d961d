package miniosource

import (
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// The signing examples of the Amazon S3 API reference ("Signature Calculations for the
// Authorization Header: Transferring Payload in a Single Chunk"): example credentials,
// bucket examplebucket, 2013-05-24T00:00:00Z, region us-east-1.
func TestSignPublishedExamples(t *testing.T) {
	creds := credentials{"AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}
	when := time.Date(2013, 5, 24, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		name, method, url, body string
		headers                 map[string]string
		want                    string
	}{
		{
			name: "GET Object", method: "GET", url: "https://examplebucket.s3.amazonaws.com/test.txt",
			headers: map[string]string{"Range": "bytes=0-9"},
			want: "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request," +
				"SignedHeaders=host;range;x-amz-content-sha256;x-amz-date," +
				"Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
		},
		{
			// A sub-resource without a value, like ?notification.
			name: "GET Bucket Lifecycle", method: "GET", url: "https://examplebucket.s3.amazonaws.com/?lifecycle",
			want: "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request," +
				"SignedHeaders=host;x-amz-content-sha256;x-amz-date," +
				"Signature=fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543",
		},
		{
			name: "GET Bucket (List Objects)", method: "GET", url: "https://examplebucket.s3.amazonaws.com/?max-keys=2&prefix=J",
			want: "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request," +
				"SignedHeaders=host;x-amz-content-sha256;x-amz-date," +
				"Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
		},
		{
			// A body, and a path byte that must be percent-encoded.
			name: "PUT Object", method: "PUT", url: "https://examplebucket.s3.amazonaws.com/test$file.text",
			body:    "Welcome to Amazon S3.",
			headers: map[string]string{"Date": "Fri, 24 May 2013 00:00:00 GMT", "X-Amz-Storage-Class": "REDUCED_REDUNDANCY"},
			want: "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request," +
				"SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class," +
				"Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, err := http.NewRequest(c.method, c.url, strings.NewReader(c.body))
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range c.headers {
				req.Header.Set(k, v)
			}
			sign(req, []byte(c.body), creds, "us-east-1", when)
			if got := req.Header.Get("Authorization"); got != c.want {
				t.Errorf("Authorization:\n got %s\nwant %s", got, c.want)
			}
			if got := req.Header.Get("X-Amz-Date"); got != "20130524T000000Z" {
				t.Errorf("X-Amz-Date = %q", got)
			}
		})
	}
}

// fakeS3 serves one bucket's notification configuration and checks that every request
// carries a signature for the configured key.
type fakeS3 struct {
	mu     sync.Mutex
	config string
	puts   int
	region string // when set, requests signed for another region are refused
}

func (f *fakeS3) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.URL.Path != "/photos" || r.URL.RawQuery != "notification=" {
		http.Error(w, "unexpected "+r.URL.String(), http.StatusBadRequest)
		return
	}
	body, _ := io.ReadAll(r.Body)
	auth := r.Header.Get("Authorization")
	if !strings.HasPrefix(auth, "AWS4-HMAC-SHA256 Credential=minioadmin/") {
		http.Error(w, "unsigned", http.StatusForbidden)
		return
	}
	if err := checkSignature(r, body, "minioadmin"); err != nil {
		http.Error(w, err.Error(), http.StatusForbidden)
		return
	}
	if f.region != "" && !strings.Contains(auth, "/"+f.region+"/s3/aws4_request") {
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>AuthorizationHeaderMalformed</Code>`+
			`<Message>the region is wrong; expecting '`+f.region+`'</Message><Region>`+f.region+`</Region></Error>`)
		return
	}
	switch r.Method {
	case http.MethodGet:
		io.WriteString(w, f.config)
	case http.MethodPut:
		sum := md5.Sum(body)
		if r.Header.Get("Content-Md5") != base64.StdEncoding.EncodeToString(sum[:]) {
			http.Error(w, "bad Content-MD5", http.StatusBadRequest)
			return
		}
		f.puts++
		f.config = string(body)
	}
}

// checkSignature signs the request as the server received it, with the signed headers only,
// and compares: what went over the wire is what the client signed.
func checkSignature(r *http.Request, body []byte, secret string) error {
	auth := r.Header.Get("Authorization")
	cred, rest, ok := strings.Cut(strings.TrimPrefix(auth, "AWS4-HMAC-SHA256 Credential="), ",SignedHeaders=")
	signed, _, ok2 := strings.Cut(rest, ",Signature=")
	scope := strings.Split(cred, "/")
	if !ok || !ok2 || len(scope) != 5 {
		return fmt.Errorf("malformed Authorization %q", auth)
	}
	when, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil {
		return fmt.Errorf("X-Amz-Date: %w", err)
	}
	again, _ := http.NewRequest(r.Method, "http://"+r.Host+r.URL.RequestURI(), nil)
	for _, h := range strings.Split(signed, ";") {
		if h != "host" && h != "x-amz-date" && h != "x-amz-content-sha256" {
			again.Header[http.CanonicalHeaderKey(h)] = r.Header.Values(h)
		}
	}
	sign(again, body, credentials{scope[0], secret}, scope[2], when)
	if got := again.Header.Get("Authorization"); got != auth {
		return fmt.Errorf("signature mismatch:\n sent %s\n want %s", auth, got)
	}
	if again.Header.Get("X-Amz-Content-Sha256") != r.Header.Get("X-Amz-Content-Sha256") {
		return errors.New("x-amz-content-sha256 is not the hash of the body")
	}
	return nil
}

func TestEnsureNotificationKeepsOtherRulesAndIsIdempotent(t *testing.T) {
	const arn = "arn:minio:sqs::SKIPPER:redis"
	f := &fakeS3{region: "eu-west-3", config: `<?xml version="1.0" encoding="UTF-8"?>
<NotificationConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
<QueueConfiguration><Id>other</Id><Filter><S3Key><FilterRule><Name>prefix</Name><Value>img/</Value></FilterRule></S3Key></Filter><Queue>` + arn + `</Queue><Event>s3:ObjectCreated:*</Event><Event>s3:ObjectRemoved:*</Event></QueueConfiguration>
<TopicConfiguration><Id>t1</Id><Topic>arn:minio:sns::X:webhook</Topic><Event>s3:ObjectAccessed:*</Event></TopicConfiguration>
</NotificationConfiguration>`}
	srv := httptest.NewServer(f)
	defer srv.Close()
	ctx := context.Background()

	if err := EnsureNotification(ctx, srv.URL, "minioadmin", "minioadmin", "photos", arn); err != nil {
		t.Fatal(err)
	}
	if f.puts != 1 {
		t.Fatalf("%d PUTs, want 1 (a filtered rule for the same queue does not count)", f.puts)
	}
	var cfg notificationConfig
	if err := xml.Unmarshal([]byte(f.config), &cfg); err != nil {
		t.Fatalf("written configuration does not parse: %v\n%s", err, f.config)
	}
	if len(cfg.Queues) != 2 || cfg.Queues[0].ID != "other" || cfg.Queues[0].Filter == nil ||
		len(cfg.Queues[0].Filter.S3Key.Rules) != 1 || cfg.Queues[0].Filter.S3Key.Rules[0].Value != "img/" {
		t.Errorf("existing queue rule changed:\n%s", f.config)
	}
	if !hasQueue(cfg, arn) {
		t.Errorf("new rule missing:\n%s", f.config)
	}
	if !strings.Contains(f.config, "<Topic>arn:minio:sns::X:webhook</Topic>") || len(cfg.Other) != 1 {
		t.Errorf("topic rule dropped:\n%s", f.config)
	}

	if err := EnsureNotification(ctx, srv.URL, "minioadmin", "minioadmin", "photos", arn); err != nil {
		t.Fatal(err)
	}
	if f.puts != 1 {
		t.Errorf("second call wrote again (%d PUTs); it must leave a matching rule alone", f.puts)
	}
}

func TestEnsureNotificationErrors(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct{ endpoint, arn, want string }{
		{"127.0.0.1:9000", "arn:minio:sqs::S:redis", "is not a MinIO endpoint"},
		{"http://127.0.0.1:9000", "sqs:redis", "SKIPPER_MINIO_ARN"},
	} {
		err := EnsureNotification(ctx, c.endpoint, "k", "s", "b", c.arn)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("EnsureNotification(%q, %q) = %v, want an error about %s", c.endpoint, c.arn, err, c.want)
		}
	}

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `<Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message></Error>`)
	}))
	defer srv.Close()
	err := EnsureNotification(ctx, srv.URL, "k", "s", "nope", "arn:minio:sqs::S:redis")
	if err == nil || !strings.Contains(err.Error(), "bucket nope") || !strings.Contains(err.Error(), "NoSuchBucket") ||
		!strings.Contains(err.Error(), "The specified bucket does not exist") {
		t.Errorf("missing bucket: %v", err)
	}
}
