package testenv_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"
	enums "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/adaptrec/adaptrec/internal/config"
	"github.com/adaptrec/adaptrec/internal/devstack"
	"github.com/adaptrec/adaptrec/internal/testenv"
)

func TestKafkaProduceConsumeThroughGroup(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Kafka)
	ctx := t.Context()
	createTopic(t, env.KafkaAddr(), "events", 4)
	want := produce(t, env.KafkaAddr(), "events", 0, 200)

	got := consumeGroup(t, env.KafkaAddr(), "events", "g1", len(want))
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("key %s: consumed %q, produced %q", k, got[k], v)
		}
	}
	// The committed offsets cover everything: the group has no lag.
	cl := &kafka.Client{Addr: kafka.TCP(env.KafkaAddr())}
	offs, err := cl.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: "g1", Topics: map[string][]int{"events": {0, 1, 2, 3}}})
	if err != nil {
		t.Fatalf("offset fetch: %v", err)
	}
	var committed int64
	for _, p := range offs.Topics["events"] {
		committed += p.CommittedOffset
	}
	if committed != int64(len(want)) {
		t.Fatalf("committed offsets sum to %d, want %d", committed, len(want))
	}
}

func TestKafkaRestart(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		persist bool
		kill    bool
	}{
		{name: "persisted stop", persist: true},
		{name: "persisted kill", persist: true, kill: true},
		{name: "in memory", persist: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := testenv.NewWithOptions(t, testenv.Options{Components: []testenv.Component{testenv.Kafka}, Persist: tc.persist})
			addr := env.KafkaAddr()
			createTopic(t, addr, "log", 2)
			first := produce(t, addr, "log", 0, 50)
			consumeGroup(t, addr, "log", "resume", len(first))

			if tc.kill {
				env.KillComponent(testenv.Kafka)
			} else {
				env.StopComponent(testenv.Kafka)
			}
			if err := devstack.Probe(t.Context(), devstack.Kafka, env.Config()); err == nil {
				t.Fatal("broker still answers after it was stopped")
			}
			env.StartComponent(testenv.Kafka)
			if got := env.KafkaAddr(); got != addr {
				t.Fatalf("broker moved from %s to %s", addr, got)
			}

			if !tc.persist {
				// A fresh transport: the default one caches metadata per address.
				md, err := (&kafka.Client{Addr: kafka.TCP(addr), Transport: &kafka.Transport{}}).Metadata(t.Context(), &kafka.MetadataRequest{Topics: []string{"log"}})
				if err != nil {
					t.Fatalf("metadata: %v", err)
				}
				if len(md.Topics) == 1 && md.Topics[0].Error == nil && len(md.Topics[0].Partitions) == 2 {
					t.Fatal("in-memory broker kept topic log across a restart")
				}
				return
			}
			// The group resumes after what it committed: it sees only the
			// records produced after the restart.
			second := produce(t, addr, "log", 50, 30)
			got := consumeGroup(t, addr, "log", "resume", len(second))
			for k := range got {
				if _, ok := first[k]; ok {
					t.Fatalf("group re-read %s, which it committed before the restart", k)
				}
			}
			// And every record is still in the log.
			if n := countRecords(t, addr, "log", 2); n != len(first)+len(second) {
				t.Fatalf("log holds %d records after restart, want %d", n, len(first)+len(second))
			}
		})
	}
}

func TestRedis(t *testing.T) {
	t.Parallel()
	for _, persist := range []bool{false, true} {
		t.Run("persist="+strconv.FormatBool(persist), func(t *testing.T) {
			t.Parallel()
			env := testenv.NewWithOptions(t, testenv.Options{Components: []testenv.Component{testenv.Redis}, Persist: persist})
			ctx := t.Context()
			rdb := redis.NewClient(&redis.Options{Addr: env.RedisAddr()})
			t.Cleanup(func() { rdb.Close() })
			if err := rdb.HSet(ctx, "user:1", "clicks", 3).Err(); err != nil {
				t.Fatalf("HSET: %v", err)
			}
			aof, err := rdb.ConfigGet(ctx, "appendonly").Result()
			if err != nil {
				t.Fatalf("CONFIG GET: %v", err)
			}
			if want := map[bool]string{false: "no", true: "yes"}[persist]; aof["appendonly"] != want {
				t.Fatalf("appendonly = %q, want %q", aof["appendonly"], want)
			}

			env.StopComponent(testenv.Redis)
			if err := rdb.Ping(ctx).Err(); err == nil {
				t.Fatal("PING succeeded with Redis stopped")
			}
			env.StartComponent(testenv.Redis)
			testenv.Eventually(t, 5*time.Second, func() error { return rdb.Ping(ctx).Err() })
			n, err := rdb.Exists(ctx, "user:1").Result()
			if err != nil {
				t.Fatalf("EXISTS: %v", err)
			}
			if kept := n == 1; kept != persist {
				t.Fatalf("key kept across restart = %v, want %v", kept, persist)
			}
		})
	}
}

func TestS3ConditionalWritesAndRestart(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.S3)
	ctx := t.Context()
	cfg := env.Config().S3
	cl := s3.New(s3.Options{
		Region:       cfg.Region,
		BaseEndpoint: aws.String(cfg.Endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, ""),
	})
	put := func(ifNoneMatch, ifMatch *string, body string) (*s3.PutObjectOutput, error) {
		return cl.PutObject(ctx, &s3.PutObjectInput{
			Bucket: aws.String(cfg.Bucket), Key: aws.String("models/current"),
			Body: strings.NewReader(body), IfNoneMatch: ifNoneMatch, IfMatch: ifMatch,
		})
	}
	first, err := put(aws.String("*"), nil, "v1")
	if err != nil {
		t.Fatalf("create-only put: %v", err)
	}
	if _, err := put(aws.String("*"), nil, "v1-again"); httpStatus(err) != http.StatusPreconditionFailed {
		t.Fatalf("second create-only put: got %v, want 412", err)
	}
	if _, err := put(nil, aws.String(`"0123456789abcdef0123456789abcdef"`), "v2"); httpStatus(err) != http.StatusPreconditionFailed {
		t.Fatalf("compare-and-swap with a stale ETag: got %v, want 412", err)
	}
	if _, err := put(nil, first.ETag, "v2"); err != nil {
		t.Fatalf("compare-and-swap with the current ETag: %v", err)
	}

	env.StopComponent(testenv.S3)
	env.StartComponent(testenv.S3)
	out, err := cl.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(cfg.Bucket), Key: aws.String("models/current")})
	if err != nil {
		t.Fatalf("get after restart: %v", err)
	}
	defer out.Body.Close()
	body := make([]byte, 16)
	n, _ := out.Body.Read(body)
	if string(body[:n]) != "v2" {
		t.Fatalf("object after restart = %q, want v2", body[:n])
	}
}

func TestTemporalRunsWorkflowWithSearchAttributes(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Temporal)
	ctx := t.Context()
	cfg := env.Config().Temporal
	c, err := client.DialContext(ctx, client.Options{HostPort: env.TemporalHostPort(), Namespace: cfg.Namespace})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()

	sas, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: cfg.Namespace})
	if err != nil {
		t.Fatalf("list search attributes: %v", err)
	}
	for _, sa := range devstack.TemporalSearchAttributes {
		if got, ok := sas.CustomAttributes[sa[0]]; !ok || got != enums.INDEXED_VALUE_TYPE_KEYWORD {
			t.Errorf("search attribute %s: registered %v with type %v, want Keyword", sa[0], ok, got)
		}
	}

	const queue = "testenv"
	w := worker.New(c, queue, worker.Options{})
	w.RegisterWorkflowWithOptions(func(ctx workflow.Context, name string) (string, error) {
		return "hello " + name, nil
	}, workflow.RegisterOptions{Name: "greet"})
	if err := w.Start(); err != nil {
		t.Fatalf("start worker: %v", err)
	}
	defer w.Stop()

	model := temporal.NewSearchAttributeKeyKeyword("AdaptrecModelVersion")
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID: "greet-1", TaskQueue: queue,
		TypedSearchAttributes: temporal.NewSearchAttributes(model.ValueSet("v7")),
	}, "greet", "adaptrec")
	if err != nil {
		t.Fatalf("start workflow: %v", err)
	}
	var out string
	if err := run.Get(ctx, &out); err != nil {
		t.Fatalf("workflow result: %v", err)
	}
	if out != "hello adaptrec" {
		t.Fatalf("workflow returned %q", out)
	}
	desc, err := c.DescribeWorkflow(ctx, run.GetID(), run.GetRunID())
	if err != nil {
		t.Fatalf("describe: %v", err)
	}
	if v, _ := desc.TypedSearchAttributes.GetKeyword(model); v != "v7" {
		t.Fatalf("ModelVersion = %q, want v7", v)
	}
}

func TestConfigPointsOnlyAtRequestedComponents(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Redis)
	cfg := env.Config()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("config invalid: %v", err)
	}
	if cfg.Redis.Addr == config.DevRedisAddr {
		t.Fatalf("redis address is the dev stack's %s", cfg.Redis.Addr)
	}
	if err := devstack.Probe(t.Context(), devstack.Redis, cfg); err != nil {
		t.Fatalf("redis probe: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	for _, c := range []devstack.Component{devstack.Kafka, devstack.S3, devstack.Temporal} {
		if err := devstack.Probe(ctx, c, cfg); err == nil {
			t.Errorf("%s answers although the test did not ask for it", c)
		}
	}
}

func createTopic(t *testing.T, addr, topic string, partitions int) {
	t.Helper()
	cl := &kafka.Client{Addr: kafka.TCP(addr)}
	res, err := cl.CreateTopics(t.Context(), &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
		Topic: topic, NumPartitions: partitions, ReplicationFactor: 1,
	}}})
	if err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
	if err := res.Errors[topic]; err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
}

// produce writes n keyed records (keys from..from+n-1) and returns key→value.
func produce(t *testing.T, addr, topic string, from, n int) map[string]string {
	t.Helper()
	w := &kafka.Writer{
		Addr: kafka.TCP(addr), Topic: topic, Balancer: &kafka.Hash{},
		RequiredAcks: kafka.RequireAll, BatchTimeout: 5 * time.Millisecond,
	}
	defer w.Close()
	want := make(map[string]string, n)
	msgs := make([]kafka.Message, n)
	for i := range msgs {
		k, v := fmt.Sprintf("k%04d", from+i), fmt.Sprintf("v%d", from+i)
		want[k] = v
		msgs[i] = kafka.Message{Key: []byte(k), Value: []byte(v)}
	}
	if err := w.WriteMessages(t.Context(), msgs...); err != nil {
		t.Fatalf("produce to %s: %v", topic, err)
	}
	return want
}

// consumeGroup reads n records as a member of group, committing each, and
// returns key→value.
func consumeGroup(t *testing.T, addr, topic, group string, n int) map[string]string {
	t.Helper()
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers: []string{addr}, Topic: topic, GroupID: group,
		MaxWait: 100 * time.Millisecond, StartOffset: kafka.FirstOffset,
		HeartbeatInterval: 250 * time.Millisecond, SessionTimeout: 6 * time.Second,
	})
	defer r.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	got := make(map[string]string, n)
	for len(got) < n {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			t.Fatalf("consume %s as %s after %d of %d records: %v", topic, group, len(got), n, err)
		}
		got[string(m.Key)] = string(m.Value)
		if err := r.CommitMessages(ctx, m); err != nil {
			t.Fatalf("commit: %v", err)
		}
	}
	return got
}

// countRecords counts the records in every partition of topic.
func countRecords(t *testing.T, addr, topic string, partitions int) int {
	t.Helper()
	total := 0
	for p := range partitions {
		conn, err := kafka.DialLeader(t.Context(), "tcp", addr, topic, p)
		if err != nil {
			t.Fatalf("dial partition %d: %v", p, err)
		}
		first, last, err := conn.ReadOffsets()
		conn.Close()
		if err != nil {
			t.Fatalf("offsets of partition %d: %v", p, err)
		}
		total += int(last - first)
	}
	return total
}

func httpStatus(err error) int {
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}
