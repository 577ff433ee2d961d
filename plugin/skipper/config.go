package skipper

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"sigs.k8s.io/yaml"
)

// Config is the plugin's own configuration file, YAML:
//
//	loki:
//	  url: http://loki.monitoring:3100
//	  selector: '{namespace="{namespace}", pod=~"{name}-.*"}'
//	  orgID: tenant-1
type Config struct {
	Loki LokiConfig `json:"loki,omitempty"`
}

// Environment variables the plugin reads.
const (
	EnvConfig  = "SKIPPER_CONFIG"   // path of the config file
	EnvLokiURL = "SKIPPER_LOKI_URL" // overrides loki.url
)

// ConfigPath is $SKIPPER_CONFIG, else $XDG_CONFIG_HOME/skipper/config.yaml, else
// ~/.config/skipper/config.yaml.
func ConfigPath(getenv func(string) string) string {
	if p := getenv(EnvConfig); p != "" {
		return p
	}
	dir := getenv("XDG_CONFIG_HOME")
	if dir == "" {
		home := getenv("HOME")
		if home == "" {
			return ""
		}
		dir = filepath.Join(home, ".config")
	}
	return filepath.Join(dir, "skipper", "config.yaml")
}

// LoadConfig reads the config file (a missing file is an empty config) and applies the
// environment overrides.
func LoadConfig(getenv func(string) string) (Config, error) {
	var cfg Config
	path := ConfigPath(getenv)
	if path != "" {
		data, err := os.ReadFile(path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return cfg, fmt.Errorf("read config %s: %w", path, err)
		default:
			if err := yaml.UnmarshalStrict(data, &cfg); err != nil {
				return cfg, fmt.Errorf("parse config %s: %w (see docs/plugin.md for the format)", path, err)
			}
		}
	}
	if u := getenv(EnvLokiURL); u != "" {
		cfg.Loki.URL = u
	}
	return cfg, nil
}
