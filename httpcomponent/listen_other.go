//go:build !linux

package httpcomponent

// drain does nothing here: closing the listener resets the connections still
// in its accept queue.
func (l *listener) drain() {}
