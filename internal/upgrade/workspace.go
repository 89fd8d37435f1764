package upgrade

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// Workspace reads v1 services and their keys from a v1 workspace's Model
// Management Service REST API (facts v1-services.md §1.1, §2.1).
//
// The zero value is not usable: set BaseURL. It is safe for concurrent use.
type Workspace struct {
	// BaseURL is the MMS workspace URL, up to and including
	// /workspaces/{workspace}:
	// https://<host>/modelmanagement/v1.0/subscriptions/<sub>/resourceGroups/<rg>/providers/Microsoft.MachineLearningServices/workspaces/<ws>
	BaseURL string
	// Token is the Azure AD bearer token the user supplies (never logged).
	Token string
	// Client sends the requests; nil means http.DefaultClient.
	Client *http.Client
}

// ErrServiceNotFound is returned by Service for a 404.
var ErrServiceNotFound = errors.New("upgrade: v1 service not found")

// Service fetches one service (GET /services/{name}?expand=true, so models
// are included).
func (w *Workspace) Service(ctx context.Context, name string) (*Service, error) {
	b, err := w.do(ctx, http.MethodGet, "/services/"+url.PathEscape(name)+"?expand=true")
	if err != nil {
		return nil, fmt.Errorf("get v1 service %q: %w", name, err)
	}
	s, err := ImportService(b)
	if err != nil {
		return nil, fmt.Errorf("get v1 service %q: %w", name, err)
	}
	return s, nil
}

// Services lists the workspace's services (following nextLink), keeping only
// the given compute type when computeType is not "" ("ACI", "AKS").
func (w *Workspace) Services(ctx context.Context, computeType string) ([]*Service, error) {
	q := url.Values{"expand": {"true"}}
	if computeType != "" {
		q.Set("computeType", computeType)
	}
	next := "/services?" + q.Encode()
	var out []*Service
	for page := 0; next != "" && page < 1000; page++ {
		b, err := w.do(ctx, http.MethodGet, next)
		if err != nil {
			return out, fmt.Errorf("list v1 services: %w", err)
		}
		var list struct {
			Value    []json.RawMessage `json:"value"`
			NextLink string            `json:"nextLink"`
		}
		if err := json.Unmarshal(b, &list); err != nil {
			return out, fmt.Errorf("list v1 services: %w", err)
		}
		for i, raw := range list.Value {
			s, err := ImportService(raw)
			if err != nil {
				return out, fmt.Errorf("list v1 services: item %d: %w", i, err)
			}
			if computeType == "" || strings.EqualFold(s.ComputeType, computeType) {
				out = append(out, s)
			}
		}
		next = list.NextLink
	}
	return out, nil
}

// Keys fetches a service's keys (POST /services/{name}/listkeys).
func (w *Workspace) Keys(ctx context.Context, name string) (*Keys, error) {
	b, err := w.do(ctx, http.MethodPost, "/services/"+url.PathEscape(name)+"/listkeys")
	if err != nil {
		return nil, fmt.Errorf("list keys of v1 service %q: %w", name, err)
	}
	k, err := ImportKeys(b)
	if err != nil {
		return nil, fmt.Errorf("list keys of v1 service %q: %w", name, err)
	}
	return k, nil
}

// do sends a request to BaseURL+rel, or to rel itself when it is absolute
// (a nextLink); an absolute URL must stay on BaseURL's host, so the token is
// never sent elsewhere.
func (w *Workspace) do(ctx context.Context, method, rel string) ([]byte, error) {
	if w.BaseURL == "" {
		return nil, errors.New("no workspace URL")
	}
	target := strings.TrimRight(w.BaseURL, "/") + rel
	if strings.HasPrefix(rel, "http://") || strings.HasPrefix(rel, "https://") {
		base, err1 := url.Parse(w.BaseURL)
		u, err2 := url.Parse(rel)
		if err1 != nil || err2 != nil || u.Host != base.Host {
			return nil, fmt.Errorf("refusing to follow %q off the workspace host", rel)
		}
		target = rel
	}
	var body io.Reader
	if method == http.MethodPost {
		body = bytes.NewReader(nil)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return nil, err
	}
	if w.Token != "" {
		req.Header.Set("Authorization", "Bearer "+w.Token)
	}
	req.Header.Set("Accept", "application/json")
	c := w.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return nil, err
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return nil, ErrServiceNotFound
	case resp.StatusCode/100 != 2:
		return nil, fmt.Errorf("%s %s: %s: %s", method, req.URL.Path, resp.Status, clip(b))
	}
	return b, nil
}
