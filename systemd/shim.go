package systemd

import (
	"time"

	"github.com/graceful-go/graceful/lifecycle"
)

// eventDeadline returns the shutdown deadline an event carries, or the zero
// time when it carries none: EventShutdown carries it.
func eventDeadline(ev lifecycle.Event) time.Time {
	if ev.Kind != lifecycle.EventShutdown {
		return time.Time{}
	}
	return ev.Deadline
}
