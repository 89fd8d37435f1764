// Package kubernetes holds moe's install manifests for Kubernetes (a
// kustomize base: kubectl apply -k deploy/kubernetes) and embeds them, so
// tests (and a future `moe install`) can read them. See README.md.
package kubernetes

import "embed"

// Files are the manifests and kustomization.yaml.
//
//go:embed *.yaml
var Files embed.FS
