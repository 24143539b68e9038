//go:build unix

package systemd

import (
	"errors"
	"syscall"
)

// closeOnExec marks fd close-on-exec, failing if it is not open.
func closeOnExec(fd int) error {
	flags, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_GETFD, 0)
	if errno != 0 {
		return errno
	}
	if flags&syscall.FD_CLOEXEC != 0 {
		return nil
	}
	if _, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_SETFD, flags|syscall.FD_CLOEXEC); errno != 0 {
		return errno
	}
	return nil
}

// checkListening fails unless fd is a listening socket.
func checkListening(fd int) error {
	v, err := syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_ACCEPTCONN)
	if err != nil {
		return err
	}
	if v == 0 {
		return errors.New("not a listening socket (with Accept=yes, a socket unit passes connections, not listeners)")
	}
	return nil
}
