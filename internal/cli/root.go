// Package cli implements the adaptrec command line for ML engineers and
// operators. Each command group lives in its own file and registers its
// constructor with register, so groups can be added without touching the root.
package cli

import (
	"context"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/adaptrec/adaptrec/internal/config"
)

var subcommands []func() *cobra.Command

// register adds a top-level command group; call it from an init function.
func register(newCmd func() *cobra.Command) { subcommands = append(subcommands, newCmd) }

// configPath is the --config flag shared by every command.
var configPath string

// NewRootCommand builds the adaptrec command tree.
func NewRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "adaptrec",
		Short: "Real-time adaptive recommendations: local stack, simulator, event log, benchmarks",
		Long: `adaptrec is the command line for the adaptrec recommendation platform.

Configuration comes from --config (or ADAPTREC_CONFIG), then ADAPTREC_* environment
variables; with neither, every command talks to the local stack started by
'adaptrec dev up'. 'adaptrec config keys' lists every key.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&configPath, "config", os.Getenv(config.EnvPrefix+"CONFIG"),
		"configuration file (YAML); ADAPTREC_* environment variables override it")
	for _, newCmd := range subcommands {
		root.AddCommand(newCmd())
	}
	return root
}

// loadConfig loads the configuration selected by --config and the environment.
func loadConfig() (config.Config, error) {
	return config.Load(configPath, nil)
}

// Execute runs the command line and returns the process exit code.
func Execute(ctx context.Context) int {
	if err := NewRootCommand().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "adaptrec:", err)
		return 1
	}
	return 0
}
