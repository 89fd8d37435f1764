package gateway

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"sync"
	"time"
)

// newTransport returns the default transport to instances: HTTP/1.1 keep-alive
// to a few hosts with many requests each, no proxy, and no transparent
// gzip, so bodies pass through as the model wrote them. Timeouts of whole
// requests come from the request context (the deployment's request timeout).
func newTransport() *http.Transport {
	var p http.Protocols
	p.SetHTTP1(true)
	return &http.Transport{
		Proxy: nil,
		DialContext: (&net.Dialer{
			Timeout:   5 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		MaxIdleConns:        0, // no overall limit; per host below
		MaxIdleConnsPerHost: 1024,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		WriteBufferSize:     32 << 10,
		ReadBufferSize:      32 << 10,
		Protocols:           &p,
	}
}

// rewrite points the outbound request at the chosen instance: plain HTTP to
// its address, the endpoint prefix stripped, no Authorization header (the
// gateway checked it; instances never see keys or tokens), the request id
// the gateway answers with, and, when tracing, a traceparent naming the
// upstream span (otherwise the caller's trace headers pass as they came).
func (s *Server) rewrite(pr *httputil.ProxyRequest) {
	x := exchangeFrom(pr.In.Context())
	u := pr.Out.URL
	u.Scheme = "http"
	u.Host = x.instance.Addr
	u.Path = x.path
	u.RawPath = ""
	pr.Out.Host = ""
	h := pr.Out.Header
	delete(h, hdrAuthorization)
	h[hdrRequestID] = x.idHeader
	if x.upSpan != nil {
		injectTrace(pr.In.Context(), h)
	}
	if x.pre.b != nil {
		// The reverse proxy wrapped the body; send the one in memory as
		// such: the instance client writes it with the headers, and so
		// does http.Transport for a body it knows is in memory.
		if s.client != nil {
			pr.Out.Body = &x.pre
		} else {
			pr.Out.Body = io.NopCloser(&x.pre.Reader)
		}
	}
}

// modifyResponse applies the Azure answer rules to an instance's response:
// 2xx passes through; any other status becomes 424 with
// ms-azureml-model-error-statuscode/-reason and the model's body and content
// type, unless the endpoint passes model statuses through. Headers the
// gateway sets itself (request id, deployment) are dropped from the model's
// answer so they appear once.
func (s *Server) modifyResponse(resp *http.Response) error {
	x := exchangeFrom(resp.Request.Context())
	x.upstream = time.Since(x.sent)
	x.modelStatus = resp.StatusCode
	if x.bodyTooLarge() {
		return s.errTooLarge // the model answered before the cut; the client still gets 413
	}
	h := resp.Header
	delete(h, hdrRequestID)
	delete(h, hdrModelDeployment)
	if out := x.w.Header(); out[hdrRequestID] == nil {
		// A 1xx answer (103 Early Hints) made the reverse proxy clear the
		// response headers; set the gateway's again.
		out[hdrRequestID] = x.idHeader
		out[hdrModelDeployment] = []string{x.deployment.Name}
	}
	if resp.StatusCode/100 == 2 || x.endpoint.PassModelStatus {
		return nil
	}
	h[hdrErrorStatusCode] = []string{strconv.Itoa(resp.StatusCode)}
	h[hdrErrorReason] = []string{reasonModelError}
	resp.StatusCode = http.StatusFailedDependency
	resp.Status = "424 Failed Dependency"
	return nil
}

// proxyError maps a failed proxy exchange to an error for writeError: the
// body limit tripping (413), the request timeout (408), the client leaving
// (logged as 499), or an unreachable instance (502).
func (s *Server) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	x := exchangeFrom(r.Context())
	var se *statusError
	switch {
	case x.bodyTooLarge():
		err = s.errTooLarge
	case errors.As(err, &se):
	case errors.Is(context.Cause(r.Context()), errDeadline) || pastDeadline(r.Context()):
		// (A dial or read that ends at the deadline can fail just before
		// the context's timer fires.)
		err = errTimeout(x.deployment)
	case x.r.Context().Err() != nil:
		err = errClientClosed(err)
	default:
		err = errUpstream(x.deployment, x.instance, err)
	}
	s.writeError(x, err)
}

func pastDeadline(ctx context.Context) bool {
	dl, ok := ctx.Deadline()
	return ok && !time.Now().Before(dl)
}

// bufferPool lends the reverse proxy 32 KiB copy buffers. Arrays are pooled
// by pointer so Put does not allocate.
type bufferPool struct{}

const bufferSize = 32 << 10

var buffers = sync.Pool{New: func() any { return new([bufferSize]byte) }}

func (bufferPool) Get() []byte { return buffers.Get().(*[bufferSize]byte)[:] }

func (bufferPool) Put(b []byte) {
	if cap(b) >= bufferSize {
		buffers.Put((*[bufferSize]byte)(b[:bufferSize]))
	}
}
