package systemd

import (
	"testing"

	"github.com/graceful-go/graceful/lifecycle"
)

// BenchmarkSend measures one datagram to a socket standing in for systemd's,
// as each notification costs (a socket is opened for each, as sd_notify does).
func BenchmarkSend(b *testing.B) {
	sd := newFakeSystemd(b, true)
	n, err := NewNotifier(WithGetenv(env("NOTIFY_SOCKET", sd.addr)))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := n.Send("WATCHDOG=1"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkObserveOff measures what the Notifier costs a Group's event when
// NOTIFY_SOCKET is unset.
func BenchmarkObserveOff(b *testing.B) {
	n, err := NewNotifier(WithGetenv(env()))
	if err != nil {
		b.Fatal(err)
	}
	ev := lifecycle.Event{Kind: lifecycle.EventReady, Component: "http"}
	b.ReportAllocs()
	for b.Loop() {
		n.Observe(ev)
	}
}
