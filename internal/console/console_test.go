package console

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"path"
	"regexp"
	"strings"
	"testing"
)

func TestNew_ServesFiles(t *testing.T) {
	srv := httptest.NewServer(New(Config{}))
	defer srv.Close()
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	tests := []struct {
		path        string
		status      int
		contentType string
		body        string
	}{
		{"/console/", 200, "text/html", `<script type="module" src="js/main.js">`},
		{"/console/js/main.js", 200, "text/javascript", "hashchange"},
		{"/console/css/console.css", 200, "text/css", ":root"},
		{"/console/favicon.svg", 200, "image/svg+xml", "<svg"},
		{"/console", 301, "", ""},
		{"/console/nope.js", 404, "", ""},
		{"/console/js/", 404, "", ""}, // no directory listings
		{"/console/api/invoke", 405, "application/json", "use POST"},
		{"/console/api/other", 404, "application/json", "no console API route"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			resp, err := noRedirect.Get(srv.URL + tt.path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, b)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, tt.contentType) {
				t.Errorf("content type %q, want %q", ct, tt.contentType)
			}
			if !strings.Contains(string(b), tt.body) {
				t.Errorf("body does not hold %q:\n%.300s", tt.body, b)
			}
			if tt.status == 200 {
				if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
					t.Errorf("CSP %q, want default-src 'self'", csp)
				}
				if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
					t.Error("missing X-Content-Type-Options: nosniff")
				}
			}
			if tt.status == 301 && resp.Header.Get("Location") != "/console/" {
				t.Errorf("redirect to %q, want /console/", resp.Header.Get("Location"))
			}
		})
	}
}

// TestStatic_Offline checks what a browser would fetch: every module
// import resolves to an embedded file and nothing points off the origin
// (the machine may be offline).
func TestStatic_Offline(t *testing.T) {
	files, _ := fs.Sub(static, "static")
	importRe := regexp.MustCompile(`(?m)^\s*import\s.*?from\s+'([^']+)'`)
	offsite := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}`)
	n := 0
	err := fs.WalkDir(files, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		n++
		b, err := fs.ReadFile(files, p)
		if err != nil {
			return err
		}
		text := strings.ReplaceAll(string(b), `xmlns="http://www.w3.org/2000/svg"`, "")
		if m := offsite.FindString(text); m != "" {
			t.Errorf("%s refers to %q; the console must not load anything from elsewhere", p, m)
		}
		if path.Ext(p) == ".js" {
			for _, m := range importRe.FindAllStringSubmatch(text, -1) {
				target := path.Join(path.Dir(p), m[1])
				if !strings.HasPrefix(m[1], ".") {
					t.Errorf("%s imports %q: only relative imports of embedded files work offline", p, m[1])
				} else if _, err := fs.Stat(files, target); err != nil {
					t.Errorf("%s imports %q: %v", p, m[1], err)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 10 {
		t.Errorf("only %d embedded files", n)
	}
}

func TestNew_Invoke(t *testing.T) {
	type call struct {
		endpoint, deployment string
		body                 []byte
	}
	var got call
	ok := func(ctx context.Context, e, d string, body []byte) (int, http.Header, []byte, error) {
		got = call{e, d, body}
		return 200, http.Header{"Content-Type": {"application/json"}, "Azureml-Model-Deployment": {"blue"}}, []byte(`[1.5]`), nil
	}
	tests := []struct {
		name     string
		invoke   func(ctx context.Context, e, d string, body []byte) (int, http.Header, []byte, error)
		body     string
		status   int
		want     string
		wantCall *call
	}{
		{"scores through Invoke", ok, `{"endpoint":"fraud","deployment":"blue","body":"{\"data\":[1]}"}`, 200,
			`"status":200,"headers":{"Azureml-Model-Deployment":["blue"],"Content-Type":["application/json"]},"body":"[1.5]"`,
			&call{"fraud", "blue", []byte(`{"data":[1]}`)}},
		{"deployment is optional", ok, `{"endpoint":"fraud","body":""}`, 200, `"body":"[1.5]"`, &call{"fraud", "", []byte{}}},
		{"an error status is an answer", func(context.Context, string, string, []byte) (int, http.Header, []byte, error) {
			return 500, nil, []byte(`{"error":"boom"}`), nil
		}, `{"endpoint":"fraud","body":"x"}`, 200, `"status":500,"headers":{},"body":"{\"error\":\"boom\"}"`, nil},
		{"binary answers come back as base64", func(context.Context, string, string, []byte) (int, http.Header, []byte, error) {
			return 200, nil, []byte{0xff, 0xfe}, nil
		}, `{"endpoint":"fraud","body":"x"}`, 200, `"body":"//4=","body_base64":true`, nil},
		{"endpoint is required", ok, `{"body":"x"}`, 400, "endpoint is required", nil},
		{"unknown fields are refused", ok, `{"endpoint":"fraud","key":"x"}`, 400, `unknown field \"key\"`, nil},
		{"no answer is a bad gateway", func(context.Context, string, string, []byte) (int, http.Header, []byte, error) {
			return 0, nil, nil, errors.New("dial tcp: connection refused")
		}, `{"endpoint":"fraud","body":"x"}`, 502, "invoke endpoint fraud: dial tcp: connection refused", nil},
		{"without Invoke it is not implemented", nil, `{"endpoint":"fraud","body":"x"}`, 501, "cannot send test requests", nil},
		{"bodies are bounded", ok, `{"endpoint":"fraud","body":"` + strings.Repeat("a", maxInvokeBody+100<<10) + `"}`, 413, "larger than 8 MiB", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got = call{}
			h := New(Config{Invoke: tt.invoke})
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("POST", "/console/api/invoke", strings.NewReader(tt.body)))
			if rec.Code != tt.status || !strings.Contains(rec.Body.String(), tt.want) {
				t.Errorf("%d %s\nwant %d containing %s", rec.Code, rec.Body.String(), tt.status, tt.want)
			}
			if !json.Valid(rec.Body.Bytes()) {
				t.Errorf("answer is not JSON: %s", rec.Body.String())
			}
			if tt.wantCall != nil && (got.endpoint != tt.wantCall.endpoint || got.deployment != tt.wantCall.deployment || !bytes.Equal(got.body, tt.wantCall.body)) {
				t.Errorf("Invoke got %q %q %q, want %q %q %q", got.endpoint, got.deployment, got.body, tt.wantCall.endpoint, tt.wantCall.deployment, tt.wantCall.body)
			}
		})
	}
}
