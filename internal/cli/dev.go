package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/adaptrec/adaptrec/internal/config"
	"github.com/adaptrec/adaptrec/internal/devstack"
)

func init() { register(newDevCmd) }

// stateDirEnv overrides the default state directory of `adaptrec dev up`.
const stateDirEnv = config.EnvPrefix + "STATE_DIR"

func newDevCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run the local stack: Kafka-protocol broker, Redis, S3 and Temporal",
	}
	cmd.AddCommand(newDevUpCmd(), newDevStatusCmd())
	return cmd
}

func newDevUpCmd() *cobra.Command {
	var (
		stateDir string
		without  []string
	)
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Start the local stack and keep it running until Ctrl-C",
		Long: `Start the local stack on the fixed ports every adaptrec command uses by default:

  Kafka-protocol broker  ` + config.DevKafkaAddr + `  (devtools/kafkabroker, franz-go kfake)
  Redis                  ` + config.DevRedisAddr + `  (Debian redis-server)
  S3                     ` + config.DevS3Endpoint + `  (versitygw, bucket ` + config.DevS3Bucket + `)
  Temporal               ` + config.DevTemporalAddr + `  (temporal server start-dev, UI ` + config.DevTemporalUI + `)

Data persists in the state directory across restarts: the broker's log and
consumer offsets, Redis's append-only file, S3 objects as plain files and
Temporal's SQLite database. Each component logs to <state dir>/logs/.

The servers come from $ADAPTREC_TOOLS_DIR, else .tools/bin of this checkout
(` + "`make tools`" + ` installs them), else $PATH. The command stays in the foreground;
Ctrl-C or SIGTERM stops every component cleanly (a second Ctrl-C kills them).`,
		Example: `  adaptrec dev up
  adaptrec dev up --without temporal
  adaptrec dev up --state-dir /tmp/adaptrec-dev`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			comps, err := componentsWithout(without)
			if err != nil {
				return err
			}
			dir, err := resolveStateDir(stateDir)
			if err != nil {
				return err
			}
			return devUp(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), devstack.Options{
				StateDir:   dir,
				Components: comps,
				Ports:      devstack.DevPorts(),
				Persist:    true,
			})
		},
	}
	cmd.Flags().StringVar(&stateDir, "state-dir", os.Getenv(stateDirEnv),
		"directory for data and logs (env "+stateDirEnv+"; default .adaptrec/dev in the repository root, else in the working directory)")
	cmd.Flags().StringSliceVar(&without, "without", nil,
		"components to leave out: kafka, redis, s3, temporal (repeat the flag or separate with commas)")
	return cmd
}

// componentsWithout returns every component except the named ones.
func componentsWithout(names []string) ([]devstack.Component, error) {
	skip := make(map[devstack.Component]bool)
	for _, n := range names {
		c, err := devstack.ParseComponent(n)
		if err != nil {
			return nil, fmt.Errorf("--without: %w", err)
		}
		skip[c] = true
	}
	var comps []devstack.Component
	for _, c := range devstack.All() {
		if !skip[c] {
			comps = append(comps, c)
		}
	}
	if len(comps) == 0 {
		return nil, errors.New("--without leaves no component to start")
	}
	return comps, nil
}

// resolveStateDir applies the default: .adaptrec/dev at the repository root,
// so the stack's state is the same from any subdirectory.
func resolveStateDir(dir string) (string, error) {
	if dir == "" {
		base, err := devstack.ModuleRoot()
		if err != nil {
			if base, err = os.Getwd(); err != nil {
				return "", fmt.Errorf("state dir: %w", err)
			}
		}
		dir = filepath.Join(base, ".adaptrec", "dev")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("state dir: %w", err)
	}
	return abs, nil
}

// devUp runs the stack opts describes until ctx is done or a component
// crashes, printing its addresses to stdout and progress to stderr.
func devUp(ctx context.Context, stdout, stderr io.Writer, opts devstack.Options) error {
	start := time.Now()
	fmt.Fprintf(stderr, "starting %v with state in %s\n", opts.Components, opts.StateDir)
	opts.Logf = func(format string, args ...any) { fmt.Fprintf(stderr, format+"\n", args...) }
	stack, err := devstack.Start(ctx, opts)
	if err != nil {
		return fmt.Errorf("dev up: %w", err)
	}
	fmt.Fprintf(stdout, "\nlocal stack ready in %s\n\n", time.Since(start).Round(time.Millisecond))
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	for _, ep := range stack.URLs() {
		fmt.Fprintf(tw, "  %s\t%s\n", ep.Name, ep.URL)
	}
	fmt.Fprintf(tw, "  Logs\t%s\n", stack.LogDir())
	tw.Flush()
	fmt.Fprintln(stdout, "\nEvery adaptrec command uses these addresses by default. Press Ctrl-C to stop.")

	waitErr := stack.Wait(ctx)
	if waitErr != nil {
		fmt.Fprintln(stderr, "\na component crashed; stopping the rest of the stack…")
	} else {
		fmt.Fprintln(stderr, "\nstopping the local stack (Ctrl-C again to kill it)…")
	}
	// ctx is canceled by the first signal; stopping gets its own time, cut
	// short by a second signal.
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		select {
		case <-sigs:
			cancel()
		case <-stopCtx.Done():
		}
	}()
	stopErr := stack.Stop(stopCtx)
	if waitErr == nil && stopErr == nil {
		fmt.Fprintln(stderr, "stopped")
	}
	return errors.Join(waitErr, stopErr)
}

func newDevStatusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Probe each component at the configured addresses and print up or down",
		Long: `Probe each component at the addresses of the effective configuration (the
local stack's by default): a Kafka metadata request, a Redis PING, an S3
HeadBucket on the configured bucket and a Temporal health check plus namespace
lookup. Exits non-zero when any component is down.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig()
			if err != nil {
				return err
			}
			return devStatus(cmd.Context(), cmd.OutOrStdout(), cfg)
		},
	}
}

func devStatus(ctx context.Context, out io.Writer, cfg config.Config) error {
	addrs := map[devstack.Component]string{
		devstack.Kafka:    strings.Join(cfg.Kafka.Brokers, ","),
		devstack.Redis:    cfg.Redis.Addr,
		devstack.S3:       cfg.S3.Endpoint + " bucket " + cfg.S3.Bucket,
		devstack.Temporal: cfg.Temporal.HostPort + " namespace " + cfg.Temporal.Namespace,
	}
	type result struct {
		c   devstack.Component
		err error
	}
	results := make(chan result, len(devstack.All()))
	for _, c := range devstack.All() {
		go func() {
			pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			defer cancel()
			results <- result{c, devstack.Probe(pctx, c, cfg)}
		}()
	}
	errs := make(map[devstack.Component]error)
	for range devstack.All() {
		r := <-results
		errs[r.c] = r.err
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	down := 0
	for _, c := range devstack.All() {
		if err := errs[c]; err != nil {
			down++
			fmt.Fprintf(tw, "%s\tdown\t%s\t%v\n", c, addrs[c], err)
		} else {
			fmt.Fprintf(tw, "%s\tup\t%s\t\n", c, addrs[c])
		}
	}
	tw.Flush()
	if down > 0 {
		return fmt.Errorf("%d of %d components down", down, len(devstack.All()))
	}
	return nil
}
