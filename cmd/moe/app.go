package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/moe-serving/moe/internal/api"
	"github.com/moe-serving/moe/internal/auth"
	"github.com/moe-serving/moe/internal/pki"
)

// app holds what every client command shares.
type app struct {
	dataDir string
	stdin   io.Reader
	stdout  io.Writer
	stderr  io.Writer
}

func defaultDataDir() string {
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "moe")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".local", "share", "moe")
	}
	return ".moe"
}

func (a *app) dir() string {
	if a.dataDir != "" {
		return a.dataDir
	}
	if d := os.Getenv("MOE_HOME"); d != "" {
		return d
	}
	return defaultDataDir()
}

// serverInfo is written by `moe serve` into the data dir: the addresses it
// actually bound (port 0 works) and its naming settings.
type serverInfo struct {
	API     string `json:"api"`
	Gateway string `json:"gateway"`
	Region  string `json:"region"`
	Domain  string `json:"domain"`
	PID     int    `json:"pid"`

	// Admin is the admin listener's base URL (http://host:port, serving
	// /metrics and /-/healthz); empty when --admin-addr is empty.
	Admin string `json:"admin,omitempty"`
}

const serverInfoFile = "server.json"

func readServerInfo(dir string) (*serverInfo, error) {
	b, err := os.ReadFile(filepath.Join(dir, serverInfoFile))
	if err != nil {
		return nil, &usageError{msg: fmt.Sprintf("no moe server found in %s (%v)", dir, err), hint: "start one with `moe serve`, or point --data-dir / MOE_HOME at its data folder"}
	}
	var si serverInfo
	if err := json.Unmarshal(b, &si); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, serverInfoFile), err)
	}
	return &si, nil
}

// connection is what a client command needs to talk to a running server.
type connection struct {
	info *serverInfo
	api  *api.Client
	tls  *tls.Config
	http *http.Client // trusts the local CA and resolves scoring hosts to the gateway
}

func (a *app) connect() (*connection, error) {
	dir := a.dir()
	si, err := readServerInfo(dir)
	if err != nil {
		return nil, err
	}
	pool, err := pki.LoadCertPool(filepath.Join(dir, "pki"))
	if err != nil {
		return nil, err
	}
	tok, err := auth.ReadSecretFile(filepath.Join(dir, "admin.token"))
	if err != nil {
		return nil, err
	}
	tlsCfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	gw := si.Gateway
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	tr := &http.Transport{
		TLSClientConfig:   tlsCfg,
		ForceAttemptHTTP2: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, _, _ := net.SplitHostPort(addr)
			// scoring hosts (<endpoint>.<region>.inference.<domain>) need no DNS here
			if strings.HasSuffix(host, ".inference."+si.Domain) || host == "localhost" && si.Domain == "localhost" {
				if _, port, _ := net.SplitHostPort(addr); port == portOf(gw) {
					return dialer.DialContext(ctx, network, gw)
				}
			}
			return dialer.DialContext(ctx, network, addr)
		},
	}
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Minute}
	return &connection{info: si, tls: tlsCfg, http: hc, api: &api.Client{BaseURL: si.API, Token: strings.TrimSpace(string(tok)), HTTP: hc}}, nil
}

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}
