package api

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

	"github.com/moe-serving/moe/internal/diagnose"
	"github.com/moe-serving/moe/internal/store"
)

// Client calls the control-plane API. It is safe for concurrent use.
type Client struct {
	// BaseURL is the API's URL, e.g. https://127.0.0.1:8442.
	BaseURL string
	// Token is the admin (or read-only) credential.
	Token string
	// HTTP is the client to use; it must trust the server's CA.
	HTTP *http.Client
}

// APIError is an error answer from the API.
type APIError struct {
	Status int
	Body   Error
}

func (e *APIError) Error() string {
	msg := e.Body.Message
	for _, d := range e.Body.Details {
		if !strings.Contains(msg, d.Error()) {
			msg += "\n  - " + d.Error()
		}
	}
	return msg
}

// IsNotFound reports whether err is a 404 from the API.
func IsNotFound(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Status == http.StatusNotFound
}

func (c *Client) do(ctx context.Context, method, path string, body io.Reader, contentType string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(c.BaseURL, "/")+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("moe server at %s: %w (is `moe serve` running?)", c.BaseURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		ae := &APIError{Status: resp.StatusCode}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if json.Unmarshal(b, &ae.Body) != nil || ae.Body.Message == "" {
			ae.Body.Message = fmt.Sprintf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(b))
		}
		return ae
	}
	if out == nil {
		io.Copy(io.Discard, resp.Body)
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func (c *Client) doJSON(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	return c.do(ctx, method, path, body, "application/json", out)
}

func ep(name string) string { return "/v1/endpoints/" + url.PathEscape(name) }

func dep(endpoint, name string) string { return ep(endpoint) + "/deployments/" + url.PathEscape(name) }

// ListEndpoints lists endpoints.
func (c *Client) ListEndpoints(ctx context.Context) ([]*EndpointView, error) {
	var out []*EndpointView
	return out, c.doJSON(ctx, http.MethodGet, "/v1/endpoints", nil, &out)
}

// GetEndpoint shows one endpoint.
func (c *Client) GetEndpoint(ctx context.Context, name string) (*EndpointView, error) {
	var out EndpointView
	return &out, c.doJSON(ctx, http.MethodGet, ep(name), nil, &out)
}

// CreateEndpoint creates an endpoint.
func (c *Client) CreateEndpoint(ctx context.Context, req CreateEndpointRequest) (*EndpointView, error) {
	var out EndpointView
	return &out, c.doJSON(ctx, http.MethodPost, "/v1/endpoints", req, &out)
}

// UpdateEndpoint replaces an endpoint's spec (traffic included).
func (c *Client) UpdateEndpoint(ctx context.Context, name string, e any) (*EndpointView, error) {
	var out EndpointView
	return &out, c.doJSON(ctx, http.MethodPut, ep(name), e, &out)
}

// DeleteEndpoint deletes an endpoint and its deployments.
func (c *Client) DeleteEndpoint(ctx context.Context, name string) error {
	return c.doJSON(ctx, http.MethodDelete, ep(name), nil, nil)
}

// ListKeys returns a key endpoint's keys.
func (c *Client) ListKeys(ctx context.Context, name string) (*Keys, error) {
	var out Keys
	return &out, c.doJSON(ctx, http.MethodPost, ep(name)+"/listKeys", nil, &out)
}

// RegenerateKeys replaces one key.
func (c *Client) RegenerateKeys(ctx context.Context, name string, req RegenerateKeysRequest) error {
	return c.doJSON(ctx, http.MethodPost, ep(name)+"/regenerateKeys", req, nil)
}

// GetToken issues an aml_token.
func (c *Client) GetToken(ctx context.Context, name string) (*AccessToken, error) {
	var out AccessToken
	return &out, c.doJSON(ctx, http.MethodPost, ep(name)+"/token", nil, &out)
}

// ListDeployments lists an endpoint's deployments.
func (c *Client) ListDeployments(ctx context.Context, endpoint string) ([]*DeploymentView, error) {
	var out []*DeploymentView
	return out, c.doJSON(ctx, http.MethodGet, ep(endpoint)+"/deployments", nil, &out)
}

// GetDeployment shows one deployment.
func (c *Client) GetDeployment(ctx context.Context, endpoint, name string) (*DeploymentView, error) {
	var out DeploymentView
	return &out, c.doJSON(ctx, http.MethodGet, dep(endpoint, name), nil, &out)
}

// CreateDeployment creates a deployment.
func (c *Client) CreateDeployment(ctx context.Context, endpoint string, req DeploymentRequest) (*DeploymentView, error) {
	var out DeploymentView
	return &out, c.doJSON(ctx, http.MethodPost, ep(endpoint)+"/deployments", req, &out)
}

// UpdateDeployment updates a deployment.
func (c *Client) UpdateDeployment(ctx context.Context, endpoint, name string, req DeploymentRequest) (*DeploymentView, error) {
	var out DeploymentView
	return &out, c.doJSON(ctx, http.MethodPut, dep(endpoint, name), req, &out)
}

// DeleteDeployment deletes a deployment.
func (c *Client) DeleteDeployment(ctx context.Context, endpoint, name string) error {
	return c.doJSON(ctx, http.MethodDelete, dep(endpoint, name), nil, nil)
}

// GetLogs returns a deployment's logs.
func (c *Client) GetLogs(ctx context.Context, endpoint, name string, req LogsRequest) (string, error) {
	var out Logs
	err := c.doJSON(ctx, http.MethodPost, dep(endpoint, name)+"/getLogs", req, &out)
	return out.Content, err
}

// PutArtifact uploads a tar stream and returns its digest.
func (c *Client) PutArtifact(ctx context.Context, tarStream io.Reader) (string, error) {
	var out ArtifactRef
	err := c.do(ctx, http.MethodPost, "/v1/artifacts", tarStream, "application/x-tar", &out)
	return out.Digest, err
}

// Snapshot is a re-export for callers building DeploymentRequests.
type Snapshot = store.Artifacts

// Diagnose explains a deployment's failure or slowness.
func (c *Client) Diagnose(ctx context.Context, endpoint, name string) (*diagnose.Report, error) {
	var out diagnose.Report
	return &out, c.doJSON(ctx, http.MethodGet, dep(endpoint, name)+"/diagnose", nil, &out)
}

// RotateSigningKey makes a new aml_token signing key current.
func (c *Client) RotateSigningKey(ctx context.Context) error {
	return c.doJSON(ctx, http.MethodPost, "/v1/token-signing-key/rotate", nil, nil)
}
