package miniosource

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"sort"
	"strings"
	"time"
)

// credentials are a static S3 access key pair.
type credentials struct{ accessKey, secretKey string }

// sign adds x-amz-date, x-amz-content-sha256 and an AWS Signature Version 4 Authorization
// header (service s3) to req. It signs the host and every header already set on req, and
// the SHA-256 of body, which must be the bytes req sends.
func sign(req *http.Request, body []byte, c credentials, region string, now time.Time) {
	const algorithm = "AWS4-HMAC-SHA256"
	stamp := now.UTC().Format("20060102T150405Z")
	day := stamp[:8]
	payload := sha256.Sum256(body)
	req.Header.Set("X-Amz-Date", stamp)
	req.Header.Set("X-Amz-Content-Sha256", hex.EncodeToString(payload[:]))

	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	headers := map[string]string{"host": host}
	for k, vs := range req.Header {
		trimmed := make([]string, len(vs))
		for i, v := range vs {
			trimmed[i] = strings.Join(strings.Fields(v), " ")
		}
		headers[strings.ToLower(k)] = strings.Join(trimmed, ",")
	}
	names := make([]string, 0, len(headers))
	for k := range headers {
		names = append(names, k)
	}
	sort.Strings(names)
	signed := strings.Join(names, ";")

	var canon strings.Builder
	canon.WriteString(req.Method + "\n")
	path := req.URL.Path
	if path == "" {
		path = "/"
	}
	canon.WriteString(uriEncode(path, true) + "\n")
	canon.WriteString(canonicalQuery(req) + "\n")
	for _, k := range names {
		canon.WriteString(k + ":" + headers[k] + "\n")
	}
	canon.WriteString("\n" + signed + "\n")
	canon.WriteString(hex.EncodeToString(payload[:]))

	scope := day + "/" + region + "/s3/aws4_request"
	canonHash := sha256.Sum256([]byte(canon.String()))
	toSign := algorithm + "\n" + stamp + "\n" + scope + "\n" + hex.EncodeToString(canonHash[:])

	key := hmacSHA256([]byte("AWS4"+c.secretKey), day)
	key = hmacSHA256(key, region)
	key = hmacSHA256(key, "s3")
	key = hmacSHA256(key, "aws4_request")
	sig := hex.EncodeToString(hmacSHA256(key, toSign))
	req.Header.Set("Authorization", algorithm+" Credential="+c.accessKey+"/"+scope+",SignedHeaders="+signed+",Signature="+sig)
}

func hmacSHA256(key []byte, data string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(data))
	return h.Sum(nil)
}

// canonicalQuery sorts the parameters by name, then value; a parameter without a value
// (?notification) is written as "notification=".
func canonicalQuery(req *http.Request) string {
	q := req.URL.Query()
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		vs := append([]string(nil), q[k]...)
		sort.Strings(vs)
		for _, v := range vs {
			parts = append(parts, uriEncode(k, false)+"="+uriEncode(v, false))
		}
	}
	return strings.Join(parts, "&")
}

// uriEncode percent-encodes every byte except the unreserved characters (A-Z a-z 0-9 - . _ ~)
// and, in a path, the slash; hex digits are upper case, as SigV4 requires.
func uriEncode(s string, path bool) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '.', c == '_', c == '~', path && c == '/':
			b.WriteByte(c)
		default:
			b.WriteByte('%')
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&15])
		}
	}
	return b.String()
}
