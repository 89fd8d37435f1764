//go:build !linux

package gateway

func (cc *clientConn) initPeek() {}

// alive cannot check without blocking on this platform: an idle
// connection the instance closed fails the request that takes it.
func (cc *clientConn) alive() bool { return true }
