// Package systemd lets a program supervised by a [lifecycle.Group] talk to
// systemd, with no dependency beyond the standard library.
//
// Two things, each a no-op when the program does not run under systemd, so
// that the same binary runs both ways:
//
//   - The notify protocol of Type=notify services ([Notifier], [Notify]):
//     READY=1 once the Group is running, STOPPING=1 when its shutdown begins,
//     EXTEND_TIMEOUT_USEC so that systemd waits for a shutdown that keeps to
//     the Group's budget, STATUS= with the phase and what went wrong, and
//     WATCHDOG=1 pings only while the Group is live. One line enables it:
//
//     g := lifecycle.New(systemd.Notify(), lifecycle.WithShutdownTimeout(10*time.Second))
//
//   - Socket activation ([Activation], [Listeners]): the listening sockets
//     systemd passes (LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES), looked up by
//     name, with a fallback to binding the address when the process was not
//     activated. With socket activation the listening socket outlives the
//     process: while one process stops and the next starts, connections wait
//     in the kernel's queue, and a restart refuses none.
//
// The package reads the environment (through [WithGetenv], os.Getenv by
// default) and never changes it: like sd_notify and sd_listen_fds called with
// unset_environment = 0, it leaves NOTIFY_SOCKET and LISTEN_* in place, so
// they are inherited by child processes. That is harmless: LISTEN_PID names
// this process, not its children, and with NotifyAccess=main systemd ignores
// notifications from other processes.
package systemd
