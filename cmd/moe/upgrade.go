package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/moe-serving/moe/internal/api"
	"github.com/moe-serving/moe/internal/pki"
	"github.com/moe-serving/moe/internal/spec"
	"github.com/moe-serving/moe/internal/upgrade"
)

func newUpgradeCmd(a *app) *cobra.Command {
	cmd := upgrade.NewCommand(a.stdout, a.stderr, upgrade.WithApplier(upgrade.ApplierFunc(a.applyUpgrade)), upgrade.WithNewSide(a.upgradeNewSide))
	// refusals and parity mismatches exit 1 with their own report
	wrap := func(c *cobra.Command) {
		if c.RunE == nil {
			return
		}
		f := c.RunE
		c.RunE = func(cmd *cobra.Command, args []string) error {
			err := f(cmd, args)
			var re *upgrade.RefusedError
			var pe *upgrade.ParityError
			if errors.As(err, &re) || errors.As(err, &pe) {
				return &exitError{code: 1, err: err}
			}
			return err
		}
	}
	for _, c := range cmd.Commands() {
		wrap(c)
	}
	return cmd
}

// applyUpgrade creates (or, when re-run, updates) the endpoint with the kept
// keys and the deployment with 100 % traffic on the running server, and
// waits until it is ready. It never touches the v1 service.
func (a *app) applyUpgrade(ctx context.Context, req upgrade.ApplyRequest) (*upgrade.Applied, error) {
	c, err := a.connect()
	if err != nil {
		return nil, err
	}
	e := req.Endpoint
	cur, err := c.api.GetEndpoint(ctx, e.Name)
	switch {
	case api.IsNotFound(err):
		// traffic names the deployment, which does not exist yet: the
		// server refuses it at creation; the deployment takes 100 % below
		ce := e
		ce.Traffic, ce.MirrorTraffic = nil, nil
		cr := api.CreateEndpointRequest{Endpoint: ce}
		if req.Keys != nil {
			cr.Keys = &api.Keys{PrimaryKey: req.Keys.PrimaryKey, SecondaryKey: req.Keys.SecondaryKey}
		}
		if _, err = c.api.CreateEndpoint(ctx, cr); err != nil {
			return nil, fmt.Errorf("create endpoint %q: %w", e.Name, err)
		}
		fmt.Fprintf(a.stderr, "Created endpoint %s (%s auth)\n", e.Name, e.AuthMode)
	case err != nil:
		return nil, err
	default:
		if cur.AuthMode != e.AuthMode {
			return nil, fmt.Errorf("endpoint %q exists with auth_mode %s, the plan wants %s: pick another --endpoint-name", e.Name, cur.AuthMode, e.AuthMode)
		}
		fmt.Fprintf(a.stderr, "Endpoint %s exists: reusing it\n", e.Name)
		// a first run without --keys (or keys changed since) must not leave
		// the endpoint on keys the v1 clients do not have
		if req.Keys != nil && cur.AuthMode == spec.AuthKey {
			k, err := c.api.ListKeys(ctx, e.Name)
			if err != nil {
				return nil, fmt.Errorf("endpoint %q: keys: %w", e.Name, err)
			}
			for _, x := range []struct{ typ, have, want string }{
				{"Primary", k.PrimaryKey, req.Keys.PrimaryKey},
				{"Secondary", k.SecondaryKey, req.Keys.SecondaryKey},
			} {
				if x.have == x.want {
					continue
				}
				if err := c.api.RegenerateKeys(ctx, e.Name, api.RegenerateKeysRequest{KeyType: x.typ, KeyValue: x.want}); err != nil {
					return nil, fmt.Errorf("endpoint %q: set the kept %s key: %w", e.Name, strings.ToLower(x.typ), err)
				}
				fmt.Fprintf(a.stderr, "Set the kept %s key on endpoint %s\n", strings.ToLower(x.typ), e.Name)
			}
		}
	}
	d := req.Deployment
	d.Default()
	arts, err := a.snapshot(ctx, c, &d)
	if err != nil {
		return nil, fmt.Errorf("deployment %q: %w", d.Name, err)
	}
	dr := api.DeploymentRequest{Deployment: d, Artifacts: arts, AllTraffic: true}
	pr := newProgress(a.stderr)
	pr.provisioningSteps(ctx, c.api, e.Name, d.Name) // baseline: lines already there
	var v *api.DeploymentView
	if _, err := c.api.GetDeployment(ctx, e.Name, d.Name); api.IsNotFound(err) {
		v, err = c.api.CreateDeployment(ctx, e.Name, dr)
		if err != nil {
			return nil, fmt.Errorf("create deployment %q: %w", d.Name, err)
		}
	} else if err != nil {
		return nil, err
	} else if v, err = c.api.UpdateDeployment(ctx, e.Name, d.Name, dr); err != nil {
		return nil, fmt.Errorf("update deployment %q: %w", d.Name, err)
	}
	if v, err = a.waitDeployed(ctx, c, pr, e.Name, d.Name, v.Generation, true); err != nil {
		return nil, err
	}
	if v.ProvisioningState == spec.StateFailed {
		return nil, fmt.Errorf("deployment %q (endpoint %q) failed: %s", d.Name, e.Name, v.Error)
	}
	if cur, err = c.api.GetEndpoint(ctx, e.Name); err != nil {
		return nil, err
	}
	return &upgrade.Applied{ScoringURI: cur.ScoringURI, AuthMode: cur.AuthMode}, nil
}

// upgradeNewSide tells `upgrade verify` how to reach an endpoint of the
// server in the data dir: its scoring URI, its primary key (or a token) and
// a client that trusts moe's CA besides the system's and dials the gateway
// for scoring host names.
func (a *app) upgradeNewSide(ctx context.Context, endpoint string) (*upgrade.NewSide, error) {
	c, err := a.connect()
	if err != nil {
		return nil, err
	}
	ns := &upgrade.NewSide{}
	tr, ok := c.http.Transport.(*http.Transport)
	if !ok {
		return nil, errors.New("unexpected HTTP transport")
	}
	tr = tr.Clone()
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if ca, err := os.ReadFile(filepath.Join(a.dir(), "pki", pki.CACertFile)); err == nil {
		pool.AppendCertsFromPEM(ca)
	}
	tr.TLSClientConfig = tr.TLSClientConfig.Clone()
	tr.TLSClientConfig.RootCAs = pool
	ns.Client = &http.Client{Transport: tr}
	v, err := c.api.GetEndpoint(ctx, endpoint)
	if err != nil {
		// the client still helps with an explicit --new-uri
		return ns, nil
	}
	ns.ScoringURI = v.ScoringURI
	if tok, err := c.bearer(ctx, v); err == nil {
		ns.Credential = tok
	}
	return ns, nil
}
