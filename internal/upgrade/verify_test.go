package upgrade

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// scorer is a loopback scoring server that checks the bearer credential and
// answers {"result": [x*scale + offset]} for {"data": [x]}.
func scorer(t *testing.T, cred string, scale, offset float64) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if cred != "" && r.Header.Get("Authorization") != "Bearer "+cred {
			http.Error(w, `{"message":"unauthorized"}`, http.StatusUnauthorized)
			return
		}
		var in struct {
			Data []float64 `json:"data"`
		}
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &in); err != nil || in.Data == nil {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"error":"bad input"}`))
			return
		}
		out := make([]float64, len(in.Data))
		for i, x := range in.Data {
			out[i] = x*scale + offset
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"result": out})
	}))
	t.Cleanup(srv.Close)
	return srv
}

const samples = `{"data":[1,2]}

{"data":[3]}
{"nope":1}
`

func TestVerify_Parity(t *testing.T) {
	old := scorer(t, "", 2, 0) // v1 ACI without auth
	newSrv := scorer(t, "k1", 2, 0)
	rep, err := Verify(t.Context(), strings.NewReader(samples), Target{URI: old.URL + "/score"}, Target{URI: newSrv.URL + "/score", Credential: "k1"}, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.Total != 3 || rep.Matched != 3 {
		t.Fatalf("report = %+v", rep)
	}
	if rep.Cases[1].Line != 3 || rep.Cases[2].OldStatus != 400 {
		t.Errorf("cases = %+v", rep.Cases)
	}
}

func TestVerify_Mismatch(t *testing.T) {
	old := scorer(t, "old", 2, 0)
	newSrv := scorer(t, "new", 2, 0.001)
	rep, err := Verify(t.Context(), strings.NewReader(samples), Target{URI: old.URL, Credential: "old"}, Target{URI: newSrv.URL, Credential: "new"}, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() || rep.Mismatched != 2 || !strings.Contains(rep.Cases[0].Diff, "$.result[0]: 2 vs 2.001") {
		t.Fatalf("report = %+v", rep)
	}
	// Within tolerance, the same answers match.
	rep, err = Verify(t.Context(), strings.NewReader(samples), Target{URI: old.URL, Credential: "old"}, Target{URI: newSrv.URL, Credential: "new"}, VerifyOptions{Tolerance: 0.01})
	if err != nil || !rep.OK() {
		t.Fatalf("with tolerance: %+v, %v", rep, err)
	}
	// A wrong key is a status mismatch.
	rep, _ = Verify(t.Context(), strings.NewReader(`{"data":[1]}`), Target{URI: old.URL, Credential: "old"}, Target{URI: newSrv.URL, Credential: "wrong"}, VerifyOptions{})
	if rep.OK() || rep.Cases[0].Diff != "status 200 vs 401" {
		t.Errorf("wrong key: %+v", rep.Cases)
	}
	var b strings.Builder
	if err := rep.WriteText(&b); err != nil || !strings.Contains(b.String(), "MISMATCH") {
		t.Errorf("WriteText = %q, %v", b.String(), err)
	}
}

func TestVerify_BadInput(t *testing.T) {
	srv := scorer(t, "", 1, 0)
	if _, err := Verify(t.Context(), strings.NewReader("{not json\n"), Target{URI: srv.URL}, Target{URI: srv.URL}, VerifyOptions{}); err == nil {
		t.Error("Verify accepted a line that is not JSON")
	}
}

func TestDiffBodies(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		tol  float64
		want string
	}{
		{`{"a":1,"b":[1,2]}`, `{"b":[1,2],"a":1.0}`, 0, ""},
		{`{"a":1}`, `{"a":1,"c":2}`, 0, "$.c: only in new"},
		{`[1,2]`, `[1]`, 0, "$: 2 vs 1 elements"},
		{`"x"`, `"y"`, 0, `$: "x" vs "y"`},
		{`plain text`, `plain text`, 0, ""},
		{`plain`, `other`, 0, `bodies differ: "plain" vs "other"`},
		{`{"p":0.3333}`, `{"p":0.33331}`, 0.001, ""},
	} {
		if got := diffBodies([]byte(tc.a), []byte(tc.b), tc.tol); got != tc.want {
			t.Errorf("diffBodies(%s, %s) = %q; want %q", tc.a, tc.b, got, tc.want)
		}
	}
}
