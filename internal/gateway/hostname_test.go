package gateway

import "testing"

func TestEndpointFromHost(t *testing.T) {
	const suffix = ".local.inference.localhost"
	tests := []struct {
		host     string
		want     string
		inDomain bool
	}{
		{"fraud.local.inference.localhost", "fraud", true},
		{"fraud.local.inference.localhost:8443", "fraud", true},
		{"FRAUD.Local.Inference.LOCALHOST:8443", "FRAUD", true},
		{"fraud.local.inference.localhost.", "fraud", true},
		{"fraud.local.inference.localhost.:443", "fraud", true},
		{"my-endpoint-2.local.inference.localhost", "my-endpoint-2", true},
		{"a.b.local.inference.localhost", "a.b", true}, // in the domain, names no endpoint
		{".local.inference.localhost", "", false},
		{"local.inference.localhost", "", false},
		{"localhost:8443", "", false},
		{"127.0.0.1:8443", "", false},
		{"[::1]:8443", "", false},
		{"[::1]", "", false},
		{"fraud.eastus.inference.localhost", "", false},
		{"fraud.local.inference.localhost.evil.com", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		got, in := endpointFromHost(tt.host, suffix)
		if got != tt.want || in != tt.inDomain {
			t.Errorf("endpointFromHost(%q) = %q, %v; want %q, %v", tt.host, got, in, tt.want, tt.inDomain)
		}
	}
}

func TestEndpointFromPath(t *testing.T) {
	tests := []struct {
		path, endpoint, forward string
		ok                      bool
	}{
		{"/endpoints/fraud/score", "fraud", "/score", true},
		{"/endpoints/Fraud/swagger.json", "Fraud", "/swagger.json", true},
		{"/endpoints/fraud/", "", "", false},
		{"/endpoints/fraud", "", "", false},
		{"/endpoints//score", "", "", false},
		{"/endpoints/fraud/score/x", "", "", false},
		{"/endpoints/fraud/-/ready", "", "", false},
		{"/score", "", "", false},
		{"/", "", "", false},
	}
	for _, tt := range tests {
		ep, fw, ok := endpointFromPath(tt.path)
		if ep != tt.endpoint || fw != tt.forward || ok != tt.ok {
			t.Errorf("endpointFromPath(%q) = %q, %q, %v; want %q, %q, %v", tt.path, ep, fw, ok, tt.endpoint, tt.forward, tt.ok)
		}
	}
}

func TestServer_ScoringURI(t *testing.T) {
	tests := []struct {
		cfg      Config
		endpoint string
		port     int
		want     string
	}{
		{Config{}, "fraud", 443, "https://fraud.local.inference.localhost/score"},
		{Config{}, "fraud", 0, "https://fraud.local.inference.localhost/score"},
		{Config{}, "Fraud", 8443, "https://fraud.local.inference.localhost:8443/score"},
		{Config{Region: "westeurope", Domain: "moe.example.com."}, "fraud", 443, "https://fraud.westeurope.inference.moe.example.com/score"},
	}
	for _, tt := range tests {
		if got := New(tt.cfg).ScoringURI(tt.endpoint, tt.port); got != tt.want {
			t.Errorf("ScoringURI(%q, %d) = %q; want %q", tt.endpoint, tt.port, got, tt.want)
		}
	}
}
