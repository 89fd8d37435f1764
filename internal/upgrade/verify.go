package upgrade

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
)

// Target is a scoring URI and its credential.
type Target struct {
	// URI is the full scoring URI (…/score).
	URI string
	// Credential is sent as "Authorization: Bearer <Credential>" (a key or
	// a token, as both v1 and v2 expect); empty sends no Authorization.
	Credential string
}

// VerifyOptions tune Verify. The zero value compares exactly with
// http.DefaultClient.
type VerifyOptions struct {
	// Tolerance is the largest absolute difference allowed between two JSON
	// numbers that otherwise sit at the same place (0: exact).
	Tolerance float64
	// Client sends the requests; nil means http.DefaultClient.
	Client *http.Client
	// ContentType of the requests; "" means application/json.
	ContentType string
}

// Case is the outcome of one request.
type Case struct {
	// Line is the request's 1-based line in the JSONL input.
	Line      int    `json:"line"`
	OldStatus int    `json:"old_status"`
	NewStatus int    `json:"new_status"`
	Match     bool   `json:"match"`
	Diff      string `json:"diff,omitempty"`
}

// Report is the parity report of a Verify run.
type Report struct {
	Old        string `json:"old_scoring_uri"`
	New        string `json:"new_scoring_uri"`
	Total      int    `json:"total"`
	Matched    int    `json:"matched"`
	Mismatched int    `json:"mismatched"`
	Cases      []Case `json:"cases"`
}

// OK reports whether every request matched.
func (r *Report) OK() bool { return r.Mismatched == 0 }

// Verify replays each request of a JSONL stream (one JSON request body per
// line; blank lines are skipped) against the old and the new scoring URI
// and compares status codes and bodies: JSON bodies structurally with
// opts.Tolerance on numbers, other bodies byte for byte. Verify only
// returns an error for bad input (a line that is not JSON) or a cancelled
// ctx; a transport failure on either side is a mismatch in the report.
// Requests are sent one at a time, old first.
func Verify(ctx context.Context, requests io.Reader, oldTarget, newTarget Target, opts VerifyOptions) (*Report, error) {
	client := opts.Client
	if client == nil {
		client = http.DefaultClient
	}
	ct := firstNonEmpty(opts.ContentType, "application/json")
	rep := &Report{Old: oldTarget.URI, New: newTarget.URI, Cases: []Case{}}
	sc := bufio.NewScanner(requests)
	sc.Buffer(make([]byte, 0, 64<<10), 64<<20)
	line := 0
	for sc.Scan() {
		line++
		body := bytes.TrimSpace(sc.Bytes())
		if len(body) == 0 {
			continue
		}
		if !json.Valid(body) {
			return rep, fmt.Errorf("verify: requests line %d is not JSON", line)
		}
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		c := Case{Line: line}
		os, ob, oerr := send(ctx, client, oldTarget, ct, body)
		ns, nb, nerr := send(ctx, client, newTarget, ct, body)
		c.OldStatus, c.NewStatus = os, ns
		switch {
		case oerr != nil || nerr != nil:
			c.Diff = strings.TrimSpace(fmt.Sprintf("%s %s", errText("old", oerr), errText("new", nerr)))
		case os != ns:
			c.Diff = fmt.Sprintf("status %d vs %d", os, ns)
		default:
			c.Diff = diffBodies(ob, nb, opts.Tolerance)
		}
		c.Match = c.Diff == ""
		rep.Total++
		if c.Match {
			rep.Matched++
		} else {
			rep.Mismatched++
		}
		rep.Cases = append(rep.Cases, c)
	}
	if err := sc.Err(); err != nil {
		return rep, fmt.Errorf("verify: read requests: %w", err)
	}
	return rep, nil
}

func errText(side string, err error) string {
	if err == nil {
		return ""
	}
	return side + ": " + err.Error() + ";"
}

func send(ctx context.Context, c *http.Client, t Target, ct string, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.URI, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", ct)
	if t.Credential != "" {
		req.Header.Set("Authorization", "Bearer "+t.Credential)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	return resp.StatusCode, b, err
}

// diffBodies returns "" when the bodies match, else a description of the
// first difference.
func diffBodies(a, b []byte, tol float64) string {
	var x, y any
	da := json.NewDecoder(bytes.NewReader(a))
	da.UseNumber()
	db := json.NewDecoder(bytes.NewReader(b))
	db.UseNumber()
	if da.Decode(&x) != nil || db.Decode(&y) != nil {
		if bytes.Equal(bytes.TrimSpace(a), bytes.TrimSpace(b)) {
			return ""
		}
		return fmt.Sprintf("bodies differ: %s vs %s", clip(a), clip(b))
	}
	return diffJSON("$", x, y, tol)
}

func diffJSON(at string, x, y any, tol float64) string {
	switch xv := x.(type) {
	case map[string]any:
		yv, ok := y.(map[string]any)
		if !ok {
			return fmt.Sprintf("%s: object vs %s", at, kind(y))
		}
		keys := map[string]bool{}
		for k := range xv {
			keys[k] = true
		}
		for k := range yv {
			keys[k] = true
		}
		for _, k := range sortedKeys(keys) {
			xe, xok := xv[k]
			ye, yok := yv[k]
			p := at + "." + k
			switch {
			case !xok:
				return p + ": only in new"
			case !yok:
				return p + ": only in old"
			}
			if d := diffJSON(p, xe, ye, tol); d != "" {
				return d
			}
		}
		return ""
	case []any:
		yv, ok := y.([]any)
		if !ok {
			return fmt.Sprintf("%s: array vs %s", at, kind(y))
		}
		if len(xv) != len(yv) {
			return fmt.Sprintf("%s: %d vs %d elements", at, len(xv), len(yv))
		}
		for i := range xv {
			if d := diffJSON(at+"["+strconv.Itoa(i)+"]", xv[i], yv[i], tol); d != "" {
				return d
			}
		}
		return ""
	case json.Number:
		yv, ok := y.(json.Number)
		if !ok {
			return fmt.Sprintf("%s: number vs %s", at, kind(y))
		}
		if xv == yv {
			return ""
		}
		xf, err1 := xv.Float64()
		yf, err2 := yv.Float64()
		if err1 != nil || err2 != nil || math.Abs(xf-yf) > tol {
			return fmt.Sprintf("%s: %s vs %s", at, xv, yv)
		}
		return ""
	default:
		if x != y {
			return fmt.Sprintf("%s: %s vs %s", at, short(x), short(y))
		}
		return ""
	}
}

func kind(v any) string {
	switch v.(type) {
	case map[string]any:
		return "object"
	case []any:
		return "array"
	case json.Number:
		return "number"
	case string:
		return "string"
	case bool:
		return "boolean"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", v)
}

func short(v any) string {
	b, _ := json.Marshal(v)
	if len(b) > 120 {
		return string(b[:120]) + "…"
	}
	return string(b)
}

func clip(b []byte) string {
	s := string(bytes.TrimSpace(b))
	if len(s) > 120 {
		s = s[:120] + "…"
	}
	return strconv.Quote(s)
}

// WriteText prints the report as a table, one line per request.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "old: %s\nnew: %s\n", r.Old, r.New)
	fmt.Fprintf(&b, "%-6s %-5s %-5s %-8s %s\n", "LINE", "OLD", "NEW", "RESULT", "DIFF")
	for _, c := range r.Cases {
		res := "match"
		if !c.Match {
			res = "MISMATCH"
		}
		fmt.Fprintf(&b, "%-6d %-5s %-5s %-8s %s\n", c.Line, status(c.OldStatus), status(c.NewStatus), res, c.Diff)
	}
	fmt.Fprintf(&b, "%d requests: %d match, %d mismatch\n", r.Total, r.Matched, r.Mismatched)
	_, err := io.WriteString(w, b.String())
	return err
}

func status(s int) string {
	if s == 0 {
		return "-"
	}
	return strconv.Itoa(s)
}
