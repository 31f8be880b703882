// Command kafkabroker is a single-node Kafka-wire-protocol broker for the
// local stack and the integration tests. It wraps franz-go's kfake, which
// implements enough of the protocol (topics, produce, fetch, consumer groups,
// offset commits) for segmentio/kafka-go clients, and can persist its log and
// group offsets to a directory so data survives a restart.
//
// It is not Kafka: there is no replication, no quotas and no throttling.
// Production points the same client code at a real cluster.
//
// Usage:
//
//	kafkabroker --addr 127.0.0.1:19092 --data-dir .adaptrec/dev/kafka
//
// The broker prints one "kafkabroker: ready" line on stdout once it accepts
// connections and stops cleanly (flushing its state when persisted) on
// SIGINT or SIGTERM.
package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "kafkabroker:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("kafkabroker", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:9092", "host:port to listen on; the host is also the address advertised to clients")
	dataDir := fs.String("data-dir", "", "directory that persists topics, records and committed offsets across restarts; empty keeps everything in memory")
	partitions := fs.Int("default-partitions", 8, "partition count for auto-created topics and CreateTopics requests with -1 partitions")
	autoCreate := fs.Bool("auto-create-topics", true, "create unknown topics on metadata requests that ask for it (Kafka's auto.create.topics.enable)")
	minSession := fs.Duration("group-min-session-timeout", 6*time.Second, "smallest consumer group session timeout clients may ask for (Kafka's group.min.session.timeout.ms)")
	syncWrites := fs.Bool("sync-writes", false, "fsync every produced batch (slower; by default the page cache is flushed on segment roll and shutdown, like Kafka)")
	logLevel := fs.String("log-level", "warn", "broker log level: none, error, warn, info or debug")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	level, err := parseLevel(*logLevel)
	if err != nil {
		return err
	}
	if _, _, err := net.SplitHostPort(*addr); err != nil {
		return fmt.Errorf("--addr %q: %w", *addr, err)
	}
	if *partitions < 1 {
		return fmt.Errorf("--default-partitions must be >= 1, got %d", *partitions)
	}

	// Install the handler before the listener exists: a broker started in the
	// background by a non-interactive shell otherwise ignores SIGINT.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)

	opts := []kfake.Opt{
		// kfake always asks to listen on 127.0.0.1:<port> and advertises the
		// listener's own address, so listen on exactly --addr instead.
		kfake.NumBrokers(1),
		kfake.ListenFn(func(network, _ string) (net.Listener, error) {
			return net.Listen(network, *addr)
		}),
		kfake.ClusterID("adaptrec-local"),
		kfake.DefaultNumPartitions(*partitions),
		kfake.GroupMinSessionTimeout(*minSession),
		kfake.WithLogger(kfake.BasicLogger(os.Stderr, level)),
	}
	if *autoCreate {
		opts = append(opts, kfake.AllowAutoTopicCreation())
	}
	if *dataDir != "" {
		opts = append(opts, kfake.DataDir(*dataDir))
	}
	if *syncWrites {
		opts = append(opts, kfake.SyncWrites())
	}
	start := time.Now()
	cluster, err := kfake.NewCluster(opts...)
	if err != nil {
		return fmt.Errorf("start broker on %s: %w", *addr, err)
	}
	persisted := "in memory"
	if *dataDir != "" {
		persisted = "data dir " + *dataDir
	}
	fmt.Printf("kafkabroker: ready on %s (%s, %d default partitions) in %s\n",
		strings.Join(cluster.ListenAddrs(), ","), persisted, *partitions, time.Since(start).Round(time.Millisecond))

	sig := <-sigs
	fmt.Printf("kafkabroker: %s received, shutting down\n", sig)
	done := make(chan struct{})
	go func() {
		cluster.Close() // flushes segments and group state when persisted
		close(done)
	}()
	select {
	case <-done:
		fmt.Println("kafkabroker: stopped")
		return nil
	case sig := <-sigs:
		return fmt.Errorf("second %s during shutdown: exiting without flushing state", sig)
	}
}

func parseLevel(s string) (kfake.LogLevel, error) {
	switch strings.ToLower(s) {
	case "none":
		return kfake.LogLevelNone, nil
	case "error":
		return kfake.LogLevelError, nil
	case "warn":
		return kfake.LogLevelWarn, nil
	case "info":
		return kfake.LogLevelInfo, nil
	case "debug":
		return kfake.LogLevelDebug, nil
	}
	return 0, errors.New("--log-level must be one of none, error, warn, info, debug, got " + s)
}
