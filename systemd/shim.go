package systemd

import (
	"time"

	"github.com/graceful-go/graceful/lifecycle"
)

// eventDeadline returns the shutdown deadline an event carries, or the zero
// time when it carries none.
//
// TODO(merge): the engine v2 adds lifecycle.Event.Deadline (set on
// EventShutdown and later events); replace the body with "return ev.Deadline".
// Until then the Notifier uses the budget given by WithShutdownTimeout.
func eventDeadline(ev lifecycle.Event) time.Time {
	_ = ev
	return time.Time{}
}
