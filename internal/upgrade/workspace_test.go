package upgrade

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
)

// fakeMMS serves the v1 Model Management API's service routes in the
// documented shape (facts v1-services.md §1.1, §2.1) on loopback. The real
// API cannot be reached from the test environment; this stands in for it.
func fakeMMS(t *testing.T, token string) (*httptest.Server, string) {
	t.Helper()
	sample, err := os.ReadFile("testdata/v1/aci-keyauth-ssl-cname.json")
	if err != nil {
		t.Fatal(err)
	}
	aks, err := os.ReadFile("testdata/v1/aks-autoscale-tokenauth.json")
	if err != nil {
		t.Fatal(err)
	}
	const ws = "/modelmanagement/v1.0/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws"
	mux := http.NewServeMux()
	var base string
	mux.HandleFunc("GET "+ws+"/services/{name}", func(w http.ResponseWriter, r *http.Request) {
		switch r.PathValue("name") {
		case "churn-aci-tls":
			_, _ = w.Write(sample)
		default:
			http.Error(w, `{"code":"NotFound"}`, http.StatusNotFound)
		}
	})
	mux.HandleFunc("GET "+ws+"/services", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("page") == "2" {
			_, _ = w.Write([]byte(`{"value":[` + string(aks) + `,{"name":"batch-1","computeType":"AMLCOMPUTE"}],"nextLink":null}`))
			return
		}
		_, _ = w.Write([]byte(`{"value":[` + string(sample) + `],"nextLink":"` + base + ws + `/services?page=2"}`))
	})
	mux.HandleFunc("POST "+ws+"/services/{name}/listkeys", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"primaryKey":"mms-primary","secondaryKey":"mms-secondary"}`))
	})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	base = srv.URL
	return srv, srv.URL + ws
}

func TestWorkspace(t *testing.T) {
	_, url := fakeMMS(t, "tok")
	w := &Workspace{BaseURL: url, Token: "tok"}
	s, err := w.Service(t.Context(), "churn-aci-tls")
	if err != nil || s.Name != "churn-aci-tls" || s.ComputeType != "ACI" {
		t.Fatalf("Service = %+v, %v", s, err)
	}
	if _, err := w.Service(t.Context(), "missing"); !errors.Is(err, ErrServiceNotFound) {
		t.Errorf("missing service: %v", err)
	}
	k, err := w.Keys(t.Context(), "churn-aci-tls")
	if err != nil || k.PrimaryKey != "mms-primary" {
		t.Errorf("Keys = %+v, %v", k, err)
	}
	all, err := w.Services(t.Context(), "")
	if err != nil || len(all) != 3 {
		t.Fatalf("Services = %d, %v", len(all), err)
	}
	aks, err := w.Services(t.Context(), "AKS")
	if err != nil || len(aks) != 1 || aks[0].Name != "recsys-aks" {
		t.Errorf("Services(AKS) = %v, %v", aks, err)
	}
	bad := &Workspace{BaseURL: url, Token: "wrong"}
	if _, err := bad.Service(t.Context(), "churn-aci-tls"); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("wrong token: %v", err)
	}
}

func TestWorkspace_NextLinkOffHost(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"value":[],"nextLink":"https://elsewhere.example/steal"}`))
	}))
	defer srv.Close()
	w := &Workspace{BaseURL: srv.URL, Token: "tok"}
	if _, err := w.Services(t.Context(), ""); err == nil || !strings.Contains(err.Error(), "off the workspace host") {
		t.Errorf("Services followed an off-host nextLink: %v", err)
	}
}
