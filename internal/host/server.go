package host

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"time"
)

// Messages of the Azure inference server (facts §9.4, §9.5).
const (
	msgUserError      = "An unexpected error occurred in scoring script. Check the logs for more info."
	msgInternalError  = "An unexpected internal error occurred. Check the logs for more info."
	msgRequestIDLimit = "x-request-id must not exceed 100 characters"
	msgClientIDLimit  = "x-ms-request-id and x-ms-client-request-id must not exceed 100 characters"
	msgNotFound       = "The requested URL was not found on the server. If you entered the URL manually please check your spelling and try again."
	msgMethod         = "The method is not allowed for the requested URL."
	msgTooLarge       = "Request body exceeds the 1 GiB limit of the model host."
	msgBadBody        = "The request body could not be read."
	headerIDLimit     = 100
)

// Shared, read-only header value slices (net/http never mutates them).
var (
	valJSON    = []string{"application/json"}
	valText    = []string{"text/plain; charset=utf-8"}
	valHTML    = []string{"text/html; charset=utf-8"}
	valTrue    = []string{"True"}
	valFalse   = []string{"False"}
	valAllow   = []string{"GET, POST, OPTIONS"}
	valAllowGe = []string{"GET"}
)

// ServeHTTP routes the host's few paths. A switch instead of a ServeMux
// keeps /score free of pattern matching; the routes are fixed.
func (h *hostRun) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/score":
		if h.cfg.Tracer != nil {
			h.scoreTraced(w, r)
			return
		}
		h.score(w, r, nil)
	case "/":
		if !isGet(r) {
			h.methodNotAllowed(w, valAllowGe)
			return
		}
		w.Header()["Content-Type"] = valText
		io.WriteString(w, "Healthy")
	case "/-/ready":
		if !isGet(r) {
			h.methodNotAllowed(w, valAllowGe)
			return
		}
		h.readiness(w)
	case "/swagger.json":
		if !isGet(r) {
			h.methodNotAllowed(w, valAllowGe)
			return
		}
		h.swagger(w, r)
	default:
		writeError(w, http.StatusNotFound, msgNotFound, false)
	}
}

func (h *hostRun) handler() http.Handler { return h }

func isGet(r *http.Request) bool { return r.Method == http.MethodGet || r.Method == http.MethodHead }

func (h *hostRun) methodNotAllowed(w http.ResponseWriter, allow []string) {
	w.Header()["Allow"] = allow
	writeError(w, http.StatusMethodNotAllowed, msgMethod, false)
}

// readiness answers 200 once every worker finished init() at start and at
// least one is alive; 503 with a JSON reason otherwise.
func (h *hostRun) readiness(w http.ResponseWriter) {
	alive, n := int(h.pool.alive.Load()), h.spec.workers()
	reason := ""
	switch {
	case h.draining.Load():
		reason = "shutting down"
	case !h.ready.Load():
		reason = "workers are starting (init() has not completed)"
	case alive == 0:
		reason = "no worker is alive (restarting)"
	}
	w.Header()["Content-Type"] = valJSON
	if reason != "" {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, `{"ready": false, "reason": %s, "workers": %d, "alive": %d}`, pyJSONString(reason), n, alive)
		return
	}
	fmt.Fprintf(w, `{"ready": true, "workers": %d, "alive": %d}`, n, alive)
}

// swagger serves a user-provided swagger file from the code dir.
func (h *hostRun) swagger(w http.ResponseWriter, r *http.Request) {
	version := r.URL.Query().Get("version")
	if version == "" {
		version = "2"
	}
	var names []string
	switch version {
	case "2", "2.0":
		names = []string{"swagger.json", "swagger2.json"}
	case "3", "3.0":
		names = []string{"swagger3.json"}
	case "3.1":
		names = []string{"swagger3.1.json"}
	default:
		writeError(w, http.StatusNotFound, fmt.Sprintf("Swagger version [%s] is not valid. Supported versions: [2, 3, 3.1].", version), false)
		return
	}
	for _, name := range names {
		b, err := os.ReadFile(filepath.Join(h.spec.dir, name))
		if err == nil {
			w.Header()["Content-Type"] = valJSON
			w.Header()["X-Ms-Run-Function-Failed"] = valFalse
			w.Write(b)
			return
		}
	}
	writeError(w, http.StatusNotFound, fmt.Sprintf("Swagger version [%s] is not supported for the scoring script. Add %s to the code directory to serve it.", version, names[0]), false)
}

// score is /score: request ids, input mode, one frame exchange, response.
// tr is nil unless tracing (see scoreTraced).
func (h *hostRun) score(w http.ResponseWriter, r *http.Request, tr *runTrace) {
	start := time.Now()
	ctx := r.Context()
	hdr := w.Header()
	hdr["X-Ms-Server-Version"] = h.versionVal
	// One allocation backs every per-request header value below.
	vals := make([]string, 5)

	reqID := first(r.Header["X-Request-Id"])
	if len(reqID) > headerIDLimit {
		writeError(w, http.StatusRequestHeaderFieldsTooLarge, msgRequestIDLimit, false)
		return
	}
	if reqID == "" {
		reqID = newUUID()
	}
	vals[0] = reqID
	hdr["X-Request-Id"] = vals[0:1:1]
	legacy, client := first(r.Header["X-Ms-Request-Id"]), first(r.Header["X-Ms-Client-Request-Id"])
	if legacy != "" {
		if client == "" {
			client = legacy
		}
	} else if client != "" {
		legacy = client
	} else {
		legacy = reqID
	}
	if len(legacy) > headerIDLimit || len(client) > headerIDLimit {
		writeError(w, http.StatusRequestHeaderFieldsTooLarge, msgClientIDLimit, false)
		return
	}
	vals[1] = legacy
	hdr["X-Ms-Request-Id"] = vals[1:2:2]
	if client != "" {
		vals[2] = client
		hdr["X-Ms-Client-Request-Id"] = vals[2:3:3]
	}
	if t, ok := r.Header["Traceid"]; ok {
		hdr["Traceid"] = t
	}

	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodOptions:
	default:
		h.methodNotAllowed(w, valAllow)
		return
	}
	// The input mode is known once a worker has imported the script.
	select {
	case <-h.started:
	case <-ctx.Done():
		return
	}
	flags := h.flags.Load()
	rawhttp := flags&readyRawHTTP != 0
	if r.Method == http.MethodOptions && !rawhttp {
		hdr["Content-Type"] = valHTML
		hdr["X-Ms-Run-Function-Failed"] = valFalse
		w.WriteHeader(http.StatusOK)
		return
	}

	// Build the request frame: header placeholder, meta, body read straight
	// from the connection into the same buffer.
	bp := getBuf()
	buf := (*bp)[:frameHeaderLen]
	var aux uint32
	if flags&(readyHeaders|readyRawHTTP) != 0 {
		aux |= reqMeta
		var traceparent string
		if tr != nil {
			traceparent = tr.traceparent
		}
		buf = appendRequestMeta(buf, r, traceparent)
	}
	metaLen := len(buf) - frameHeaderLen
	var err error
	if !rawhttp && isGet(r) {
		aux |= reqQuery
		buf = append(buf, r.URL.RawQuery...)
	} else {
		buf, err = readBody(buf, r)
	}
	*bp = buf[:0]
	if err != nil {
		putBuf(bp)
		if errors.Is(err, errFrameTooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, msgTooLarge, false)
		} else {
			writeError(w, http.StatusBadRequest, msgBadBody, false)
		}
		return
	}

	wk, err := h.pool.get(ctx)
	if err != nil {
		putBuf(bp)
		return // the client went away (or the host is stopping)
	}
	id := h.nextID.Add(1)
	putHeader(buf, kindRequest, id, aux, metaLen, len(buf)-frameHeaderLen-metaLen)
	res, err := wk.call(ctx, id, buf)
	putBuf(bp)
	if err != nil {
		switch {
		case errors.Is(err, errBackstop):
			writeError(w, http.StatusInternalServerError, fmt.Sprintf("Scoring timeout after %d ms", h.timeout.Milliseconds()), true)
		case errors.Is(err, errWorkerDied):
			h.log.Error("worker exited while handling a request", "worker", wk.slot, "request_id", reqID)
			writeError(w, http.StatusInternalServerError, msgUserError, true)
		default:
			// ctx ended: the client is gone; nothing to write.
		}
		return
	}
	wk.release(wk)
	if tr != nil {
		tr.worker, tr.execUS, tr.ran = wk.slot, res.f.Aux, true
	}

	status := http.StatusOK
	if len(res.f.Meta) == 0 {
		hdr["Content-Type"] = valJSON
		hdr["X-Ms-Run-Function-Failed"] = valFalse
	} else {
		var rm responseMeta
		var pairs [8][2][]byte
		rm.headers = pairs[:0]
		if err := parseResponseMeta(res.f.Meta, &rm); err != nil {
			putBuf(res.buf)
			h.log.Error("bad response meta from worker", "worker", wk.slot, "err", err)
			writeError(w, http.StatusInternalServerError, msgInternalError, false)
			return
		}
		status = rm.status
		for _, kv := range rm.headers {
			name := http.CanonicalHeaderKey(string(kv[0]))
			switch name {
			case "Content-Length", "Transfer-Encoding", "Connection", "X-Ms-Run-Fn-Exec-Ms", "X-Ms-Run-Function-Failed":
				continue
			}
			hdr[name] = append(hdr[name], string(kv[1]))
		}
		if rm.failed {
			hdr["X-Ms-Run-Function-Failed"] = valTrue
		} else {
			hdr["X-Ms-Run-Function-Failed"] = valFalse
		}
	}
	vals[3] = formatExecMs(res.f.Aux)
	hdr["X-Ms-Run-Fn-Exec-Ms"] = vals[3:4:4]
	body := res.f.Body
	vals[4] = strconv.Itoa(len(body))
	hdr["Content-Length"] = vals[4:5:5]
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		w.Write(body)
	}
	putBuf(res.buf)

	if h.log.Enabled(ctx, slog.LevelInfo) {
		h.log.LogAttrs(ctx, slog.LevelInfo, "request",
			slog.String("method", r.Method), slog.String("path", r.URL.RequestURI()),
			slog.Int("status", status), slog.Duration("took", time.Since(start)),
			slog.Int("length", len(body)), slog.String("request_id", reqID))
	}
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

// appendRequestMeta encodes method, path, query and every header line.
// Only scripts that take request_headers or use @rawhttp pay for this. A
// non-empty traceparent replaces the request's own (the host's run span
// when tracing).
func appendRequestMeta(buf []byte, r *http.Request, traceparent string) []byte {
	n := pairLen(":method", r.Method) + pairLen(":path", r.URL.RequestURI()) + pairLen(":query", r.URL.RawQuery) + pairLen("Host", r.Host)
	keys := make([]string, 0, len(r.Header)) // small ones stay on the stack
	for k, vs := range r.Header {
		if traceparent != "" && k == hdrTraceparent {
			continue
		}
		keys = append(keys, k)
		for _, v := range vs {
			n += pairLen(k, v)
		}
	}
	if traceparent != "" {
		keys = append(keys, hdrTraceparent)
		n += pairLen(hdrTraceparent, traceparent)
	}
	slices.Sort(keys)
	buf = slices.Grow(buf, n+int(max(r.ContentLength, 0)))
	buf = appendPair(buf, ":method", r.Method)
	buf = appendPair(buf, ":path", r.URL.RequestURI())
	buf = appendPair(buf, ":query", r.URL.RawQuery)
	buf = appendPair(buf, "Host", r.Host)
	for _, k := range keys {
		if traceparent != "" && k == hdrTraceparent {
			buf = appendPair(buf, k, traceparent)
			continue
		}
		for _, v := range r.Header[k] {
			buf = appendPair(buf, k, v)
		}
	}
	return buf
}

// readBody appends the request body to buf, reading straight into it.
func readBody(buf []byte, r *http.Request) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return buf, nil
	}
	if r.ContentLength > int64(MaxFrame) {
		return buf, errFrameTooBig
	}
	if r.ContentLength > 0 {
		n := len(buf)
		buf = slices.Grow(buf, int(r.ContentLength))[:n+int(r.ContentLength)]
		if _, err := io.ReadFull(r.Body, buf[n:]); err != nil {
			return buf[:n], err
		}
		return buf, nil
	}
	for {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, max(cap(buf), 4096))
		}
		m, err := r.Body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+m]
		if len(buf) > MaxFrame+frameHeaderLen {
			return buf, errFrameTooBig
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// formatExecMs renders microseconds as milliseconds with 3 decimals.
func formatExecMs(us uint32) string {
	var b [16]byte
	out := strconv.AppendUint(b[:0], uint64(us/1000), 10)
	frac := us % 1000
	out = append(out, '.', byte('0'+frac/100), byte('0'+frac/10%10), byte('0'+frac%10))
	return string(out)
}

// writeError writes {"message": msg} as the Azure server does (Python's
// json.dumps formatting) with x-ms-run-function-failed. It is the one place
// the host itself writes an error response.
func writeError(w http.ResponseWriter, status int, msg string, failed bool) {
	hdr := w.Header()
	hdr["Content-Type"] = valJSON
	if failed {
		hdr["X-Ms-Run-Function-Failed"] = valTrue
	} else {
		hdr["X-Ms-Run-Function-Failed"] = valFalse
	}
	body := `{"message": ` + pyJSONString(msg) + `}`
	hdr["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(status)
	io.WriteString(w, body)
}

// pyJSONString quotes s like Python's json.dumps (ensure_ascii=True).
func pyJSONString(s string) string {
	const hexDigits = "0123456789abcdef"
	b := make([]byte, 0, len(s)+2)
	b = append(b, '"')
	for _, r := range s {
		switch {
		case r == '"':
			b = append(b, '\\', '"')
		case r == '\\':
			b = append(b, '\\', '\\')
		case r == '\n':
			b = append(b, '\\', 'n')
		case r == '\r':
			b = append(b, '\\', 'r')
		case r == '\t':
			b = append(b, '\\', 't')
		case r == '\b':
			b = append(b, '\\', 'b')
		case r == '\f':
			b = append(b, '\\', 'f')
		case r < 0x20 || (r >= 0x7f && r <= 0xffff):
			b = append(b, '\\', 'u', hexDigits[r>>12&0xf], hexDigits[r>>8&0xf], hexDigits[r>>4&0xf], hexDigits[r&0xf])
		case r > 0xffff:
			r -= 0x10000
			hi, lo := 0xd800+(r>>10), 0xdc00+(r&0x3ff)
			b = append(b, '\\', 'u', hexDigits[hi>>12&0xf], hexDigits[hi>>8&0xf], hexDigits[hi>>4&0xf], hexDigits[hi&0xf])
			b = append(b, '\\', 'u', hexDigits[lo>>12&0xf], hexDigits[lo>>8&0xf], hexDigits[lo>>4&0xf], hexDigits[lo&0xf])
		default:
			b = append(b, byte(r))
		}
	}
	b = append(b, '"')
	return string(b)
}

// newUUID returns a random (version 4) UUID string.
func newUUID() string {
	var u [16]byte
	_, _ = rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], u[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], u[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], u[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], u[8:10])
	s[23] = '-'
	hex.Encode(s[24:], u[10:])
	return string(s[:])
}

// serverVersion is the x-ms-server-version value: "moe/" + module version.
func serverVersion() string {
	v := "dev"
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v = bi.Main.Version
	}
	return "moe/" + v
}
