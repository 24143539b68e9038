package systemd

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"
)

// An Option configures a [Notifier] ([NewNotifier], [Notify]) or the
// [Listeners] of [Activation]. Each option says which of them it applies to;
// the others ignore it.
type Option func(*config)

type config struct {
	getenv  func(string) string
	pid     int
	budget  time.Duration
	health  func(ctx context.Context) error
	logger  *slog.Logger
	errs    []error
	tick    func(pinged bool) // test seam: called after each watchdog tick, with the lock held
	sendTTL time.Duration     // how long one datagram may wait for room in the socket
}

// WithGetenv makes the package read the environment with getenv instead of
// os.Getenv (both for the Notifier and for Activation), for tests and for
// programs that keep their configuration elsewhere. A nil getenv is an error.
func WithGetenv(getenv func(key string) string) Option {
	return func(c *config) {
		if getenv == nil {
			c.errs = append(c.errs, fmt.Errorf("systemd: nil getenv"))
			return
		}
		c.getenv = getenv
	}
}

// WithShutdownTimeout tells the Notifier a shutdown budget, d, for shutdown
// events that carry no deadline. A [lifecycle.Group] puts its deadline on
// every lifecycle.EventShutdown, so a Notifier observing a Group needs no
// budget; this is for events made by hand (another supervisor's, replayed,
// or a test's). The Notifier then sizes EXTEND_TIMEOUT_USEC as if the
// deadline were the event's Time (or the moment it is observed) plus d.
// Without a deadline on the event nor this option, no extension is sent and
// systemd's TimeoutStopSec alone bounds the stop. d must be positive.
func WithShutdownTimeout(d time.Duration) Option {
	return func(c *config) {
		if d <= 0 {
			c.errs = append(c.errs, fmt.Errorf("systemd: shutdown timeout %v is not positive", d))
			return
		}
		c.budget = d
	}
}

// WithHealthCheck makes the Notifier's watchdog call check before each
// WATCHDOG=1 ping, from its own goroutine: while check returns an error, no
// ping is sent (and STATUS= says why), so that systemd restarts a process that
// is running but no longer does its work. check must return when ctx is done:
// the Notifier waits for it when the Group stops. A nil check is ignored.
func WithHealthCheck(check func(ctx context.Context) error) Option {
	return func(c *config) {
		if check != nil {
			c.health = check
		}
	}
}

// WithLogger sets the logger on which the Notifier reports what it could not
// send, and [Notify] an environment it could not use. The default is
// slog.Default(); nil discards the logs.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) {
		if l == nil {
			l = slog.New(slog.DiscardHandler)
		}
		c.logger = l
	}
}

// newConfig applies opts over the defaults.
func newConfig(opts []Option) config {
	c := config{getenv: os.Getenv, pid: os.Getpid(), sendTTL: time.Second}
	for _, opt := range opts {
		if opt == nil {
			c.errs = append(c.errs, fmt.Errorf("systemd: nil Option"))
			continue
		}
		opt(&c)
	}
	if c.logger == nil {
		c.logger = slog.Default()
	}
	return c
}
