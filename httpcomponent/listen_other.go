//go:build !linux

package httpcomponent

import (
	"context"
	"net"
)

// drainSocket does nothing here: closing the listener resets the
// connections still in its accept queue.
func (l *listener) drainSocket(*net.TCPListener, bool) {}

// drainQueue does nothing here: closing the listener resets the connections
// still in its accept queue.
func (l *listener) drainQueue(context.Context, *net.TCPListener, bool) {}
