package job

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/adaptrec/adaptrec/features/offline"
	"github.com/adaptrec/adaptrec/internal/config"
)

// Protocol event kinds (the "event" field of a protocol line).
const (
	EventProgress = "progress"
	EventDone     = "done"
	EventError    = "error"
)

// Event is one protocol line.
type Event struct {
	Event string `json:"event"`
	// Progress fields, for EventProgress.
	Stage    Stage              `json:"stage,omitempty"`
	Step     int                `json:"step,omitempty"`
	Steps    int                `json:"steps,omitempty"`
	Message  string             `json:"message,omitempty"`
	Metrics  map[string]float64 `json:"metrics,omitempty"`
	ElapsedS float64            `json:"elapsed_s,omitempty"`
	// Metadata is the URI of metadata.json, for EventDone.
	Metadata string `json:"metadata,omitempty"`
}

// FormatEvent returns e as one protocol line, newline included. Metrics
// that JSON cannot hold (NaN, ±Inf) are left out.
func FormatEvent(e Event) []byte {
	if len(e.Metrics) > 0 {
		finite := make(map[string]float64, len(e.Metrics))
		for k, v := range e.Metrics {
			if !math.IsNaN(v) && !math.IsInf(v, 0) {
				finite[k] = v
			}
		}
		e.Metrics = finite
	}
	b, err := json.Marshal(e)
	if err != nil {
		// Only strings, ints and finite floats remain.
		panic(fmt.Sprintf("job: encode protocol event: %v", err))
	}
	return append(b, '\n')
}

// ProgressEvent is the protocol line of p.
func ProgressEvent(p Progress) Event {
	return Event{Event: EventProgress, Stage: p.Stage, Step: p.Step, Steps: p.Steps, Message: p.Message,
		Metrics: p.Metrics, ElapsedS: math.Round(p.Elapsed.Seconds()*1000) / 1000}
}

// ParseEvent reads a protocol line; ok is false for any other line (the
// program's log).
func ParseEvent(line string) (Event, bool) {
	line = strings.TrimSpace(line)
	if !strings.HasPrefix(line, "{") {
		return Event{}, false
	}
	var e Event
	if err := json.Unmarshal([]byte(line), &e); err != nil {
		return Event{}, false
	}
	switch e.Event {
	case EventProgress, EventDone, EventError:
		return e, true
	}
	return Event{}, false
}

// Command trains with an external program: it writes input.json into the
// output folder, runs
//
//	Path Args... --input <uri of input.json> --output <uri of the folder> --params <params JSON>
//
// forwards the program's progress lines, and when it exits with status 0
// completes and checks the layout it wrote. The program reads the training
// set and the event log from Input.Store itself, so Input.Data is refused.
//
// A program must write ranker.onnx, items.ivf and metadata.json; items.ann,
// covisit.bin and users.emb are serving artifacts derived from the
// embeddings and the event log, which a GPU trainer should not have to
// reimplement. When the program's metadata (format 1, or format 2) does not
// list all three, Command derives the missing ones: users.emb by folding
// every user of the job's positives in against items.ivf's vectors
// (Index.Embedder, with its regularization and alpha), items.ann from
// items.ivf's vectors and covisit.bin from the positives of the job's event
// range read from Store, exactly as GoTrainer builds them. It first checks
// that items.ivf is the one the metadata lists and, when it needs the
// positives, that the program's embeddings read the job's event range and
// counted its positives, and that those positives name items.ivf's items;
// it then rewrites metadata.json as format MetadataFormat with their
// sections marked BuiltByRunner, reporting the embeddings, ann, covisit and
// write stages through Progress. A program that writes the whole layout is
// left untouched. Either way the result must pass CheckLayout and be this
// job's.
type Command struct {
	// Path is the program; Args come before the protocol's flags.
	Path string
	Args []string
	// Env is added to the program's environment (this process's, plus S3).
	Env []string
	// S3, when set, gives the program the endpoint, region and
	// credentials to open the s3:// URIs with, as ADAPTREC_S3_ENDPOINT,
	// _REGION, _ACCESS_KEY_ID, _SECRET_ACCESS_KEY and _USE_PATH_STYLE.
	S3 *config.S3
	// Store, when set, is the store Input.Store names, from which Command
	// reads the training set's manifest and the job's positives to derive
	// covisit.bin and users.emb; nil opens Input.Store (s3://) through S3.
	// It is opened only when the program did not write one of them.
	Store offline.Store
	// Progress, when set, receives the program's progress lines, then
	// Command's own stages when it derives artifacts.
	Progress func(Progress)
	// Log receives every other line of its stdout and stderr; discarded
	// when nil.
	Log io.Writer
	// StopTimeout is how long the program gets to exit after SIGTERM when
	// ctx is done, before SIGKILL; 0 means 10 s.
	StopTimeout time.Duration
}

// logTail is how many of the program's log lines an error quotes.
const logTail = 20

// Train runs the program and returns the layout it wrote.
func (c *Command) Train(ctx context.Context, in Input, out Dir) (*Layout, error) {
	if c.Path == "" {
		return nil, errors.New("external trainer: Path is required")
	}
	if in.Data != nil {
		return nil, errors.New("external trainer: the training set must be on the store (features training-set), not in memory")
	}
	if in.Store == "" {
		return nil, errors.New("external trainer: Input.Store is required: the program reads the training set and the event log from it")
	}
	if err := in.Validate(); err != nil {
		return nil, err
	}
	in.Params = in.Params.WithDefaults()
	inputJSON, err := EncodeInput(in)
	if err != nil {
		return nil, err
	}
	params, err := json.Marshal(in.Params)
	if err != nil {
		return nil, fmt.Errorf("encode params: %w", err)
	}
	if err := out.Put(ctx, InputFile, inputJSON); err != nil {
		return nil, err
	}
	args := append(append([]string(nil), c.Args...), "--input", out.URI(InputFile), "--output", out.URI(""), "--params", string(params))
	cmd := exec.CommandContext(ctx, c.Path, args...)
	cmd.Env = append(os.Environ(), c.s3Env()...)
	cmd.Env = append(cmd.Env, c.Env...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = c.StopTimeout
	if cmd.WaitDelay == 0 {
		cmd.WaitDelay = 10 * time.Second
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("external trainer: %w", err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, fmt.Errorf("external trainer: %w", err)
	}
	name := strings.Join(append([]string{c.Path}, c.Args...), " ")
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("external trainer %s: %w", name, err)
	}
	r := &lineReader{c: c, start: time.Now()}
	var wg sync.WaitGroup
	for _, pipe := range []io.Reader{stdout, stderr} {
		wg.Go(func() { r.read(pipe) })
	}
	wg.Wait()
	err = cmd.Wait()
	if ctx.Err() != nil {
		return nil, fmt.Errorf("external trainer %s stopped: %w", name, ctx.Err())
	}
	if err != nil {
		why := r.failure
		if why == "" {
			why = "no error event; its last lines:\n" + strings.Join(r.tail, "\n")
		}
		return nil, fmt.Errorf("external trainer %s: %w: %s", name, err, why)
	}
	report := func(p Progress) {
		if c.Progress != nil {
			p.Elapsed = time.Since(r.start)
			c.Progress(p)
		}
	}
	if err := c.complete(ctx, in, out, report); err != nil {
		return nil, fmt.Errorf("external trainer %s exited 0 but: %w", name, err)
	}
	l, err := CheckLayout(ctx, out)
	if err == nil {
		err = sameJob(l.URI, l.Metadata, in)
	}
	if err != nil {
		return nil, fmt.Errorf("external trainer %s exited 0 but: %w", name, err)
	}
	l.Files[InputFile] = inputJSON
	return l, nil
}

func (c *Command) s3Env() []string {
	if c.S3 == nil {
		return nil
	}
	return []string{
		config.EnvPrefix + "S3_ENDPOINT=" + c.S3.Endpoint,
		config.EnvPrefix + "S3_REGION=" + c.S3.Region,
		config.EnvPrefix + "S3_ACCESS_KEY_ID=" + c.S3.AccessKeyID,
		config.EnvPrefix + "S3_SECRET_ACCESS_KEY=" + c.S3.SecretAccessKey,
		config.EnvPrefix + "S3_USE_PATH_STYLE=" + strconv.FormatBool(c.S3.UsePathStyle),
	}
}

// lineReader handles the lines of the program's stdout and stderr.
type lineReader struct {
	c     *Command
	start time.Time

	mu      sync.Mutex
	tail    []string
	failure string
}

func (r *lineReader) read(pipe io.Reader) {
	sc := bufio.NewScanner(pipe)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		r.line(sc.Text())
	}
	if err := sc.Err(); err != nil {
		r.line(fmt.Sprintf("(reading the trainer's output: %v)", err))
		_, _ = io.Copy(io.Discard, pipe) // let the program finish writing
	}
}

func (r *lineReader) line(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := ParseEvent(s)
	switch {
	case !ok:
		if len(r.tail) == logTail {
			r.tail = r.tail[1:]
		}
		r.tail = append(r.tail, s)
		if r.c.Log != nil {
			fmt.Fprintln(r.c.Log, s)
		}
	case e.Event == EventError:
		r.failure = e.Message
	case e.Event == EventProgress && r.c.Progress != nil:
		elapsed := time.Duration(e.ElapsedS * float64(time.Second))
		if elapsed <= 0 {
			elapsed = time.Since(r.start)
		}
		r.c.Progress(Progress{Stage: e.Stage, Step: e.Step, Steps: e.Steps, Message: e.Message, Metrics: e.Metrics, Elapsed: elapsed})
	}
}

// RunCommand is the program side of the protocol, running GoTrainer: it
// parses --input, --output and --params from args, reads the input, opens
// its store and the output folder (s3:// URIs through s3's endpoint and
// credentials), trains, and writes protocol lines to stdout: progress, then
// done or error. --params, when given, replaces the input's parameters.
// `adaptrec train job` runs it; so can any GPU host that has the binary.
func RunCommand(ctx context.Context, args []string, s3 config.S3, stdout io.Writer) error {
	err := runCommand(ctx, args, s3, stdout)
	if err != nil {
		_, _ = stdout.Write(FormatEvent(Event{Event: EventError, Message: err.Error()}))
	}
	return err
}

func runCommand(ctx context.Context, args []string, s3 config.S3, stdout io.Writer) error {
	fs := flag.NewFlagSet("train job", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	input := fs.String("input", "", "URI of input.json")
	output := fs.String("output", "", "URI of the output folder")
	params := fs.String("params", "", "parameters as JSON (default: the input's)")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("train job: %w", err)
	}
	if *input == "" || *output == "" || fs.NArg() > 0 {
		return fmt.Errorf("train job: want --input <uri> --output <uri> [--params <json>], got %q", args)
	}
	slash := strings.LastIndex(*input, "/")
	if slash < 0 {
		return fmt.Errorf("train job: --input %q is not a file URI or path", *input)
	}
	inDir, err := OpenDir(ctx, (*input)[:slash+1], s3)
	if err != nil {
		return err
	}
	b, err := inDir.Get(ctx, (*input)[slash+1:])
	if err != nil {
		return err
	}
	in, err := DecodeInput(b)
	if err != nil {
		return err
	}
	if *params != "" {
		var p Params
		dec := json.NewDecoder(strings.NewReader(*params))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&p); err != nil {
			return fmt.Errorf("train job: --params: %w", err)
		}
		in.Params = p
	}
	out, err := OpenDir(ctx, *output, s3)
	if err != nil {
		return err
	}
	st, err := OpenStore(ctx, in.Store, s3)
	if err != nil {
		return err
	}
	var mu sync.Mutex
	g := &GoTrainer{Store: st, Progress: func(p Progress) {
		mu.Lock()
		defer mu.Unlock()
		_, _ = stdout.Write(FormatEvent(ProgressEvent(p)))
	}}
	if _, err := g.Train(ctx, in, out); err != nil {
		return err
	}
	_, err = stdout.Write(FormatEvent(Event{Event: EventDone, Metadata: out.URI(MetadataFile)}))
	return err
}
