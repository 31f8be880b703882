package devstack

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/adaptrec/adaptrec/internal/config"
)

// Component names one server of the local stack.
type Component string

// The components, in the order Start reports them.
const (
	// Kafka is the Kafka-protocol broker (devtools/kafkabroker, built on
	// franz-go's kfake).
	Kafka Component = "kafka"
	// Redis is Debian's redis-server, the online feature store.
	Redis Component = "redis"
	// S3 is versitygw over a POSIX directory, the offline store and
	// artifact bucket.
	S3 Component = "s3"
	// Temporal is the Temporal CLI's dev server (SQLite, optional Web UI).
	Temporal Component = "temporal"
)

// All returns every component in start and report order.
func All() []Component { return []Component{Kafka, Redis, S3, Temporal} }

// ParseComponent returns the component named s.
func ParseComponent(s string) (Component, error) {
	c := Component(strings.ToLower(strings.TrimSpace(s)))
	for _, known := range All() {
		if c == known {
			return c, nil
		}
	}
	return "", fmt.Errorf("unknown component %q (want one of kafka, redis, s3, temporal)", s)
}

// String returns the component's name.
func (c Component) String() string { return string(c) }

// Tool is the executable FindTool looks up to run the component.
func (c Component) Tool() string {
	switch c {
	case Kafka:
		return "kafkabroker"
	case Redis:
		return "redis-server"
	case S3:
		return "versitygw"
	case Temporal:
		return "temporal"
	}
	return ""
}

// Ports are the loopback TCP ports the stack listens on. A zero port is
// replaced by a free one when the stack starts.
type Ports struct {
	// Kafka is the broker's listener, advertised to clients as-is.
	Kafka int
	// Redis is redis-server's port.
	Redis int
	// S3 is versitygw's S3 API port.
	S3 int
	// Temporal is the frontend gRPC port that SDK clients dial.
	Temporal int
	// TemporalUI serves the Web UI; unused when Options.TemporalHeadless.
	TemporalUI int
	// TemporalHTTP serves Temporal's HTTP API.
	TemporalHTTP int
	// TemporalMetrics serves Prometheus metrics at /metrics.
	TemporalMetrics int
}

// DevPorts returns the fixed ports of `adaptrec dev up`: the ones
// config.Default points at, plus the Temporal HTTP API on 7243 and its
// metrics on 7244.
func DevPorts() Ports {
	return Ports{
		Kafka:           mustPort(config.DevKafkaAddr),
		Redis:           mustPort(config.DevRedisAddr),
		S3:              mustPort(config.DevS3Endpoint),
		Temporal:        mustPort(config.DevTemporalAddr),
		TemporalUI:      mustPort(config.DevTemporalUI),
		TemporalHTTP:    7243,
		TemporalMetrics: 7244,
	}
}

// mustPort extracts the port of a host:port or URL constant; the constants
// are fixed at compile time, so a failure is a programming error.
func mustPort(addr string) int {
	host := addr
	if u, err := url.Parse(addr); err == nil && u.Host != "" {
		host = u.Host
	}
	_, p, err := net.SplitHostPort(host)
	if err != nil {
		panic(fmt.Sprintf("devstack: constant %q has no port: %v", addr, err))
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		panic(fmt.Sprintf("devstack: constant %q has a bad port: %v", addr, err))
	}
	return n
}

// TemporalSearchAttributes are registered on the Temporal dev server at start
// (name → type): workflows.RetrainWorkflow's (workflows.SearchAttrModelVersion,
// ...), so runs can be listed by model version, stage and outcome. A
// production namespace registers the same ones (deploy/README.md).
var TemporalSearchAttributes = [][2]string{
	{"AdaptrecModelVersion", "Keyword"},
	{"AdaptrecStage", "Keyword"},
	{"AdaptrecOutcome", "Keyword"},
}

// readyHint is appended to the waiting message of slow components.
func (c Component) readyHint() string {
	if c == Temporal {
		return " (first start can take ~10 s)"
	}
	return ""
}

// defaultReadyTimeout bounds how long Start waits for a component to answer.
func (c Component) defaultReadyTimeout() time.Duration {
	if c == Temporal {
		return 2 * time.Minute
	}
	return time.Minute
}
