package config_test

import (
	"testing"

	"github.com/getkipper/skipper/poller/config"
	"github.com/getkipper/skipper/webhook/function"
)

// The poller declares the trigger names itself (so its binary does not link the Kubernetes
// API packages); they must stay the webhook's.
func TestTriggersMatchWebhook(t *testing.T) {
	for mine, theirs := range map[string]string{
		config.TriggerPostgres: function.TriggerPostgres,
		config.TriggerMySQL:    function.TriggerMySQL,
		config.TriggerRedis:    function.TriggerRedis,
		config.TriggerMinIO:    function.TriggerMinIO,
	} {
		if mine != theirs {
			t.Errorf("poller trigger %q, webhook %q", mine, theirs)
		}
	}
}
