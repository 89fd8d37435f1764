package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/moe-serving/moe/internal/artifact"
	"github.com/moe-serving/moe/internal/auth"
	"github.com/moe-serving/moe/internal/reconcile"
	"github.com/moe-serving/moe/internal/spec"
	"github.com/moe-serving/moe/internal/store"
)

// Server serves the control-plane API. Set the fields, then use Handler.
type Server struct {
	Store     store.Store
	Artifacts *artifact.Store
	// Box seals endpoint keys at rest.
	Box *auth.Box
	// Signer issues aml_tokens; TokenTTL is their lifetime (default 1h).
	Signer   *auth.Signer
	TokenTTL time.Duration
	// Admin may do everything; ReadOnly may only read (no keys, no tokens).
	Admin, ReadOnly auth.Secret
	// ScoringURI returns an endpoint's scoring URI.
	ScoringURI func(endpoint string) string
	// Location is shown as the endpoint's location (the gateway region).
	Location string
	// Instances reports a deployment's instances (the runner's view).
	Instances func(endpoint, deployment string) []reconcile.Instance
	// Logs returns a deployment's logs for get-logs.
	Logs func(endpoint, deployment, container string, tail int) (string, error)
	// Extra are more routes served behind the same credential check (the
	// console's invoke and stats routes).
	Extra map[string]http.Handler
	// Counters reports what the gateway counted for a deployment (for
	// diagnose); nil means no counts.
	Counters func(endpoint, deployment string) Counters
	// ArtifactAuth reports whether a bearer token other than the admin
	// credential may download a snapshot (GET /v1/artifacts/{digest}):
	// the Kubernetes runner's per-deployment credential, for the digests
	// of its own deployment's revisions only. Nil: only the admin
	// credential may.
	ArtifactAuth func(token, digest string) bool
	Logger       *slog.Logger
}

// Handler returns the API's routes behind credential checks.
func (s *Server) Handler() http.Handler {
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	mux := http.NewServeMux()
	h := func(pattern string, f func(w http.ResponseWriter, r *http.Request) error) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			if err := f(w, r); err != nil {
				s.writeError(w, r, err)
			}
		})
	}
	h("GET /v1/endpoints", s.listEndpoints)
	h("POST /v1/endpoints", s.createEndpoint)
	h("GET /v1/endpoints/{endpoint}", s.getEndpoint)
	h("PUT /v1/endpoints/{endpoint}", s.updateEndpoint)
	h("DELETE /v1/endpoints/{endpoint}", s.deleteEndpoint)
	h("POST /v1/endpoints/{endpoint}/listKeys", s.listKeys)
	h("POST /v1/endpoints/{endpoint}/regenerateKeys", s.regenerateKeys)
	h("POST /v1/endpoints/{endpoint}/token", s.token)
	h("GET /v1/endpoints/{endpoint}/deployments", s.listDeployments)
	h("POST /v1/endpoints/{endpoint}/deployments", s.createDeployment)
	h("GET /v1/endpoints/{endpoint}/deployments/{deployment}", s.getDeployment)
	h("PUT /v1/endpoints/{endpoint}/deployments/{deployment}", s.updateDeployment)
	h("DELETE /v1/endpoints/{endpoint}/deployments/{deployment}", s.deleteDeployment)
	h("POST /v1/endpoints/{endpoint}/deployments/{deployment}/getLogs", s.getLogs)
	h("GET /v1/endpoints/{endpoint}/deployments/{deployment}/diagnose", s.diagnose)
	h("POST /v1/artifacts", s.putArtifact)
	h("GET /v1/artifacts/{digest}", s.getArtifact)
	h("POST /v1/token-signing-key/rotate", s.rotateSigningKey)
	h("GET /v1/healthz", func(w http.ResponseWriter, r *http.Request) error {
		return writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	for pattern, handler := range s.Extra {
		mux.Handle(pattern, handler)
	}
	return s.authenticate(mux)
}

// authenticate lets the admin credential do everything and the read-only
// credential read (GET) only.
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		digest, isArtifact := artifactPath(r)
		switch {
		case ok && s.Admin.Equal(tok):
		case ok && isArtifact && s.ReadOnly.Equal(tok):
			s.writeError(w, r, statusErr(http.StatusForbidden, "Forbidden", "the read-only credential cannot download snapshots (model and code); use the admin credential"))
			return
		case ok && isArtifact && tok != "" && s.ArtifactAuth != nil:
			if !s.ArtifactAuth(tok, digest) {
				s.writeError(w, r, statusErr(http.StatusForbidden, "Forbidden", "this credential may not download %s: a deployment's credential only fetches its own revisions' snapshots", digest))
				return
			}
		case ok && s.ReadOnly.Equal(tok):
			if r.Method != http.MethodGet {
				s.writeError(w, r, statusErr(http.StatusForbidden, "Forbidden", "the read-only credential cannot change anything; use the admin credential"))
				return
			}
		default:
			s.writeError(w, r, statusErr(http.StatusUnauthorized, "Unauthorized", "missing or wrong credential: send Authorization: Bearer <admin credential from the data dir>"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// StatusError is an error with an HTTP status and an error code.
type StatusError struct {
	Status int
	Code   string
	Msg    string
}

func (e *StatusError) Error() string { return e.Msg }

func statusErr(status int, code, format string, args ...any) error {
	return &StatusError{Status: status, Code: code, Msg: fmt.Sprintf(format, args...)}
}

// writeError maps errors to statuses in one place.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	body := Error{Code: "InternalServerError", Message: err.Error()}
	status := http.StatusInternalServerError
	var se *StatusError
	var fe spec.FieldErrors
	switch {
	case errors.As(err, &se):
		status, body.Code = se.Status, se.Code
	case errors.As(err, &fe):
		status, body.Code, body.Details = http.StatusBadRequest, "BadArgument", fe
	case errors.Is(err, store.ErrNotFound):
		status, body.Code = http.StatusNotFound, "ResourceNotFound"
	case errors.Is(err, store.ErrConflict):
		status, body.Code = http.StatusConflict, "Conflict"
	case errors.Is(err, artifact.ErrInvalid):
		status, body.Code = http.StatusBadRequest, "BadArgument"
	}
	if status >= 500 {
		s.Logger.Error("api", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeJSON(w, status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func readJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 8<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return statusErr(http.StatusBadRequest, "BadArgument", "invalid request body: %v", err)
	}
	return nil
}

func (s *Server) endpointView(ctx context.Context, e *store.Endpoint) (*EndpointView, error) {
	deps, err := s.Store.ListDeployments(ctx, e.Spec.Name)
	if err != nil {
		return nil, err
	}
	traffic := map[string]int{}
	for k, v := range e.Spec.Traffic {
		traffic[k] = v
	}
	mirror := map[string]int{}
	for k, v := range e.Spec.MirrorTraffic {
		mirror[k] = v
	}
	for _, d := range deps {
		n := strings.ToLower(d.Name)
		if _, ok := traffic[n]; !ok && mirror[n] == 0 {
			traffic[n] = 0 // as the SDK's show does
		}
	}
	uri := ""
	if s.ScoringURI != nil {
		uri = s.ScoringURI(e.Spec.Name)
	}
	v := &EndpointView{
		Name: e.Spec.Name, Description: e.Spec.Description, AuthMode: e.Spec.AuthMode, Identity: e.Spec.Identity,
		Kind: "Managed", Location: s.Location, Properties: orEmpty(e.Spec.Properties), ProvisioningState: e.State,
		PublicNetworkAccess: "enabled", ScoringURI: uri, OpenAPIURI: strings.TrimSuffix(uri, "/score") + "/swagger.json",
		Tags: orEmpty(e.Spec.Tags), Traffic: traffic, MirrorTraffic: mirror, CreatedAt: e.CreatedAt, UpdatedAt: e.UpdatedAt,
	}
	if e.Spec.PublicNetworkAccess != "" {
		v.PublicNetworkAccess = strings.ToLower(e.Spec.PublicNetworkAccess)
	}
	return v, nil
}

func orEmpty(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func (s *Server) listEndpoints(w http.ResponseWriter, r *http.Request) error {
	eps, err := s.Store.ListEndpoints(r.Context())
	if err != nil {
		return err
	}
	out := []*EndpointView{}
	for _, e := range eps {
		v, err := s.endpointView(r.Context(), e)
		if err != nil {
			return err
		}
		out = append(out, v)
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) getEndpoint(w http.ResponseWriter, r *http.Request) error {
	e, err := s.Store.GetEndpoint(r.Context(), r.PathValue("endpoint"))
	if err != nil {
		return err
	}
	v, err := s.endpointView(r.Context(), e)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, v)
}

func (s *Server) seal(k auth.Secret) (string, error) {
	return s.Box.Seal([]byte(k.Reveal()))
}

// OpenKeys returns an endpoint's keys in clear.
func (s *Server) OpenKeys(e *store.Endpoint) (auth.Secret, auth.Secret, error) {
	p, err := s.Box.Open(e.PrimaryKey)
	if err != nil {
		return "", "", fmt.Errorf("endpoint %q: open primary key: %w", e.Spec.Name, err)
	}
	q, err := s.Box.Open(e.SecondaryKey)
	if err != nil {
		return "", "", fmt.Errorf("endpoint %q: open secondary key: %w", e.Spec.Name, err)
	}
	return auth.Secret(p), auth.Secret(q), nil
}

func validKey(k string) error {
	if len(k) < 16 || len(k) > 256 {
		return errors.New("keys must be 16 to 256 characters long")
	}
	for _, c := range k {
		if c <= ' ' || c > '~' {
			return errors.New("keys must be printable ASCII without spaces")
		}
	}
	return nil
}

func (s *Server) createEndpoint(w http.ResponseWriter, r *http.Request) error {
	var req CreateEndpointRequest
	if err := readJSON(r, &req); err != nil {
		return err
	}
	e := req.Endpoint
	e.Default()
	if err := e.Validate(); err != nil {
		return err
	}
	if len(e.Traffic) > 0 || len(e.MirrorTraffic) > 0 {
		if sum(e.Traffic)+sum(e.MirrorTraffic) > 0 {
			return statusErr(http.StatusBadRequest, "BadArgument", "endpoint %q: traffic cannot be set at creation (no deployment exists yet); create deployments, then `moe online-endpoint update --traffic`", e.Name)
		}
	}
	p, q := auth.NewKey(), auth.NewKey()
	if req.Keys != nil {
		for name, k := range map[string]string{"primaryKey": req.Keys.PrimaryKey, "secondaryKey": req.Keys.SecondaryKey} {
			if k == "" {
				continue
			}
			if err := validKey(k); err != nil {
				return statusErr(http.StatusBadRequest, "BadArgument", "keys.%s: %v", name, err)
			}
		}
		if req.Keys.PrimaryKey != "" {
			p = auth.Secret(req.Keys.PrimaryKey)
		}
		if req.Keys.SecondaryKey != "" {
			q = auth.Secret(req.Keys.SecondaryKey)
		}
	}
	rec := &store.Endpoint{Spec: e, State: spec.StateSucceeded}
	var err error
	if rec.PrimaryKey, err = s.seal(p); err != nil {
		return err
	}
	if rec.SecondaryKey, err = s.seal(q); err != nil {
		return err
	}
	if err := s.Store.CreateEndpoint(r.Context(), rec); err != nil {
		return err
	}
	s.Logger.Info("endpoint created", "endpoint", e.Name, "auth_mode", e.AuthMode)
	v, err := s.endpointView(r.Context(), rec)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, v)
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func (s *Server) updateEndpoint(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("endpoint")
	var e spec.Endpoint
	if err := readJSON(r, &e); err != nil {
		return err
	}
	if !strings.EqualFold(e.Name, name) {
		return statusErr(http.StatusBadRequest, "BadArgument", "name %q in the body does not match endpoint %q in the path", e.Name, name)
	}
	e.Default()
	if err := e.Validate(); err != nil {
		return err
	}
	ctx := r.Context()
	deps, err := s.Store.ListDeployments(ctx, name)
	if err != nil {
		return err
	}
	exists := map[string]bool{}
	for _, d := range deps {
		exists[strings.ToLower(d.Name)] = true
	}
	var fe spec.FieldErrors
	for _, m := range []struct {
		field string
		t     map[string]int
	}{{"traffic", e.Traffic}, {"mirror_traffic", e.MirrorTraffic}} {
		keys := make([]string, 0, len(m.t))
		for k := range m.t {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if !exists[k] {
				fe = append(fe, spec.FieldError{Path: m.field + "." + k, Message: fmt.Sprintf("Deployment name %s not found for this endpoint", k)})
			}
		}
	}
	if len(fe) > 0 {
		return fe
	}
	for range 5 {
		cur, err := s.Store.GetEndpoint(ctx, name)
		if err != nil {
			return err
		}
		stored := cur.Spec.Name
		cur.Spec = e
		cur.Spec.Name = stored // keep the stored casing
		if err := s.Store.UpdateEndpoint(ctx, cur); errors.Is(err, store.ErrConflict) {
			continue
		} else if err != nil {
			return err
		}
		s.Logger.Info("endpoint updated", "endpoint", name, "traffic", e.Traffic, "mirror_traffic", e.MirrorTraffic)
		v, err := s.endpointView(ctx, cur)
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, v)
	}
	return fmt.Errorf("update endpoint %q: %w", name, store.ErrConflict)
}

func (s *Server) deleteEndpoint(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("endpoint")
	if err := s.Store.DeleteEndpoint(r.Context(), name); err != nil {
		return err
	}
	s.Logger.Info("endpoint deleted", "endpoint", name)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) listKeys(w http.ResponseWriter, r *http.Request) error {
	e, err := s.Store.GetEndpoint(r.Context(), r.PathValue("endpoint"))
	if err != nil {
		return err
	}
	if e.Spec.AuthMode != spec.AuthKey {
		return statusErr(http.StatusBadRequest, "BadArgument", "Endpoint '%s' does not use keys for authentication.", e.Spec.Name)
	}
	p, q, err := s.OpenKeys(e)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, Keys{PrimaryKey: p.Reveal(), SecondaryKey: q.Reveal()})
}

func (s *Server) regenerateKeys(w http.ResponseWriter, r *http.Request) error {
	var req RegenerateKeysRequest
	if err := readJSON(r, &req); err != nil {
		return err
	}
	ctx := r.Context()
	name := r.PathValue("endpoint")
	for range 5 {
		e, err := s.Store.GetEndpoint(ctx, name)
		if err != nil {
			return err
		}
		if e.Spec.AuthMode != spec.AuthKey {
			return statusErr(http.StatusBadRequest, "BadArgument", "Endpoint '%s' does not use keys for authentication.", e.Spec.Name)
		}
		k := auth.NewKey()
		if req.KeyValue != "" {
			if err := validKey(req.KeyValue); err != nil {
				return statusErr(http.StatusBadRequest, "BadArgument", "keyValue: %v", err)
			}
			k = auth.Secret(req.KeyValue)
		}
		sealed, err := s.seal(k)
		if err != nil {
			return err
		}
		switch strings.ToLower(req.KeyType) {
		case "primary", "":
			e.PrimaryKey = sealed
		case "secondary":
			e.SecondaryKey = sealed
		default:
			return statusErr(http.StatusBadRequest, "BadArgument", "keyType must be Primary or Secondary (got %q)", req.KeyType)
		}
		if err := s.Store.UpdateEndpoint(ctx, e); errors.Is(err, store.ErrConflict) {
			continue
		} else if err != nil {
			return err
		}
		s.Logger.Info("endpoint key regenerated", "endpoint", name, "key_type", req.KeyType)
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	return fmt.Errorf("regenerate keys of endpoint %q: %w", name, store.ErrConflict)
}

func (s *Server) token(w http.ResponseWriter, r *http.Request) error {
	e, err := s.Store.GetEndpoint(r.Context(), r.PathValue("endpoint"))
	if err != nil {
		return err
	}
	if e.Spec.AuthMode != spec.AuthAMLToken {
		return statusErr(http.StatusBadRequest, "BadArgument", "Endpoint '%s' uses %s authentication; tokens are issued for aml_token endpoints only", e.Spec.Name, e.Spec.AuthMode)
	}
	if s.Signer == nil {
		return statusErr(http.StatusNotImplemented, "NotImplemented", "token signing is not configured on this server")
	}
	ttl := s.TokenTTL
	if ttl == 0 {
		ttl = time.Hour
	}
	t, err := s.Signer.Issue(e.Spec.Name, ttl, time.Now())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, AccessToken{AccessToken: t.AccessToken.Reveal(), TokenType: t.TokenType, ExpiryTimeUTC: t.ExpiryTimeUTC, RefreshAfterTimeUTC: t.RefreshAfterTimeUTC})
}

func (s *Server) deploymentView(d *store.Deployment) *DeploymentView {
	v := &DeploymentView{Deployment: d.Desired.Spec, ProvisioningState: d.State, Error: d.Error, Generation: d.Desired.Generation,
		Instances: []InstanceView{}, CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt}
	v.Deployment.Name, v.Deployment.EndpointName = d.Name, d.Endpoint
	if d.Active != nil {
		v.ActiveGeneration = d.Active.Generation
	}
	if s.Instances != nil {
		for _, in := range s.Instances(d.Endpoint, d.Name) {
			v.Instances = append(v.Instances, InstanceView{ID: in.ID, Generation: in.Generation, State: in.Phase, Reason: in.Reason, Restarts: in.Restarts, StartedAt: in.StartedAt, Resources: in.Resources, Adopted: in.Adopted})
			if in.Phase == reconcile.PhaseReady {
				v.ReadyInstances++
			}
			v.TotalInstances++
		}
	}
	return v
}

func (s *Server) listDeployments(w http.ResponseWriter, r *http.Request) error {
	ep := r.PathValue("endpoint")
	if _, err := s.Store.GetEndpoint(r.Context(), ep); err != nil {
		return err
	}
	deps, err := s.Store.ListDeployments(r.Context(), ep)
	if err != nil {
		return err
	}
	out := []*DeploymentView{}
	for _, d := range deps {
		out = append(out, s.deploymentView(d))
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) getDeployment(w http.ResponseWriter, r *http.Request) error {
	d, err := s.Store.GetDeployment(r.Context(), r.PathValue("endpoint"), r.PathValue("deployment"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, s.deploymentView(d))
}

// checkDeployment validates a deployment request against the path and the
// artifact store.
func (s *Server) checkDeployment(ctx context.Context, endpoint string, req *DeploymentRequest, name string) error {
	d := &req.Deployment
	if d.EndpointName == "" {
		d.EndpointName = endpoint
	}
	if name != "" && d.Name == "" {
		d.Name = name
	}
	if !strings.EqualFold(d.EndpointName, endpoint) {
		return statusErr(http.StatusBadRequest, "BadArgument", "endpoint_name %q does not match endpoint %q in the path", d.EndpointName, endpoint)
	}
	if name != "" && !strings.EqualFold(d.Name, name) {
		return statusErr(http.StatusBadRequest, "BadArgument", "name %q does not match deployment %q in the path", d.Name, name)
	}
	d.Default()
	if err := d.Validate(); err != nil {
		return err
	}
	if d.Environment != nil && d.Environment.InferenceConfig != nil {
		return statusErr(http.StatusBadRequest, "BadArgument", "deployment %q: custom containers (environment.inference_config) need a container engine or the Kubernetes runner; this server runs deployments as local processes", d.Name)
	}
	if a := req.Artifacts; a != nil {
		for what, dg := range map[string]string{"model": a.Model, "code": a.Code, "conda": a.Conda} {
			if dg == "" && what != "conda" {
				return statusErr(http.StatusBadRequest, "BadArgument", "artifacts.%s is required: upload the %s with POST /v1/artifacts", what, what)
			}
			if dg == "" {
				continue
			}
			ok, err := s.Artifacts.Has(ctx, dg)
			if err != nil {
				return err
			}
			if !ok {
				return statusErr(http.StatusBadRequest, "BadArgument", "artifacts.%s: %s was not uploaded", what, dg)
			}
		}
	}
	return nil
}

func (s *Server) createDeployment(w http.ResponseWriter, r *http.Request) error {
	ep := r.PathValue("endpoint")
	var req DeploymentRequest
	if err := readJSON(r, &req); err != nil {
		return err
	}
	if req.Artifacts == nil {
		return statusErr(http.StatusBadRequest, "BadArgument", "artifacts are required to create a deployment")
	}
	if err := s.checkDeployment(r.Context(), ep, &req, ""); err != nil {
		return err
	}
	e, err := s.Store.GetEndpoint(r.Context(), ep)
	if err != nil {
		return err
	}
	d := &store.Deployment{Endpoint: e.Spec.Name, Name: strings.ToLower(req.Deployment.Name), State: spec.StateCreating, AllTraffic: req.AllTraffic,
		Desired: store.Revision{Generation: 1, Spec: req.Deployment, Artifacts: *req.Artifacts}}
	d.Desired.Spec.Name = d.Name
	if err := s.Store.CreateDeployment(r.Context(), d); err != nil {
		return err
	}
	s.Logger.Info("deployment created", "endpoint", d.Endpoint, "deployment", d.Name)
	return writeJSON(w, http.StatusCreated, s.deploymentView(d))
}

// scaleOnly reports whether two revisions differ only in their instance
// count or scale settings, which apply without a rolling update.
func scaleOnly(a, b store.Revision) bool {
	x, y := a.Spec, b.Spec
	x.InstanceCount, y.InstanceCount = 0, 0
	x.ScaleSettings, y.ScaleSettings = nil, nil
	return a.Artifacts == b.Artifacts && reflect.DeepEqual(x, y)
}

func (s *Server) updateDeployment(w http.ResponseWriter, r *http.Request) error {
	ep, name := r.PathValue("endpoint"), r.PathValue("deployment")
	var req DeploymentRequest
	if err := readJSON(r, &req); err != nil {
		return err
	}
	if err := s.checkDeployment(r.Context(), ep, &req, name); err != nil {
		return err
	}
	ctx := r.Context()
	for range 5 {
		d, err := s.Store.GetDeployment(ctx, ep, name)
		if err != nil {
			return err
		}
		next := store.Revision{Generation: d.Desired.Generation + 1, Spec: req.Deployment, Artifacts: d.Desired.Artifacts}
		next.Spec.Name = d.Name
		if req.Artifacts != nil {
			next.Artifacts = *req.Artifacts
		}
		if d.Active != nil && d.Active.Generation == d.Desired.Generation && scaleOnly(*d.Active, next) {
			// scaling: same generation, no rollout
			next.Generation = d.Desired.Generation
			d.Desired = next
			active := next
			d.Active = &active
		} else if reflect.DeepEqual(next.Spec, d.Desired.Spec) && next.Artifacts == d.Desired.Artifacts && d.FailedGeneration != d.Desired.Generation {
			// no change
		} else {
			d.Desired = next
			d.State = spec.StateUpdating
			if d.Active == nil {
				d.State = spec.StateCreating
			}
			d.Error = ""
		}
		if req.AllTraffic {
			d.AllTraffic = true
		}
		if err := s.Store.UpdateDeployment(ctx, d); errors.Is(err, store.ErrConflict) {
			continue
		} else if err != nil {
			return err
		}
		s.Logger.Info("deployment updated", "endpoint", d.Endpoint, "deployment", d.Name, "generation", d.Desired.Generation)
		return writeJSON(w, http.StatusOK, s.deploymentView(d))
	}
	return fmt.Errorf("update deployment %q (endpoint %q): %w", name, ep, store.ErrConflict)
}

func (s *Server) deleteDeployment(w http.ResponseWriter, r *http.Request) error {
	ep, name := r.PathValue("endpoint"), r.PathValue("deployment")
	ctx := r.Context()
	e, err := s.Store.GetEndpoint(ctx, ep)
	if err != nil {
		return err
	}
	if _, err := s.Store.GetDeployment(ctx, ep, name); err != nil {
		return err
	}
	if pct := e.Spec.Traffic[strings.ToLower(name)]; pct > 0 {
		return statusErr(http.StatusConflict, "Conflict", "deployment %q receives %d%% of endpoint %q's traffic; set it to 0 first (moe online-endpoint update -n %s --traffic \"%s=0 ...\")", name, pct, ep, ep, name)
	}
	if _, ok := e.Spec.MirrorTraffic[strings.ToLower(name)]; ok {
		delete(e.Spec.MirrorTraffic, strings.ToLower(name))
		if err := s.Store.UpdateEndpoint(ctx, e); err != nil {
			return err
		}
	}
	if _, ok := e.Spec.Traffic[strings.ToLower(name)]; ok {
		if e, err = s.Store.GetEndpoint(ctx, ep); err == nil {
			delete(e.Spec.Traffic, strings.ToLower(name))
			s.Store.UpdateEndpoint(ctx, e)
		}
	}
	if err := s.Store.DeleteDeployment(ctx, ep, name); err != nil {
		return err
	}
	s.Logger.Info("deployment deleted", "endpoint", ep, "deployment", name)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) getLogs(w http.ResponseWriter, r *http.Request) error {
	ep, name := r.PathValue("endpoint"), r.PathValue("deployment")
	var req LogsRequest
	if err := readJSON(r, &req); err != nil {
		return err
	}
	if _, err := s.Store.GetDeployment(r.Context(), ep, name); err != nil {
		return err
	}
	container := strings.ToLower(req.ContainerType)
	switch container {
	case "", "inferenceserver", "inference-server":
		container = "inference-server"
	case "storageinitializer", "storage-initializer":
		container = "storage-initializer"
	default:
		return statusErr(http.StatusBadRequest, "BadArgument", "containerType must be inference-server or storage-initializer (got %q)", req.ContainerType)
	}
	if s.Logs == nil {
		return statusErr(http.StatusNotImplemented, "NotImplemented", "logs are not available on this server")
	}
	text, err := s.Logs(ep, name, container, req.Tail)
	if err != nil {
		return statusErr(http.StatusNotFound, "ResourceNotReady", "%v", err)
	}
	return writeJSON(w, http.StatusOK, Logs{Content: text})
}

// artifactPath returns the digest of a GET /v1/artifacts/{digest} request.
func artifactPath(r *http.Request) (string, bool) {
	d, ok := strings.CutPrefix(r.URL.Path, "/v1/artifacts/")
	if !ok || r.Method != http.MethodGet || d == "" || strings.Contains(d, "/") {
		return "", false
	}
	return d, true
}

// getArtifact streams a snapshot as the tar POST /v1/artifacts took (see
// artifact.Store.WriteTar); the caller checks its sha256 against the digest.
func (s *Server) getArtifact(w http.ResponseWriter, r *http.Request) error {
	digest := r.PathValue("digest")
	if _, err := s.Artifacts.Path(digest); err != nil {
		return statusErr(http.StatusBadRequest, "BadArgument", "%v", err)
	}
	ok, err := s.Artifacts.Has(r.Context(), digest)
	if err != nil {
		return err
	}
	if !ok {
		return statusErr(http.StatusNotFound, "ResourceNotFound", "artifact %s is not stored on this server", digest)
	}
	w.Header().Set("Content-Type", "application/x-tar")
	w.Header().Set("Docker-Content-Digest", digest)
	if err := s.Artifacts.WriteTar(r.Context(), w, digest); err != nil {
		// the status is sent: the client sees a short stream and a wrong digest
		s.Logger.Warn("artifact download", "digest", digest, "err", err)
		panic(http.ErrAbortHandler)
	}
	return nil
}

func (s *Server) putArtifact(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, artifact.MaxBytes+(64<<20))
	digest, err := s.Artifacts.Put(r.Context(), r.Body)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, ArtifactRef{Digest: digest})
}

// rotateSigningKey makes a new aml_token signing key current; tokens signed
// with the previous keys stay valid until they expire.
func (s *Server) rotateSigningKey(w http.ResponseWriter, r *http.Request) error {
	if s.Signer == nil {
		return statusErr(http.StatusNotImplemented, "NotImplemented", "token signing is not configured on this server")
	}
	if err := s.Signer.Rotate(r.Context()); err != nil {
		return err
	}
	s.Logger.Info("token signing key rotated")
	w.WriteHeader(http.StatusNoContent)
	return nil
}
