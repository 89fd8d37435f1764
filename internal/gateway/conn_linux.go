package gateway

import "syscall"

// initPeek prepares alive's non-blocking peek.
func (cc *clientConn) initPeek() {
	if sc, ok := cc.nc.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			cc.raw = raw
			cc.peekFn = cc.peek
		}
	}
}

// alive reports whether an idle connection is still open: a non-blocking
// MSG_PEEK finds nothing to read yet. End of stream (the instance closed
// it), an error, or unexpected bytes (an answer nobody asked for) mean it
// must not be used.
func (cc *clientConn) alive() bool {
	if cc.raw == nil {
		return true
	}
	cc.peekOK = false
	if err := cc.raw.Read(cc.peekFn); err != nil {
		return false
	}
	return cc.peekOK
}

func (cc *clientConn) peek(fd uintptr) bool {
	_, _, err := syscall.Recvfrom(int(fd), cc.peekBuf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	cc.peekOK = err == syscall.EAGAIN
	return true // never wait for readiness
}
