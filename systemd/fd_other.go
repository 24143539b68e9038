//go:build !unix

package systemd

import "errors"

var errNoActivation = errors.New("socket activation is not supported on this system")

func closeOnExec(int) error    { return errNoActivation }
func checkListening(int) error { return errNoActivation }
