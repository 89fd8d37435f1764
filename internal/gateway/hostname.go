package gateway

import "strings"

// endpointFromHost returns the endpoint label of a Host header value
// <endpoint><suffix>[:port], where suffix is ".<region>.inference.<domain>"
// in lower case. It matches case-insensitively and accepts a trailing dot.
// inDomain reports whether host is under suffix at all; the label is then
// returned as written (it may be empty or contain dots, and then names no
// endpoint).
func endpointFromHost(host, suffix string) (label string, inDomain bool) {
	host = stripPort(host)
	host = strings.TrimSuffix(host, ".")
	if len(host) <= len(suffix) || !strings.EqualFold(host[len(host)-len(suffix):], suffix) {
		return "", false
	}
	return host[:len(host)-len(suffix)], true
}

// stripPort removes a trailing :port, leaving IPv6 literals ([::1]) whole.
func stripPort(host string) string {
	i := strings.LastIndexByte(host, ':')
	if i < 0 || strings.IndexByte(host[i:], ']') >= 0 {
		return host
	}
	return host[:i]
}

// endpointFromPath parses the path form used by clients without wildcard DNS:
// /endpoints/<endpoint>/score and /endpoints/<endpoint>/swagger.json. It
// returns the endpoint and the path to forward (/score or /swagger.json).
func endpointFromPath(p string) (endpoint, forward string, ok bool) {
	rest, ok := strings.CutPrefix(p, "/endpoints/")
	if !ok {
		return "", "", false
	}
	i := strings.IndexByte(rest, '/')
	if i <= 0 {
		return "", "", false
	}
	switch forward = rest[i:]; forward {
	case "/score", "/swagger.json":
		return rest[:i], forward, true
	}
	return "", "", false
}
