// Package servingtest runs a serving.Instance for tests: its background
// loops, its prediction publisher and its gRPC server on a loopback port,
// stopped in order when the test ends.
package servingtest

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/adaptrec/adaptrec/internal/testenv"
	"github.com/adaptrec/adaptrec/serving"
)

// Serve runs inst until the test ends, waits up to ready for it to report
// ready (a catalogue and a production model loaded), and returns a client
// connection to its gRPC server. Cleanup closes the connection, stops the
// server and the loops, and closes inst.
func Serve(t testing.TB, ctx context.Context, inst *serving.Instance, ready time.Duration) *grpc.ClientConn {
	t.Helper()
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() { defer close(done); _ = inst.Run(runCtx) }()
	asyncDone := make(chan struct{})
	go func() { defer close(asyncDone); inst.AsyncPublisher().Run(runCtx) }()
	stopAll := func() {
		inst.GRPC.Stop()
		stop()
		<-done
		<-asyncDone
		inst.Close()
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		stopAll()
		t.Fatal(err)
	}
	go func() { _ = inst.GRPC.Serve(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		stopAll()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		stopAll()
	})
	testenv.Eventually(t, ready, func() error { return inst.Ready(ctx) })
	return conn
}
