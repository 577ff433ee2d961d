// Package webhook holds the webhook configurations shared by manifests/ and the
// --register-url mode of skipper-webhook; the code lives in the sub-packages.
package webhook

import (
	_ "embed"
	"fmt"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"sigs.k8s.io/yaml"
)

// ConfigurationsYAML is manifests/webhook-configurations.yaml.
//
//go:embed configurations.yaml
var ConfigurationsYAML []byte

// Configurations parses ConfigurationsYAML.
func Configurations() (*admissionregistrationv1.MutatingWebhookConfiguration, *admissionregistrationv1.ValidatingWebhookConfiguration, error) {
	var (
		m admissionregistrationv1.MutatingWebhookConfiguration
		v admissionregistrationv1.ValidatingWebhookConfiguration
	)
	docs := strings.Split(string(ConfigurationsYAML), "\n---\n")
	if len(docs) != 2 {
		return nil, nil, fmt.Errorf("configurations.yaml holds %d documents, want 2", len(docs))
	}
	if err := yaml.UnmarshalStrict([]byte(docs[0]), &m); err != nil {
		return nil, nil, fmt.Errorf("parse MutatingWebhookConfiguration: %w", err)
	}
	if err := yaml.UnmarshalStrict([]byte(docs[1]), &v); err != nil {
		return nil, nil, fmt.Errorf("parse ValidatingWebhookConfiguration: %w", err)
	}
	return &m, &v, nil
}
