package config

import (
	"net/url"
	"strings"
)

const mask = "xxxxx"

// Redact returns a URL or go-sql-driver DSN with its password masked, for logs.
func Redact(raw string) string {
	p := password(raw)
	if p == "" {
		return raw
	}
	return strings.Replace(raw, p, mask, 1)
}

// password extracts the password of a URL (scheme://user:pass@host) or of a
// go-sql-driver DSN (user:pass@tcp(host)/db); "" when there is none.
func password(raw string) string {
	if strings.Contains(raw, "://") {
		if u, err := url.Parse(raw); err == nil && u.User != nil {
			if p, ok := u.User.Password(); ok {
				// The raw form may be percent-encoded; mask what is literally in the string.
				if i := strings.Index(raw, "://"); i >= 0 {
					rest := raw[i+3:]
					if at := strings.LastIndex(rest[:max(0, strings.IndexAny(rest+"/", "/"))], "@"); at >= 0 {
						if c := strings.Index(rest[:at], ":"); c >= 0 {
							return rest[c+1 : at]
						}
					}
				}
				return p
			}
		}
		return ""
	}
	// DSN: the password runs from the first ':' to the last '@' before the address.
	at := strings.LastIndex(raw, "@")
	if at < 0 {
		return ""
	}
	userinfo := raw[:at]
	c := strings.Index(userinfo, ":")
	if c < 0 {
		return ""
	}
	return userinfo[c+1:]
}
