package devstack

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
)

// handedOut remembers every port freePort returned in this process, so two
// stacks started concurrently by parallel tests never get the same port even
// though each probe listener is closed before the child binds it.
var handedOut struct {
	sync.Mutex
	ports map[int]bool
}

// freePort returns a loopback TCP port that was free a moment ago and has not
// been handed out before by this process.
func freePort() (int, error) {
	handedOut.Lock()
	defer handedOut.Unlock()
	if handedOut.ports == nil {
		handedOut.ports = make(map[int]bool)
	}
	for range 50 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("pick a free port: %w", err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		if err := ln.Close(); err != nil {
			return 0, fmt.Errorf("pick a free port: %w", err)
		}
		if !handedOut.ports[port] {
			handedOut.ports[port] = true
			return port, nil
		}
	}
	return 0, errors.New("pick a free port: the kernel kept returning ports already handed out")
}

// checkPortFree reports an error when something already listens on the
// loopback port.
func checkPortFree(port int) error {
	ln, err := net.Listen("tcp", loopback(port))
	if err != nil {
		return err
	}
	return ln.Close()
}

// loopback returns 127.0.0.1:port.
func loopback(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }
