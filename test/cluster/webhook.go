package cluster

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"time"
)

// StartWebhook runs bin (skipper-webhook) as a local process that registers its own webhook
// configurations with the cluster by URL and manages its own certificates, as `make dev-up`
// does. It returns when the webhook reports ready.
func (c *Cluster) StartWebhook(ctx context.Context, bin, configFile string, detach bool) error {
	bin, err := filepath.Abs(bin)
	if err != nil {
		return err
	}
	ports := make([]int, 3)
	for i := range ports {
		if ports[i], err = freePort(); err != nil {
			return err
		}
	}
	listen := fmt.Sprintf("127.0.0.1:%d", ports[0])
	args := []string{
		"--kubeconfig=" + c.Kubeconfig,
		"--listen=" + listen,
		"--cert-dir=" + filepath.Join(c.Dir, "webhook-certs"),
		"--self-signed",
		"--register-url=https://" + listen,
		fmt.Sprintf("--health-addr=127.0.0.1:%d", ports[1]),
		fmt.Sprintf("--metrics-addr=127.0.0.1:%d", ports[2]),
	}
	if configFile != "" {
		abs, err := filepath.Abs(configFile)
		if err != nil {
			return err
		}
		args = append(args, "--config="+abs)
	}
	if err := c.AddProcess("skipper-webhook", bin, args, nil, detach); err != nil {
		return err
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/readyz", ports[1])
	if err := poll(ctx, 60*time.Second, "skipper-webhook "+url, func() error {
		resp, err := http.Get(url)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}); err != nil {
		return c.withLog(err, "skipper-webhook")
	}
	return nil
}
