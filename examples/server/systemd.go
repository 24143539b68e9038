package main

import (
	"fmt"
	"log/slog"
	"net"
	"slices"

	"github.com/graceful-go/graceful/lifecycle"
	"github.com/graceful-go/graceful/systemd"
)

// activated is what the server takes from socket activation: the listening
// sockets named "http" and "grpc" (FileDescriptorName= in the socket units,
// or systemd-socket-activate --fdname=http:grpc). A server whose socket was
// not passed has a nil listener, and binds its flag's address in its Start:
// the same binary runs under systemd, under an activator, and by hand.
type activated struct {
	sockets    *systemd.Listeners
	http, grpc net.Listener // nil: not passed, the server binds -http-addr / -grpc-addr
}

// activation reads the sockets passed by socket activation (LISTEN_PID,
// LISTEN_FDS, LISTEN_FDNAMES). Its errors (a malformed environment, a socket
// named "http" or "grpc" that is not a listening TCP socket) match
// lifecycle.ErrInvalid: the unit is wrong, and restarting does not help.
// Sockets passed under other names are left alone, and logged.
func activation(log *slog.Logger) (*activated, error) {
	sockets, err := systemd.Activation()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", lifecycle.ErrInvalid, err)
	}
	a := &activated{sockets: sockets}
	if !sockets.Activated() {
		return a, nil
	}
	names := sockets.Names()
	take := func(name, flag string) (net.Listener, error) {
		if !slices.Contains(names, name) {
			log.Info("server: socket activation passed no socket named "+name+": binding "+flag, "sockets", names)
			return nil, nil
		}
		ln, err := sockets.Listen(name, "tcp", "")
		if err != nil {
			return nil, fmt.Errorf("%w: %w", lifecycle.ErrInvalid, err)
		}
		log.Info("server: socket activation: "+name+" serves on the inherited socket, "+flag+" is ignored", "addr", ln.Addr().String())
		return ln, nil
	}
	if a.http, err = take("http", "-http-addr"); err == nil {
		a.grpc, err = take("grpc", "-grpc-addr")
	}
	if err != nil {
		if a.http != nil {
			_ = a.http.Close()
		}
		_ = sockets.Close()
		return nil, err
	}
	for _, n := range names {
		if n != "http" && n != "grpc" {
			log.Warn("server: socket activation passed a socket this server does not use (name it http or grpc)", "name", n)
		}
	}
	return a, nil
}

// close closes the sockets that were passed and not taken (this process's
// descriptors: systemd keeps its own). The listeners handed to the servers
// are theirs to close.
func (a *activated) close() { _ = a.sockets.Close() }
