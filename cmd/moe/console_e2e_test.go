package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/moe-serving/moe/internal/moetest"
)

// TestConsoleInBrowser drives the web console of a real moe serve in
// headless Chromium: log in with the admin credential, see the endpoint,
// send a request from the test form and see the model's answer (through the
// real gateway and Python worker). Screenshots are kept as artifacts.
func TestConsoleInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("browser end-to-end")
	}
	browser := "/usr/bin/chromium"
	if p := os.Getenv("MOE_TEST_CHROMIUM"); p != "" {
		browser = p
	}
	if _, err := os.Stat(browser); err != nil {
		t.Skipf("%s not found: apt-get install chromium (scripts/test does) to run the console test", browser)
	}
	python := moetest.Python(t)
	proj := project(t, python)
	dataDir := t.TempDir()
	srv := moetest.Start(t, dataDir, "--python", python)
	srv.MustCLI("online-endpoint", "create", "-f", filepath.Join(proj, "yaml", "endpoint.yml"))
	srv.MustCLI("online-deployment", "create", "-f", filepath.Join(proj, "yaml", "blue.yml"), "--all-traffic")
	want := expected(t, python, proj)
	key, _ := srv.Keys("my-endpoint")
	for range 20 { // some traffic for the charts
		srv.Score(srv.ScoringURL("my-endpoint"), key, []byte(sampleRequest))
	}
	admin, err := os.ReadFile(filepath.Join(dataDir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	artifacts := os.Getenv("MOE_TEST_ARTIFACTS")
	if artifacts == "" {
		artifacts = t.TempDir()
	}
	os.MkdirAll(artifacts, 0o755)

	actx, cancelAlloc := chromedp.NewExecAllocator(t.Context(),
		chromedp.ExecPath(browser), chromedp.Flag("headless", true), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true), chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("ignore-certificate-errors", true), // moe's local CA is not in Chromium's store
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1440, 1000))
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	// start the browser under the test-wide context: the first action's
	// context owns the browser, and the steps below use short-lived ones
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start %s: %v", browser, err)
	}
	step := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, scancel := context.WithTimeout(ctx, 30*time.Second)
		defer scancel()
		if err := chromedp.Do(sctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	textOf := func(sel string) string {
		sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
		defer scancel()
		s, err := chromedp.Run(sctx, chromedp.TextContent(chromedp.CSS(sel)))
		if err != nil {
			t.Logf("read %s: %v", sel, err)
		}
		return s
	}
	shot := func(name string) {
		sctx, scancel := context.WithTimeout(ctx, 20*time.Second)
		defer scancel()
		png, err := chromedp.Run(sctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		p := filepath.Join(artifacts, name)
		os.WriteFile(p, png, 0o644)
		t.Logf("screenshot: %s", p)
	}

	step("log in", chromedp.Navigate(srv.API+"/console/"), chromedp.WaitVisible(chromedp.ID("credential")),
		chromedp.SendKeys(chromedp.ID("credential"), strings.TrimSpace(string(admin))),
		chromedp.Click(chromedp.CSS(`[data-testid="sign-in"]`)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-endpoint="my-endpoint"]`)))
	if s := textOf(`tr[data-endpoint="my-endpoint"]`); !strings.Contains(s, "Succeeded") || !strings.Contains(s, "blue") {
		t.Errorf("endpoint row: %q", s)
	}
	shot("console-real-endpoints.png")
	step("open the endpoint", chromedp.Click(chromedp.CSS(`tr[data-endpoint="my-endpoint"] a`)),
		chromedp.WaitVisible(chromedp.CSS(`section[data-deployment="blue"]`)))
	step("open metrics", chromedp.Click(chromedp.CSS(`a[data-tab="metrics"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="chart-latency"] canvas`)))
	shot("console-real-metrics.png")
	step("send a test request", chromedp.Click(chromedp.CSS(`a[data-tab="test"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="test-body"]`)),
		chromedp.SetValue(chromedp.CSS(`[data-testid="test-body"]`), sampleRequest),
		chromedp.Click(chromedp.CSS(`[data-testid="test-send"]`)))
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(textOf(`[data-testid="answer-status"]`), "200") {
		if time.Now().After(deadline) {
			t.Fatalf("no 200 in the answer: status %q body %q", textOf(`[data-testid="answer-status"]`), textOf(`[data-testid="answer-body"]`))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := textOf(`[data-testid="answer-body"]`); !strings.Contains(got, strings.Trim(want, "[]")[:12]) {
		t.Errorf("answer body %q, want the model's %s", got, want)
	}
	if got := textOf(`[data-testid="answer-headers"]`); !strings.Contains(strings.ToLower(got), "azureml-model-deployment") {
		t.Errorf("answer headers %q", got)
	}
	shot("console-real-test.png")
	page := textOf("body")
	if strings.Contains(page, key) {
		t.Error("the console shows a key without being asked")
	}
}
