package main

// Security end to end: secrets never reach logs or non-credential outputs,
// tokens are bound to their endpoint, and the server refuses secret files
// that others can read. Real `moe serve`, real Python workers, DEBUG logs.

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moe-serving/moe/internal/auth"
	"github.com/moe-serving/moe/internal/moetest"
)

func TestSecretsNeverLogged(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	python := moetest.Python(t)
	proj := project(t, python)
	dataDir := t.TempDir()
	srv := moetest.Start(t, dataDir, "--python", python) // runs with --log-level debug
	y := func(name string) string { return filepath.Join(proj, "yaml", name+".yml") }
	moetest.WriteFile(t, filepath.Join(proj, "yaml", "tok.yml"), "name: tok-endpoint\nauth_mode: aml_token\n")

	var outputs []string // everything the CLI printed except get-credentials
	cli := func(args ...string) string {
		out := srv.MustCLI(args...)
		outputs = append(outputs, out)
		return out
	}
	cli("online-endpoint", "create", "-f", y("endpoint"))
	cli("online-deployment", "create", "-f", y("blue"), "--all-traffic")
	cli("online-endpoint", "create", "-f", filepath.Join(proj, "yaml", "tok.yml"))
	cli("online-deployment", "create", "-f", y("green"), "-e", "tok-endpoint", "--all-traffic")

	p1, s1 := srv.Keys("my-endpoint")
	cli("online-endpoint", "regenerate-keys", "-n", "my-endpoint", "--key-type", "secondary")
	p2, s2 := srv.Keys("my-endpoint")
	if p2 != p1 || s2 == s1 {
		t.Fatalf("regenerate secondary changed the wrong key")
	}
	var tok struct {
		AccessToken string `json:"accessToken"`
	}
	json.Unmarshal([]byte(srv.MustCLI("online-endpoint", "get-credentials", "-n", "tok-endpoint")), &tok)
	if tok.AccessToken == "" {
		t.Fatal("no token")
	}

	body := []byte(sampleRequest)
	if resp, b := srv.Score(srv.ScoringURL("my-endpoint"), p1, body); resp.StatusCode != 200 {
		t.Fatalf("key scoring: %d %s", resp.StatusCode, b)
	}
	if resp, b := srv.Score(srv.ScoringURL("my-endpoint"), s1, body); resp.StatusCode != 401 {
		t.Errorf("the replaced secondary key still works: %d %s", resp.StatusCode, b)
	}
	if resp, b := srv.Score(srv.ScoringURL("tok-endpoint"), tok.AccessToken, body); resp.StatusCode != 200 || string(b) != "[0.5, 0.5]" {
		t.Errorf("token scoring: %d %s", resp.StatusCode, b)
	}
	if resp, _ := srv.Score(srv.ScoringURL("my-endpoint"), tok.AccessToken, body); resp.StatusCode != 401 {
		t.Errorf("a token of tok-endpoint was accepted by my-endpoint: %d", resp.StatusCode)
	}
	if resp, _ := srv.Score(srv.ScoringURL("tok-endpoint"), p1, body); resp.StatusCode != 401 {
		t.Errorf("a key was accepted by a token endpoint: %d", resp.StatusCode)
	}
	// rotating the signing key keeps earlier tokens valid
	srv.MustCLI("token-signing-key", "rotate")
	if resp, b := srv.Score(srv.ScoringURL("tok-endpoint"), tok.AccessToken, body); resp.StatusCode != 200 {
		t.Errorf("a token issued before the signing key rotation: %d %s", resp.StatusCode, b)
	}
	var tok2 struct {
		AccessToken string `json:"accessToken"`
	}
	json.Unmarshal([]byte(srv.MustCLI("online-endpoint", "get-credentials", "-n", "tok-endpoint")), &tok2)
	if resp, b := srv.Score(srv.ScoringURL("tok-endpoint"), tok2.AccessToken, body); resp.StatusCode != 200 || tok2.AccessToken == tok.AccessToken {
		t.Errorf("a token issued after the rotation: %d %s", resp.StatusCode, b)
	}
	tokAfterRotation := tok2.AccessToken
	tampered := tok.AccessToken[:len(tok.AccessToken)-2] + "AA"
	if resp, _ := srv.Score(srv.ScoringURL("tok-endpoint"), tampered, body); resp.StatusCode != 401 {
		t.Errorf("a tampered token was accepted: %d", resp.StatusCode)
	}
	if ca := cli("ca", "export"); !strings.HasPrefix(ca, "-----BEGIN CERTIFICATE-----") {
		t.Errorf("moe ca export printed %q", ca)
	}
	cli("online-endpoint", "show", "-n", "my-endpoint")
	cli("online-endpoint", "list")
	cli("online-deployment", "show", "-n", "blue", "-e", "my-endpoint")
	cli("online-deployment", "get-logs", "-n", "blue", "-e", "my-endpoint")

	secrets := map[string]string{"primary key": p1, "old secondary key": s1, "new secondary key": s2, "token": tok.AccessToken, "token after rotation": tokAfterRotation}
	admin, _ := os.ReadFile(filepath.Join(dataDir, "admin.token"))
	secrets["admin credential"] = strings.TrimSpace(string(admin))
	check := func(where, text string) {
		for name, s := range secrets {
			if len(s) >= 16 && strings.Contains(text, s) {
				t.Errorf("%s leaks the %s", where, name)
			}
		}
	}
	srv.Stop() // flushes the server's buffered log
	check("the server log (debug)", srv.Log())
	for i, o := range outputs {
		check("CLI output #"+string(rune('0'+i%10)), o)
	}
	filepath.WalkDir(filepath.Join(dataDir, "logs"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, _ := os.ReadFile(p)
			check(p, string(b))
		}
		return nil
	})
	if !strings.Contains(srv.Log(), "level=DEBUG") && !strings.Contains(srv.Log(), "level=INFO") {
		t.Error("the server logged nothing: the scan proves nothing")
	}

	// secret files are 0600, and a server refuses to start when they are not
	for _, f := range []string{"admin.token", "readonly.token", "master.key"} {
		fi, err := os.Stat(filepath.Join(dataDir, f))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, %v; want 0600", f, fi.Mode(), err)
		}
	}
	os.Chmod(filepath.Join(dataDir, "admin.token"), 0o644)
	bin := moetest.Binary(t)
	out, err := runCmd(bin, "serve", "--data-dir", dataDir, "--api-addr", "127.0.0.1:0", "--gateway-addr", "127.0.0.1:0")
	if err == nil || !strings.Contains(out, "chmod 600") {
		t.Errorf("serve with a world-readable admin.token: %v\n%s", err, out)
	}
}

// TestDataDirFromBeforeTheSharedStore: a data dir written by an older moe
// (admin credential and token signing key set in files, nothing of them in
// the store) keeps working: the CLI's credential is accepted and a token
// signed before the upgrade is still verified by the gateway.
func TestDataDirFromBeforeTheSharedStore(t *testing.T) {
	dir := t.TempDir()
	if err := auth.WriteSecretFile(filepath.Join(dir, auth.AdminTokenFile), []byte("moe-admin-from-an-older-moe\n")); err != nil {
		t.Fatal(err)
	}
	old, err := auth.OpenSigner(filepath.Join(dir, "signing"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := old.Issue("tok", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	srv := moetest.Start(t, dir)
	if b, _ := os.ReadFile(filepath.Join(dir, auth.AdminTokenFile)); string(b) != "moe-admin-from-an-older-moe\n" {
		t.Errorf("admin.token was replaced: %q", b)
	}
	proj := t.TempDir()
	moetest.WriteFile(t, filepath.Join(proj, "tok.yml"), "name: tok\nauth_mode: aml_token\n")
	srv.MustCLI("online-endpoint", "create", "-f", filepath.Join(proj, "tok.yml")) // with the old credential
	if resp, b := srv.Score(srv.ScoringURL("tok"), tok.AccessToken.Reveal(), []byte(`{}`)); resp.StatusCode == 401 {
		t.Errorf("a token signed with the old data dir's key set: %d %s", resp.StatusCode, b)
	}
	forged := tok.AccessToken.Reveal()
	forged = forged[:len(forged)-6] + "AAAAAA"
	if resp, _ := srv.Score(srv.ScoringURL("tok"), forged, []byte(`{}`)); resp.StatusCode != 401 {
		t.Errorf("a forged token: %d, want 401", resp.StatusCode)
	}
}
