package devstack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"

	"github.com/adaptrec/adaptrec/internal/config"
)

// Probe checks that component c answers its own protocol at the address cfg
// gives it: a Kafka metadata request, a Redis PING, an S3 HeadBucket on the
// configured bucket, or a Temporal health check plus a DescribeNamespace of
// the configured namespace. It is what Start waits for and what
// `adaptrec dev status` reports.
func Probe(ctx context.Context, c Component, cfg config.Config) error {
	// A refused connection is the common answer while a server starts;
	// checking it first keeps client libraries from logging their retries.
	var addr string
	switch c {
	case Kafka:
		if len(cfg.Kafka.Brokers) > 0 {
			addr = cfg.Kafka.Brokers[0]
		}
	case Redis:
		addr = cfg.Redis.Addr
	case S3:
		if u, err := url.Parse(cfg.S3.Endpoint); err == nil {
			addr = u.Host
		}
	case Temporal:
		addr = cfg.Temporal.HostPort
	}
	if addr != "" {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return fmt.Errorf("%s at %s: %w", c, addr, err)
		}
		conn.Close()
	}
	switch c {
	case Kafka:
		return probeKafka(ctx, cfg.Kafka)
	case Redis:
		return probeRedis(ctx, cfg.Redis)
	case S3:
		return probeS3(ctx, cfg.S3)
	case Temporal:
		return probeTemporal(ctx, cfg.Temporal)
	}
	return fmt.Errorf("probe: unknown component %q", c)
}

func probeKafka(ctx context.Context, cfg config.Kafka) error {
	if len(cfg.Brokers) == 0 {
		return errors.New("kafka: no brokers configured")
	}
	transport := &kafka.Transport{ClientID: "adaptrec-devstack", DialTimeout: 2 * time.Second}
	defer transport.CloseIdleConnections()
	cl := &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Transport: transport}
	md, err := cl.Metadata(ctx, &kafka.MetadataRequest{})
	if err != nil {
		return fmt.Errorf("kafka metadata from %v: %w", cfg.Brokers, err)
	}
	if len(md.Brokers) == 0 {
		return fmt.Errorf("kafka metadata from %v: no brokers in the answer", cfg.Brokers)
	}
	return nil
}

func probeRedis(ctx context.Context, cfg config.Redis) error {
	rdb := redis.NewClient(&redis.Options{
		Addr:     cfg.Addr,
		Password: cfg.Password,
		DB:       cfg.DB,
		// One attempt per probe: the caller polls.
		MaxRetries:    -1,
		DialerRetries: 1,
		DialTimeout:   2 * time.Second,
		PoolSize:      1,
	})
	defer rdb.Close()
	if err := rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis PING %s: %w", cfg.Addr, err)
	}
	return nil
}

// newS3Client returns an S3 client for an S3-compatible endpoint with static
// credentials and path-style addressing, making one attempt per call.
func newS3Client(cfg config.S3) *s3.Client {
	return s3.New(s3.Options{
		Region:           cfg.Region,
		BaseEndpoint:     aws.String(cfg.Endpoint),
		UsePathStyle:     cfg.UsePathStyle,
		Credentials:      credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, ""),
		HTTPClient:       &http.Client{Timeout: 5 * time.Second},
		RetryMaxAttempts: 1,
	})
}

func probeS3(ctx context.Context, cfg config.S3) error {
	_, err := newS3Client(cfg).HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(cfg.Bucket)})
	if err != nil {
		return fmt.Errorf("s3 HeadBucket %s at %s: %w", cfg.Bucket, cfg.Endpoint, err)
	}
	return nil
}

// ensureBucket creates the configured bucket once the server answers;
// a bucket that already exists (a persisted stack) is fine.
func ensureBucket(ctx context.Context, cfg config.S3) error {
	cl := newS3Client(cfg)
	if _, err := cl.ListBuckets(ctx, &s3.ListBucketsInput{}); err != nil {
		return fmt.Errorf("s3 ListBuckets at %s: %w", cfg.Endpoint, err)
	}
	_, err := cl.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(cfg.Bucket)})
	var owned *s3types.BucketAlreadyOwnedByYou
	if err != nil && !errors.As(err, &owned) {
		return fmt.Errorf("s3 CreateBucket %s at %s: %w", cfg.Bucket, cfg.Endpoint, err)
	}
	return probeS3(ctx, cfg)
}

// quietTemporalLogger drops the SDK's own logging; probe failures are
// returned as errors instead.
var quietTemporalLogger = tlog.NewStructuredLogger(slog.New(slog.DiscardHandler))

func probeTemporal(ctx context.Context, cfg config.Temporal) error {
	c, err := client.DialContext(ctx, client.Options{
		HostPort:  cfg.HostPort,
		Namespace: cfg.Namespace,
		Logger:    quietTemporalLogger,
	})
	if err != nil {
		return fmt.Errorf("temporal dial %s: %w", cfg.HostPort, err)
	}
	defer c.Close()
	if _, err := c.CheckHealth(ctx, &client.CheckHealthRequest{}); err != nil {
		return fmt.Errorf("temporal health at %s: %w", cfg.HostPort, err)
	}
	if _, err := c.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: cfg.Namespace}); err != nil {
		return fmt.Errorf("temporal namespace %q at %s: %w", cfg.Namespace, cfg.HostPort, err)
	}
	return nil
}
