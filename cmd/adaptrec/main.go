// Command adaptrec is the command line for ML engineers and operators: the
// local stack, the world simulator, the event log and the benchmarks.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/adaptrec/adaptrec/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Execute(ctx)
	stop()
	os.Exit(code)
}
