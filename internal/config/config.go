// Package config holds the one configuration struct shared by every adaptrec
// binary. A configuration is built in three layers: Default (which points at
// the local stack started by `adaptrec dev up`), then an optional YAML file,
// then ADAPTREC_* environment variables. Validate names every bad key.
//
// Production points the same binaries at real clusters by changing only this
// configuration: Kafka brokers, the Redis address, the S3 endpoint and the
// Temporal frontend.
package config

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/adaptrec/adaptrec/serving/rerank"
)

// Config is the whole adaptrec configuration. The YAML keys are the snake_case
// names in the struct tags; the environment override for a key is ADAPTREC_
// followed by the upper-cased key path joined with underscores, e.g.
// kafka.brokers -> ADAPTREC_KAFKA_BROKERS (lists are comma-separated).
type Config struct {
	Kafka     Kafka     `yaml:"kafka"`
	Redis     Redis     `yaml:"redis"`
	S3        S3        `yaml:"s3"`
	Temporal  Temporal  `yaml:"temporal"`
	Features  Features  `yaml:"features"`
	Server    Server    `yaml:"server"`
	Worker    Worker    `yaml:"worker"`
	Consumers Consumers `yaml:"consumers"`
	// Pipeline configures the retraining workflow (see pipeline.go).
	Pipeline Pipeline `yaml:"pipeline"`
	// Predictions configures batch predictions (see predictions.go).
	Predictions Predictions `yaml:"predictions"`
	Log         Log         `yaml:"log"`
}

// Kafka locates the event log brokers.
type Kafka struct {
	// Brokers are host:port bootstrap addresses.
	Brokers []string `yaml:"brokers"`
	// ClientID identifies this process to the brokers.
	ClientID string `yaml:"client_id"`
	// Partitions is the partition count used when adaptrec creates its topics.
	Partitions int `yaml:"partitions"`
	// ReplicationFactor is used when adaptrec creates its topics; 1 for the
	// local broker, 3 on a production cluster.
	ReplicationFactor int `yaml:"replication_factor"`
	// TLS enables TLS to the brokers with the system roots.
	TLS bool `yaml:"tls"`
	// SASLUsername and SASLPassword enable SASL/PLAIN when the username is set.
	SASLUsername string `yaml:"sasl_username"`
	SASLPassword string `yaml:"sasl_password"`
}

// Redis locates the online feature store.
type Redis struct {
	Addr     string `yaml:"addr"`
	Password string `yaml:"password"`
	DB       int    `yaml:"db"`
	TLS      bool   `yaml:"tls"`
}

// S3 locates the offline store and artifact bucket.
type S3 struct {
	// Endpoint is the S3 API base URL; empty means AWS itself.
	Endpoint        string `yaml:"endpoint"`
	Region          string `yaml:"region"`
	Bucket          string `yaml:"bucket"`
	AccessKeyID     string `yaml:"access_key_id"`
	SecretAccessKey string `yaml:"secret_access_key"`
	// UsePathStyle addresses buckets as endpoint/bucket; needed by most
	// non-AWS servers.
	UsePathStyle bool `yaml:"use_path_style"`
	// Prefix is prepended to every object key adaptrec writes.
	Prefix string `yaml:"prefix"`
}

// Temporal locates the workflow service.
type Temporal struct {
	HostPort  string `yaml:"host_port"`
	Namespace string `yaml:"namespace"`
	// UIURL is printed in CLI output so people can follow runs.
	UIURL string `yaml:"ui_url"`
}

// Features locates the feature definitions and the online feature store's
// keys; every binary that reads or writes features (cmd/worker,
// cmd/consumers) uses the same values.
type Features struct {
	// File is the feature definitions file (features.yaml, ADR 005); a
	// relative path is relative to the process's working directory.
	File string `yaml:"file"`
	// KeyPrefix starts every Redis key of the online feature store; writers
	// (the nearline consumer, the batch lane's preload) and readers must use
	// the same one, and deployments sharing a Redis use different ones. It
	// must not contain '{' or '}' (keys carry an entity hash tag).
	KeyPrefix string `yaml:"key_prefix"`
}

// DefaultFeaturesKeyPrefix is Features.KeyPrefix by default. It equals
// online.DefaultKeyPrefix, which this package cannot import
// (features/online imports it); a test of cmd/consumers pins the two.
const DefaultFeaturesKeyPrefix = "adaptrec:fs:"

// Server configures cmd/server.
type Server struct {
	// GRPCAddr serves RecommendService, health and reflection.
	GRPCAddr string `yaml:"grpc_addr"`
	// HTTPAddr serves /metrics, /healthz and /readyz.
	HTTPAddr string `yaml:"http_addr"`
	// IngestTimeout bounds how long Ingest waits for the event log to
	// acknowledge a batch.
	IngestTimeout time.Duration `yaml:"ingest_timeout"`
	// Model is the registry model whose aliases the server serves;
	// ModelPoll how often it re-reads them (ModelLifecycleEvents switch at
	// once; the poll only bounds how long a lost event can delay a switch).
	Model     string        `yaml:"model"`
	ModelPoll time.Duration `yaml:"model_poll"`
	// TLSCert and TLSKey (PEM files) serve gRPC over TLS; ClientCA (a PEM
	// bundle) additionally requires client certificates signed by it
	// (mTLS). Empty: plaintext, for the local stack only.
	TLSCert  string `yaml:"tls_cert"`
	TLSKey   string `yaml:"tls_key"`
	ClientCA string `yaml:"client_ca"`
	// AuthTokens, when set, are the bearer tokens a call must present in
	// its "authorization: Bearer <token>" metadata (health checks and
	// reflection excepted). Set them from the environment
	// (ADAPTREC_SERVER_AUTH_TOKENS, comma-separated), not a file in git.
	AuthTokens []string `yaml:"auth_tokens"`
	// MaxInFlight bounds concurrent Recommend calls (0: 2×GOMAXPROCS);
	// MaxQueue how many high-priority calls may wait for a slot, normal
	// ones being refused at half of it and low ones at a quarter (0: 4, 2
	// and 1 times MaxInFlight); LatencySLO the p99 above which low-priority
	// calls that would wait are shed, normal ones above 1.5 times it
	// (admission control, serving/admission).
	MaxInFlight int           `yaml:"max_in_flight"`
	MaxQueue    int           `yaml:"max_queue"`
	LatencySLO  time.Duration `yaml:"latency_slo"`
	// Candidates is how many retrieved candidates are ranked per request;
	// RankTimeout bounds the ONNX ranker before the lightweight one answers.
	Candidates  int           `yaml:"candidates"`
	RankTimeout time.Duration `yaml:"rank_timeout"`
	// ShadowQueue bounds the mirrored requests waiting for the shadow
	// model; more are dropped (counted), never waited for.
	ShadowQueue int `yaml:"shadow_queue"`
	// GCPercent is the Go garbage collector's target (GOGC) for the
	// server when the GOGC environment variable is unset. A serving
	// instance holds a large, long-lived heap (item features, indexes:
	// ~0.5 GB at 200,000 items) and allocates per request; every
	// collection marks the whole live heap (~0.1 s of a core here), so
	// the default 100 collects every few seconds under load and each
	// collection shows in the tail latency. 400 collects a fifth as often
	// for up to 5× the live heap in memory; set GOMEMLIMIT to cap it.
	GCPercent int `yaml:"gc_percent"`
	// Rerank are the re-ranking rules applied to every list (serving/rerank;
	// the defaults are rerank.DefaultConfig, 0 turns a rule off).
	Rerank rerank.Config `yaml:"rerank"`
}

// Worker configures cmd/worker.
type Worker struct {
	HTTPAddr string `yaml:"http_addr"`
	// TaskQueues lists the Temporal task queues this worker polls.
	TaskQueues []string `yaml:"task_queues"`
}

// Consumers configures cmd/consumers, the Kafka consumer services.
type Consumers struct {
	HTTPAddr string   `yaml:"http_addr"`
	Archiver Archiver `yaml:"archiver"`
	Nearline Nearline `yaml:"nearline"`
	// Feedback is the feedback-loop consumer (see feedback.go).
	Feedback Feedback `yaml:"feedback"`
}

// Nearline configures the consumer that keeps the nearline features of the
// online store (Redis) fresh from the interaction stream. It reads the
// definitions in features.file and writes under features.key_prefix.
type Nearline struct {
	// Enabled runs it in cmd/consumers next to the archiver.
	Enabled bool `yaml:"enabled"`
	// GroupID is its Kafka consumer group.
	GroupID string `yaml:"group_id"`
}

// Archiver configures the consumer that writes the event log to Parquet on S3.
type Archiver struct {
	// GroupID is the Kafka consumer group; instances sharing it split the
	// partitions between them.
	GroupID string `yaml:"group_id"`
	// Topics are archived; empty means every adaptrec event topic.
	Topics []string `yaml:"topics"`
	// FlushInterval is the longest an event waits in memory before it is
	// written; it bounds event-to-durable latency.
	FlushInterval time.Duration `yaml:"flush_interval"`
	// FlushEvents writes a partition's buffer once it holds this many events.
	FlushEvents int `yaml:"flush_events"`
	// DedupeWindow is how many recent event ids per partition are remembered
	// to drop producer-side duplicates.
	DedupeWindow int `yaml:"dedupe_window"`
}

// Log configures structured logging.
type Log struct {
	// Level is debug, info, warn or error.
	Level string `yaml:"level"`
	// Format is json or text.
	Format string `yaml:"format"`
}

// Local stack addresses used by Default; `adaptrec dev up` listens on them.
const (
	DevKafkaAddr    = "127.0.0.1:19092"
	DevRedisAddr    = "127.0.0.1:16379"
	DevS3Endpoint   = "http://127.0.0.1:19000"
	DevTemporalAddr = "127.0.0.1:7233"
	DevTemporalUI   = "http://127.0.0.1:8233"
	DevS3AccessKey  = "adaptrec"
	DevS3SecretKey  = "adaptrec-dev-secret"
	DevS3Bucket     = "adaptrec"
)

// Default returns a configuration for the local stack.
func Default() Config {
	return Config{
		Kafka: Kafka{
			Brokers:           []string{DevKafkaAddr},
			ClientID:          "adaptrec",
			Partitions:        8,
			ReplicationFactor: 1,
		},
		Redis: Redis{Addr: DevRedisAddr},
		S3: S3{
			Endpoint:        DevS3Endpoint,
			Region:          "us-east-1",
			Bucket:          DevS3Bucket,
			AccessKeyID:     DevS3AccessKey,
			SecretAccessKey: DevS3SecretKey,
			UsePathStyle:    true,
		},
		Temporal: Temporal{HostPort: DevTemporalAddr, Namespace: "default", UIURL: DevTemporalUI},
		Features: Features{File: "features/features.yaml", KeyPrefix: DefaultFeaturesKeyPrefix},
		Server: Server{
			GRPCAddr:      "127.0.0.1:9090",
			HTTPAddr:      "127.0.0.1:9091",
			IngestTimeout: 5 * time.Second,
			Model:         "ranker",
			ModelPoll:     30 * time.Second,
			LatencySLO:    10 * time.Millisecond,
			Candidates:    500,
			RankTimeout:   25 * time.Millisecond,
			ShadowQueue:   256,
			GCPercent:     400,
			Rerank:        rerank.DefaultConfig(),
		},
		Worker: Worker{HTTPAddr: "127.0.0.1:9092", TaskQueues: []string{"adaptrec-default"}},
		Consumers: Consumers{
			HTTPAddr: "127.0.0.1:9093",
			Archiver: Archiver{
				GroupID:       "adaptrec-archiver",
				FlushInterval: time.Second,
				FlushEvents:   50000,
				DedupeWindow:  200000,
			},
			Nearline: Nearline{Enabled: true, GroupID: "adaptrec-nearline"},
			Feedback: defaultFeedback(),
		},
		Pipeline:    defaultPipeline(),
		Predictions: defaultPredictions(),
		Log:         Log{Level: "info", Format: "text"},
	}
}

// Validate reports every invalid key, each named by its YAML path.
func (c Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("config key %s: %s", key, fmt.Sprintf(format, args...)))
	}
	if len(c.Kafka.Brokers) == 0 {
		bad("kafka.brokers", "at least one broker address is required")
	}
	for _, b := range c.Kafka.Brokers {
		if _, _, err := net.SplitHostPort(b); err != nil {
			bad("kafka.brokers", "%q is not host:port", b)
		}
	}
	if c.Kafka.Partitions < 1 {
		bad("kafka.partitions", "must be >= 1, got %d", c.Kafka.Partitions)
	}
	if c.Kafka.ReplicationFactor < 1 {
		bad("kafka.replication_factor", "must be >= 1, got %d", c.Kafka.ReplicationFactor)
	}
	checkAddr := func(key, v string) {
		if _, _, err := net.SplitHostPort(v); err != nil {
			bad(key, "%q is not host:port", v)
		}
	}
	checkAddr("redis.addr", c.Redis.Addr)
	if c.Redis.DB < 0 {
		bad("redis.db", "must be >= 0, got %d", c.Redis.DB)
	}
	if c.S3.Endpoint != "" && !strings.HasPrefix(c.S3.Endpoint, "http://") && !strings.HasPrefix(c.S3.Endpoint, "https://") {
		bad("s3.endpoint", "%q must start with http:// or https://", c.S3.Endpoint)
	}
	if c.S3.Bucket == "" {
		bad("s3.bucket", "a bucket name is required")
	}
	if c.S3.Region == "" {
		bad("s3.region", "a region is required (us-east-1 for most S3-compatible servers)")
	}
	if (c.S3.AccessKeyID == "") != (c.S3.SecretAccessKey == "") {
		bad("s3.secret_access_key", "access_key_id and secret_access_key must be set together")
	}
	if strings.HasPrefix(c.S3.Prefix, "/") {
		bad("s3.prefix", "%q must not start with /", c.S3.Prefix)
	}
	checkAddr("temporal.host_port", c.Temporal.HostPort)
	if c.Temporal.Namespace == "" {
		bad("temporal.namespace", "a namespace is required")
	}
	if c.Features.File == "" {
		bad("features.file", "a feature definitions file is required")
	}
	switch {
	case c.Features.KeyPrefix == "":
		bad("features.key_prefix", "a key prefix is required (default %q)", DefaultFeaturesKeyPrefix)
	case strings.ContainsAny(c.Features.KeyPrefix, "{}"):
		bad("features.key_prefix", "%q must not contain '{' or '}': keys carry a Redis Cluster hash tag per entity", c.Features.KeyPrefix)
	}
	checkAddr("server.grpc_addr", c.Server.GRPCAddr)
	checkAddr("server.http_addr", c.Server.HTTPAddr)
	if c.Server.IngestTimeout <= 0 {
		bad("server.ingest_timeout", "must be > 0, got %s", c.Server.IngestTimeout)
	}
	if c.Server.Model == "" {
		bad("server.model", "the registry model to serve is required (default \"ranker\")")
	}
	if c.Server.ModelPoll < time.Second {
		bad("server.model_poll", "must be >= 1s, got %s", c.Server.ModelPoll)
	}
	if (c.Server.TLSCert == "") != (c.Server.TLSKey == "") {
		bad("server.tls_key", "tls_cert and tls_key must be set together")
	}
	if c.Server.ClientCA != "" && c.Server.TLSCert == "" {
		bad("server.client_ca", "client certificates (mTLS) need TLS: set tls_cert and tls_key too")
	}
	for i, tok := range c.Server.AuthTokens {
		if len(tok) < 16 {
			bad("server.auth_tokens", "token %d has %d characters; use at least 16 random characters", i, len(tok))
		}
	}
	if c.Server.MaxInFlight < 0 {
		bad("server.max_in_flight", "must be >= 0 (0: 2×GOMAXPROCS), got %d", c.Server.MaxInFlight)
	}
	if c.Server.MaxQueue < 0 {
		bad("server.max_queue", "must be >= 0, got %d", c.Server.MaxQueue)
	}
	if c.Server.LatencySLO <= 0 {
		bad("server.latency_slo", "must be > 0, got %s", c.Server.LatencySLO)
	}
	if c.Server.Candidates < 1 || c.Server.Candidates > 5000 {
		bad("server.candidates", "must be in 1..5000, got %d", c.Server.Candidates)
	}
	if c.Server.RankTimeout <= 0 {
		bad("server.rank_timeout", "must be > 0, got %s", c.Server.RankTimeout)
	}
	if c.Server.ShadowQueue < 1 {
		bad("server.shadow_queue", "must be >= 1, got %d", c.Server.ShadowQueue)
	}
	if c.Server.GCPercent < 25 {
		bad("server.gc_percent", "must be >= 25 (the Go default is 100), got %d", c.Server.GCPercent)
	}
	if err := c.Server.Rerank.Validate(); err != nil {
		bad("server.rerank", "%v", err)
	}
	checkAddr("worker.http_addr", c.Worker.HTTPAddr)
	if len(c.Worker.TaskQueues) == 0 {
		bad("worker.task_queues", "at least one task queue is required")
	}
	checkAddr("consumers.http_addr", c.Consumers.HTTPAddr)
	a := c.Consumers.Archiver
	if a.GroupID == "" {
		bad("consumers.archiver.group_id", "a consumer group id is required")
	}
	if a.FlushInterval < 10*time.Millisecond {
		bad("consumers.archiver.flush_interval", "must be >= 10ms, got %s", a.FlushInterval)
	}
	if a.FlushEvents < 1 {
		bad("consumers.archiver.flush_events", "must be >= 1, got %d", a.FlushEvents)
	}
	if a.DedupeWindow < 0 {
		bad("consumers.archiver.dedupe_window", "must be >= 0, got %d", a.DedupeWindow)
	}
	if n := c.Consumers.Nearline; n.Enabled {
		if n.GroupID == "" {
			bad("consumers.nearline.group_id", "a consumer group id is required")
		} else if n.GroupID == a.GroupID {
			bad("consumers.nearline.group_id", "%q is the archiver's group; the two must differ", n.GroupID)
		}
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "%q is not one of debug, info, warn, error", c.Log.Level)
	}
	switch c.Log.Format {
	case "json", "text":
	default:
		bad("log.format", "%q is not one of json, text", c.Log.Format)
	}
	c.Pipeline.validate(bad)
	c.Predictions.validate(bad)
	c.Consumers.Feedback.validate(bad)
	return errors.Join(errs...)
}
