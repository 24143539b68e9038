//go:build !linux

package httpcomponent

import "net"

// drainSocket cannot drain a socket here: the listener is drained through
// its Accept instead (see drainThrough).
func (l *listener) drainSocket(*net.TCPListener) bool { return false }
