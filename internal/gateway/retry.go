package gateway

import (
	"errors"
	"io"
	"net"
	"net/http"
)

// retryTransport re-sends a request to another ready instance when the
// connection to the chosen one could not be made: a dial error means the
// request never left the gateway, so retrying cannot run it twice. This
// covers the moment between an instance dying (kill -9, crash) and the
// route table without it; requests already sent to it are not retried.
type retryTransport struct {
	base http.RoundTripper
}

// maxDialRetries bounds the instances tried after the first.
const maxDialRetries = 2

func (t retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	x, _ := req.Context().Value(exchangeKey{}).(*exchange)
	if x == nil {
		return t.base.RoundTrip(req)
	}
	// A transport closes the body when the request fails, dial errors
	// included; keep it open for a retry (net/http's server closes it when
	// the handler returns). A body in memory is simply rewound.
	if req.Body != nil && req.Body != http.NoBody && x.pre.b == nil {
		x.keep.ReadCloser = req.Body // in the exchange: no allocation per request
		req.Body = &x.keep
	}
	resp, err := t.base.RoundTrip(req)
	tried := []*Instance{x.claim.instance}
	for range maxDialRetries {
		if err == nil || !isDialError(err) || req.Context().Err() != nil {
			return resp, err
		}
		next := takeSlot(without(x.claim.deployment.Instances, tried), slotLimit(x.claim.deployment))
		if next == nil {
			return resp, err
		}
		// move the request's slot to the new instance; the deferred
		// release in forward frees the one it holds at the end
		x.claim.instance.Outstanding.Add(-1)
		x.instance = next
		tried = append(tried, next)
		out := req.Clone(req.Context())
		out.URL.Host = next.Addr
		x.pre.rewind()
		resp, err = t.base.RoundTrip(out)
	}
	return resp, err
}

func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

func without(ins, skip []*Instance) []*Instance {
	out := make([]*Instance, 0, len(ins))
outer:
	for _, in := range ins {
		for _, s := range skip {
			if in == s {
				continue outer
			}
		}
		out = append(out, in)
	}
	return out
}

// keepOpen hides Close from the transport.
type keepOpen struct{ io.ReadCloser }

func (keepOpen) Close() error { return nil }
