package reconcile

import (
	"strings"
	"testing"

	"github.com/moe-serving/moe/internal/auth"
	"github.com/moe-serving/moe/internal/spec"
	"github.com/moe-serving/moe/internal/store"
)

func noKeys(*store.Endpoint) (auth.Secret, auth.Secret, error) { return "p", "s", nil }

func routeEndpoint(props map[string]string) *store.Endpoint {
	return &store.Endpoint{Spec: spec.Endpoint{
		Name: "Fraud", AuthMode: "key", Traffic: map[string]int{"blue": 100},
		MirrorTraffic: map[string]int{"green": 20}, Properties: props,
	}}
}

func routeDeployment(name string, rs *spec.RequestSettings) *store.Deployment {
	r := store.Revision{Generation: 1, Spec: spec.Deployment{Name: name, EndpointName: "Fraud", InstanceCount: 1, RequestSettings: rs}}
	return &store.Deployment{Endpoint: "Fraud", Name: name, Desired: r, Active: &r}
}

func TestBuildRoutes_MaxRequestsPerSecond(t *testing.T) {
	tests := []struct {
		name    string
		props   map[string]string
		want    int
		wantErr bool
	}{
		{"absent: no limit", nil, 0, false},
		{"other properties only", map[string]string{spec.PropPassModelStatus: "true"}, 0, false},
		{"Azure's default", map[string]string{PropMaxRequestsPerSecond: "500"}, 500, false},
		{"spaces", map[string]string{PropMaxRequestsPerSecond: " 20 "}, 20, false},
		{"zero", map[string]string{PropMaxRequestsPerSecond: "0"}, 0, true},
		{"negative", map[string]string{PropMaxRequestsPerSecond: "-5"}, 0, true},
		{"fraction", map[string]string{PropMaxRequestsPerSecond: "1.5"}, 0, true},
		{"word", map[string]string{PropMaxRequestsPerSecond: "lots"}, 0, true},
		{"empty", map[string]string{PropMaxRequestsPerSecond: ""}, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tbl, errs := BuildRoutes([]*store.Endpoint{routeEndpoint(tt.props)}, nil, nil, noKeys, nil)
			ep := tbl.Endpoints["fraud"]
			if ep == nil {
				t.Fatal("endpoint missing from the table; want it served (with or without a limit)")
			}
			if ep.MaxRequestsPerSecond != tt.want {
				t.Errorf("MaxRequestsPerSecond = %d; want %d", ep.MaxRequestsPerSecond, tt.want)
			}
			if tt.wantErr {
				if len(errs) != 1 || !strings.Contains(errs[0].Error(), PropMaxRequestsPerSecond) || !strings.Contains(errs[0].Error(), `"Fraud"`) {
					t.Errorf("errs = %v; want one naming the endpoint and the property", errs)
				}
			} else if len(errs) != 0 {
				t.Errorf("errs = %v; want none", errs)
			}
		})
	}
}

// TestBuildRoutes_KeepsInstances checks what the gateway's concurrency
// slots rely on: an instance keeps its *gateway.Instance across tables.
func TestBuildRoutes_KeepsInstances(t *testing.T) {
	eps := []*store.Endpoint{routeEndpoint(nil)}
	deps := []*store.Deployment{
		routeDeployment("blue", &spec.RequestSettings{RequestTimeoutMS: 3000, MaxConcurrentRequestsPerInstance: 4}),
		routeDeployment("green", nil),
	}
	observed := []Instance{
		{ID: "b1", Endpoint: "Fraud", Deployment: "blue", Generation: 1, Phase: PhaseReady, Addr: "127.0.0.1:1"},
		{ID: "b0", Endpoint: "Fraud", Deployment: "blue", Generation: 1, Phase: PhaseReady, Addr: "127.0.0.1:2"},
		{ID: "b2", Endpoint: "Fraud", Deployment: "blue", Generation: 1, Phase: PhaseStarting, Addr: "127.0.0.1:3"},
		{ID: "g0", Endpoint: "Fraud", Deployment: "green", Generation: 1, Phase: PhaseReady, Addr: "127.0.0.1:4"},
	}
	t1, errs := BuildRoutes(eps, deps, observed, noKeys, nil)
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	blue := t1.Endpoints["fraud"].Deployments["blue"]
	if len(blue.Instances) != 2 || blue.Instances[0].ID != "b0" || blue.MaxConcurrentPerInstance != 4 || blue.RequestTimeout.Milliseconds() != 3000 {
		t.Fatalf("blue = %+v; want ready b0, b1, max concurrent 4, timeout 3s", blue)
	}
	if green := t1.Endpoints["fraud"].Deployments["green"]; green.MaxConcurrentPerInstance != 1 || green.RequestTimeout.Milliseconds() != 5000 {
		t.Errorf("green without request_settings: %+v; want Azure's defaults (1, 5000 ms)", green)
	}
	if m := t1.Endpoints["fraud"].Mirror; m == nil || m.Deployment != "green" || m.Percent != 20 {
		t.Errorf("Mirror = %+v; want green 20", m)
	}
	blue.Instances[0].Outstanding.Add(1) // a request in flight on b0

	observed[2].Phase = PhaseReady // b2 becomes ready
	t2, _ := BuildRoutes(eps, deps, observed, noKeys, t1)
	blue2 := t2.Endpoints["fraud"].Deployments["blue"]
	if len(blue2.Instances) != 3 {
		t.Fatalf("blue has %d instances; want 3", len(blue2.Instances))
	}
	if blue2.Instances[0] != blue.Instances[0] || blue2.Instances[1] != blue.Instances[1] {
		t.Error("b0 and b1 are new *gateway.Instance values; want the same as in the previous table")
	}
	if n := blue2.Instances[0].Outstanding.Load(); n != 1 {
		t.Errorf("b0 has %d outstanding in the new table; want the 1 taken under the old one", n)
	}
}
