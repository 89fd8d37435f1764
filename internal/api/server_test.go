package api

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moe-serving/moe/internal/artifact"
	"github.com/moe-serving/moe/internal/auth"
	"github.com/moe-serving/moe/internal/spec"
	"github.com/moe-serving/moe/internal/store"
	"github.com/moe-serving/moe/internal/store/sqlite"
)

const (
	admin    = "admin-credential-0123456789abcdef"
	readonly = "readonly-credential-0123456789abcdef"
)

type fixture struct {
	srv    *Server
	url    string
	store  store.Store
	signer *auth.Signer
}

// newFixture runs the real API handler over a real SQLite store.
func newFixture(t *testing.T) *fixture {
	dir := t.TempDir()
	st, err := sqlite.Open(filepath.Join(dir, "moe.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	box, err := auth.OpenBox(filepath.Join(dir, "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	signer, err := auth.OpenSigner(filepath.Join(dir, "signing"))
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Store: st, Artifacts: &artifact.Store{Dir: filepath.Join(dir, "artifacts")}, Box: box, Signer: signer,
		Admin: admin, ReadOnly: readonly, ScoringURI: func(e string) string { return "https://" + e + ".local.inference.localhost/score" }}
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(hs.Close)
	return &fixture{srv: s, url: hs.URL, store: st, signer: signer}
}

func (f *fixture) client(tok string) *Client {
	return &Client{BaseURL: f.url, Token: tok, HTTP: http.DefaultClient}
}

func status(err error) int {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Status
	}
	if err == nil {
		return 200
	}
	return -1
}

// snapshotStore renders everything stored, to prove refused calls changed nothing.
func (f *fixture) snapshotStore(t *testing.T) string {
	ctx := context.Background()
	eps, _ := f.store.ListEndpoints(ctx)
	deps, _ := f.store.ListDeployments(ctx, "")
	b, _ := json.Marshal([]any{eps, deps})
	return string(b)
}

func TestAPIRequiresCredentials(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if _, err := f.client(admin).CreateEndpoint(ctx, CreateEndpointRequest{Endpoint: spec.Endpoint{Name: "alpha"}}); err != nil {
		t.Fatal(err)
	}
	before := f.snapshotStore(t)
	type call struct {
		name string
		do   func(c *Client) error
	}
	writes := []call{
		{"create", func(c *Client) error {
			_, err := c.CreateEndpoint(ctx, CreateEndpointRequest{Endpoint: spec.Endpoint{Name: "beta"}})
			return err
		}},
		{"update", func(c *Client) error {
			_, err := c.UpdateEndpoint(ctx, "alpha", spec.Endpoint{Name: "alpha", AuthMode: "aml_token"})
			return err
		}},
		{"delete", func(c *Client) error { return c.DeleteEndpoint(ctx, "alpha") }},
		{"listKeys", func(c *Client) error { _, err := c.ListKeys(ctx, "alpha"); return err }},
		{"regenerate", func(c *Client) error {
			return c.RegenerateKeys(ctx, "alpha", RegenerateKeysRequest{KeyType: "Primary"})
		}},
		{"artifact", func(c *Client) error { _, err := c.PutArtifact(ctx, strings.NewReader("")); return err }},
	}
	reads := []call{
		{"list", func(c *Client) error { _, err := c.ListEndpoints(ctx); return err }},
		{"show", func(c *Client) error { _, err := c.GetEndpoint(ctx, "alpha"); return err }},
	}
	for _, tok := range []string{"", "wrong", admin + "x", readonly[:10]} {
		for _, c := range append(writes, reads...) {
			if got := status(c.do(f.client(tok))); got != 401 {
				t.Errorf("%s with credential %q: status %d, want 401", c.name, tok, got)
			}
		}
	}
	for _, c := range writes {
		if got := status(c.do(f.client(readonly))); got != 403 {
			t.Errorf("%s with the read-only credential: status %d, want 403", c.name, got)
		}
	}
	for _, c := range reads {
		if got := status(c.do(f.client(readonly))); got != 200 {
			t.Errorf("%s with the read-only credential: status %d, want 200", c.name, got)
		}
	}
	if after := f.snapshotStore(t); after != before {
		t.Errorf("refused calls changed the store:\nbefore %s\nafter  %s", before, after)
	}
}

func TestKeysLifecycle(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	c := f.client(admin)
	kept := Keys{PrimaryKey: "v1-primary-key-kept-0001", SecondaryKey: "v1-secondary-key-kept-0002"}
	v, err := c.CreateEndpoint(ctx, CreateEndpointRequest{Endpoint: spec.Endpoint{Name: "kept"}, Keys: &kept})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(v)
	if bytes.Contains(b, []byte(kept.PrimaryKey)) || bytes.Contains(b, []byte(kept.SecondaryKey)) {
		t.Errorf("create answer leaks a key: %s", b)
	}
	got, err := c.ListKeys(ctx, "kept")
	if err != nil || *got != kept {
		t.Fatalf("listKeys = %+v, %v; want the keys given at creation", got, err)
	}
	// at rest the keys are sealed, not stored in clear
	rec, _ := f.store.GetEndpoint(ctx, "kept")
	if strings.Contains(rec.PrimaryKey, kept.PrimaryKey) || !strings.HasPrefix(rec.PrimaryKey, "v1:") {
		t.Errorf("primary key stored as %q", rec.PrimaryKey)
	}
	if err := c.RegenerateKeys(ctx, "kept", RegenerateKeysRequest{KeyType: "Secondary"}); err != nil {
		t.Fatal(err)
	}
	after, _ := c.ListKeys(ctx, "kept")
	if after.PrimaryKey != kept.PrimaryKey || after.SecondaryKey == kept.SecondaryKey || len(after.SecondaryKey) < 32 {
		t.Errorf("regenerating the secondary key: %+v", after)
	}
	if err := c.RegenerateKeys(ctx, "kept", RegenerateKeysRequest{KeyType: "Primary", KeyValue: "chosen-value-0123456789"}); err != nil {
		t.Fatal(err)
	}
	after2, _ := c.ListKeys(ctx, "kept")
	if after2.PrimaryKey != "chosen-value-0123456789" || after2.SecondaryKey != after.SecondaryKey {
		t.Errorf("regenerating the primary key with a value: %+v", after2)
	}
	for _, bad := range []Keys{{PrimaryKey: "short"}, {PrimaryKey: "has spaces in it 0123456789"}} {
		_, err := c.CreateEndpoint(ctx, CreateEndpointRequest{Endpoint: spec.Endpoint{Name: "bad-keys"}, Keys: &bad})
		if status(err) != 400 {
			t.Errorf("create with keys %+v: %v, want 400", bad, err)
		}
	}

	// token endpoints
	if _, err := c.CreateEndpoint(ctx, CreateEndpointRequest{Endpoint: spec.Endpoint{Name: "tok", AuthMode: "aml_token"}}); err != nil {
		t.Fatal(err)
	}
	err = c.RegenerateKeys(ctx, "tok", RegenerateKeysRequest{KeyType: "Primary"})
	if status(err) != 400 || !strings.Contains(err.Error(), "Endpoint 'tok' does not use keys for authentication.") {
		t.Errorf("regenerate on a token endpoint: %v", err)
	}
	tk, err := c.GetToken(ctx, "tok")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if tk.TokenType != "Bearer" || tk.ExpiryTimeUTC <= now.Unix() || tk.RefreshAfterTimeUTC > tk.ExpiryTimeUTC {
		t.Errorf("token = %+v", tk)
	}
	if err := f.signer.Verify(tk.AccessToken, "tok", now); err != nil {
		t.Errorf("issued token does not verify: %v", err)
	}
	if err := f.signer.Verify(tk.AccessToken, "kept", now); err == nil {
		t.Error("a token for endpoint tok verified for endpoint kept")
	}
	if _, err := c.GetToken(ctx, "kept"); status(err) != 400 {
		t.Errorf("token for a key endpoint: %v, want 400", err)
	}
	// switching auth mode with update works, and keys survive it
	if _, err := c.UpdateEndpoint(ctx, "kept", spec.Endpoint{Name: "kept", AuthMode: "aml_token"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetToken(ctx, "kept"); err != nil {
		t.Errorf("token after switching to aml_token: %v", err)
	}
	if _, err := c.UpdateEndpoint(ctx, "kept", spec.Endpoint{Name: "kept", AuthMode: "key"}); err != nil {
		t.Fatal(err)
	}
	if k, _ := c.ListKeys(ctx, "kept"); k.PrimaryKey != "chosen-value-0123456789" {
		t.Errorf("keys lost when switching modes: %+v", k)
	}
}

func TestTrafficAndDeleteRules(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	c := f.client(admin)
	c.CreateEndpoint(ctx, CreateEndpointRequest{Endpoint: spec.Endpoint{Name: "ep1"}})
	// a deployment record (its instances are the reconciler's business)
	f.store.CreateDeployment(ctx, &store.Deployment{Endpoint: "ep1", Name: "blue", State: spec.StateSucceeded,
		Desired: store.Revision{Generation: 1, Spec: spec.Deployment{Name: "blue", EndpointName: "ep1", InstanceCount: 1}}})
	before := f.snapshotStore(t)
	for name, e := range map[string]spec.Endpoint{
		"unknown deployment": {Name: "ep1", Traffic: map[string]int{"blue": 50, "green": 50}},
		"sum not 100":        {Name: "ep1", Traffic: map[string]int{"blue": 90}},
		"mirror over 50":     {Name: "ep1", Traffic: map[string]int{"blue": 100}, MirrorTraffic: map[string]int{"blue": 60}},
		"name mismatch":      {Name: "other", Traffic: map[string]int{"blue": 100}},
	} {
		if _, err := c.UpdateEndpoint(ctx, "ep1", e); status(err) != 400 {
			t.Errorf("%s: %v, want 400", name, err)
		}
	}
	if after := f.snapshotStore(t); after != before {
		t.Error("refused traffic updates changed the store")
	}
	if _, err := c.UpdateEndpoint(ctx, "ep1", spec.Endpoint{Name: "ep1", Traffic: map[string]int{"blue": 100}}); err != nil {
		t.Fatal(err)
	}
	err := c.DeleteDeployment(ctx, "ep1", "blue")
	if status(err) != 409 || !strings.Contains(err.Error(), "set it to 0 first") {
		t.Errorf("deleting a deployment with traffic: %v, want 409", err)
	}
	c.UpdateEndpoint(ctx, "ep1", spec.Endpoint{Name: "ep1", Traffic: map[string]int{"blue": 0}})
	if err := c.DeleteDeployment(ctx, "ep1", "blue"); err != nil {
		t.Errorf("deleting a 0%% deployment: %v", err)
	}
}

func TestArtifactUploadRefusesEscapes(t *testing.T) {
	f := newFixture(t)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "../../etc/evil", Typeflag: tar.TypeReg, Size: 1, Mode: 0o644})
	tw.Write([]byte("x"))
	tw.Close()
	_, err := f.client(admin).PutArtifact(context.Background(), &buf)
	if status(err) != 400 || !strings.Contains(err.Error(), "escapes") {
		t.Errorf("hostile tar: %v, want 400 naming the escape", err)
	}
	// deployments must name uploaded snapshots
	f.client(admin).CreateEndpoint(context.Background(), CreateEndpointRequest{Endpoint: spec.Endpoint{Name: "ep2"}})
	_, err = f.client(admin).CreateDeployment(context.Background(), "ep2", DeploymentRequest{
		Deployment: spec.Deployment{Name: "blue", Model: &spec.Model{Path: "/m"}, CodeConfiguration: &spec.CodeConfiguration{Code: "/c", ScoringScript: "s.py"},
			Environment: &spec.Environment{Image: "x"}, InstanceType: "Standard_DS3_v2", InstanceCount: 1},
		Artifacts: &store.Artifacts{Model: "sha256:" + strings.Repeat("a", 64), Code: "sha256:" + strings.Repeat("b", 64)},
	})
	if status(err) != 400 || !strings.Contains(err.Error(), "was not uploaded") {
		t.Errorf("deployment with unknown snapshots: %v", err)
	}
}
