package archiver_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/adaptrec/adaptrec/events"
	"github.com/adaptrec/adaptrec/internal/config"
	"github.com/adaptrec/adaptrec/internal/testenv"
)

// consumersProc is one run of the real cmd/consumers binary.
type consumersProc struct {
	cmd     *exec.Cmd
	http    string
	logPath string
	exited  chan struct{}
}

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startConsumers starts the binary configured only through ADAPTREC_*
// variables, as a deployment would.
func startConsumers(t *testing.T, bin string, cfg config.Config, run, flushEvents int) *consumersProc {
	t.Helper()
	addr := freeAddr(t)
	a := cfg.Consumers.Archiver
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + os.Getenv("HOME"),
		"ADAPTREC_KAFKA_BROKERS=" + strings.Join(cfg.Kafka.Brokers, ","),
		"ADAPTREC_KAFKA_PARTITIONS=" + strconv.Itoa(cfg.Kafka.Partitions),
		"ADAPTREC_S3_ENDPOINT=" + cfg.S3.Endpoint,
		"ADAPTREC_S3_BUCKET=" + cfg.S3.Bucket,
		"ADAPTREC_S3_REGION=" + cfg.S3.Region,
		"ADAPTREC_S3_ACCESS_KEY_ID=" + cfg.S3.AccessKeyID,
		"ADAPTREC_S3_SECRET_ACCESS_KEY=" + cfg.S3.SecretAccessKey,
		"ADAPTREC_S3_USE_PATH_STYLE=" + strconv.FormatBool(cfg.S3.UsePathStyle),
		"ADAPTREC_CONSUMERS_HTTP_ADDR=" + addr,
		"ADAPTREC_CONSUMERS_ARCHIVER_GROUP_ID=" + a.GroupID,
		"ADAPTREC_CONSUMERS_ARCHIVER_TOPICS=" + strings.Join(a.Topics, ","),
		"ADAPTREC_CONSUMERS_ARCHIVER_FLUSH_INTERVAL=" + a.FlushInterval.String(),
		"ADAPTREC_CONSUMERS_ARCHIVER_FLUSH_EVENTS=" + strconv.Itoa(flushEvents),
		"ADAPTREC_CONSUMERS_ARCHIVER_DEDUPE_WINDOW=" + strconv.Itoa(a.DedupeWindow),
		"ADAPTREC_LOG_LEVEL=info",
		// This test is about the archiver; the nearline consumer needs Redis.
		"ADAPTREC_CONSUMERS_NEARLINE_ENABLED=false",
	}
	logPath := filepath.Join(t.TempDir(), fmt.Sprintf("consumers-%d.log", run))
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &consumersProc{cmd: cmd, http: addr, logPath: logPath, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("consumers run %d log:\n%s", run, tail(string(b), 40))
		}
	})
	return p
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// metric sums a counter over its labels from the process's /metrics.
func (p *consumersProc) metric(name string) (float64, error) {
	resp, err := http.Get("http://" + p.http + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) || (len(line) > len(name) && line[len(name)] != '{' && line[len(name)] != ' ') {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return 0, err
		}
		sum += v
	}
	return sum, sc.Err()
}

func (p *consumersProc) waitArchived(t *testing.T, atLeast float64, timeout time.Duration) {
	t.Helper()
	testenv.Eventually(t, timeout, func() error {
		select {
		case <-p.exited:
			t.Fatalf("consumers exited early: %v", p.cmd.ProcessState)
		default:
		}
		n, err := p.metric("adaptrec_archiver_events_archived_total")
		if err != nil {
			return err
		}
		if n < atLeast {
			return fmt.Errorf("archived %.0f, waiting for %.0f", n, atLeast)
		}
		return nil
	})
}

func (p *consumersProc) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.exited
}

// TestSIGKILLExactlyOnce streams events while the real cmd/consumers binary
// is SIGKILLed three times at different moments and restarted, then requires
// every event id exactly once in the Parquet store.
//
// Event time rises by an hour every ~300 messages of a partition, so most
// batches span two or three hour objects, and each restart uses another
// flush size: a restarted process that re-read an unfinished batch with its
// own boundaries instead of the recorded ones would leave the first
// attempt's objects for the hours its shorter batch lacks, duplicating rows.
func TestSIGKILLExactlyOnce(t *testing.T) {
	bin := testenv.Binary(t, "./cmd/consumers")
	cfg, store := stack(t)
	cfg.Consumers.Archiver.FlushInterval = 150 * time.Millisecond

	const n = 240000
	evs := genEventsOver(n, "kill", 100*time.Hour)
	msgs, want := messages(t, evs)

	// Stream in the background at about 30,000 events/s.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var wg sync.WaitGroup
	produced := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		p, err := events.NewProducer(cfg.Kafka, events.ProducerOptions{})
		if err != nil {
			produced <- err
			return
		}
		defer p.Close()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		rest := msgs
		for len(rest) > 0 {
			k := min(len(rest), 1500)
			if err := p.WriteMessages(ctx, rest[:k]...); err != nil {
				produced <- err
				return
			}
			rest = rest[k:]
			select {
			case <-ctx.Done():
				produced <- ctx.Err()
				return
			case <-tick.C:
			}
		}
		produced <- nil
	}()
	defer wg.Wait()

	// Run 1: killed mid-stream, well into its work.
	p1 := startConsumers(t, bin, cfg, 1, 4000)
	p1.waitArchived(t, 30000, 60*time.Second)
	p1.kill(t)
	// Run 2: killed right after its first durable batch, typically while
	// it is still rewriting what run 1 left pending.
	p2 := startConsumers(t, bin, cfg, 2, 50)
	p2.waitArchived(t, 1, 60*time.Second)
	p2.kill(t)
	// Run 3: killed after it made some progress of its own.
	p3 := startConsumers(t, bin, cfg, 3, 700)
	p3.waitArchived(t, 20000, 60*time.Second)
	p3.kill(t)
	// Run 4 finishes the job and shuts down cleanly.
	p4 := startConsumers(t, bin, cfg, 4, 120)
	select {
	case err := <-produced:
		if err != nil {
			t.Fatalf("producer: %v", err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("producer did not finish")
	}
	testenv.Eventually(t, 2*time.Minute, func() error {
		return groupCaughtUp(t.Context(), cfg, cfg.Consumers.Archiver.GroupID, cfg.Consumers.Archiver.Topics)
	})
	redone, err := p4.metric("adaptrec_archiver_batches_redone_total")
	if err != nil {
		t.Fatal(err)
	}
	if err := p4.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p4.exited:
		if !p4.cmd.ProcessState.Success() {
			t.Fatalf("consumers exited with %v after SIGTERM", p4.cmd.ProcessState)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("consumers did not stop after SIGTERM")
	}

	got, dups := archivedRows(t, store, cfg.Consumers.Archiver.Topics)
	requireExactly(t, got, dups, want)
	t.Logf("%d events archived exactly once across 3 SIGKILLs; the last run rewrote %.0f pending batches", len(got), redone)
}
