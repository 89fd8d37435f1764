package stats

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// Handler serves GET /v1/stats?endpoint=E&since=1h&step=10s: the Series of
// endpoint E as JSON. since and step are Go durations (defaults 1h and
// 10s). It does no authentication: mount it behind the API's credential
// check. Errors are JSON {"code", "message"} like the API's.
func (r *Recorder) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodGet && req.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeJSON(w, http.StatusMethodNotAllowed, apiError{"MethodNotAllowed", "use GET"})
			return
		}
		q := req.URL.Query()
		endpoint := q.Get("endpoint")
		if endpoint == "" {
			writeJSON(w, http.StatusBadRequest, apiError{"BadArgument", "query parameter endpoint is required: /v1/stats?endpoint=NAME&since=1h&step=10s"})
			return
		}
		since, err := durationParam(q.Get("since"), time.Hour)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, apiError{"BadArgument", "since: " + err.Error()})
			return
		}
		step, err := durationParam(q.Get("step"), 10*time.Second)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, apiError{"BadArgument", "step: " + err.Error()})
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		writeJSON(w, http.StatusOK, r.Series(endpoint, since, step))
	})
}

type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func durationParam(s string, def time.Duration) (time.Duration, error) {
	if s == "" {
		return def, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration such as 1h, 15m or 10s", s)
	}
	if d <= 0 {
		return 0, fmt.Errorf("%q must be positive", s)
	}
	return d, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
