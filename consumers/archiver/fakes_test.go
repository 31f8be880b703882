package archiver

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"iter"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/adaptrec/adaptrec/internal/objstore"
)

// memLog is one Kafka partition in memory.
type memLog struct {
	mu    sync.Mutex
	msgs  []kafka.Message
	grown chan struct{}
}

func newMemLog() *memLog { return &memLog{grown: make(chan struct{})} }

func (l *memLog) append(topic string, partition int, key, value []byte, at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, kafka.Message{
		Topic: topic, Partition: partition, Offset: int64(len(l.msgs)),
		Key: key, Value: value, Time: at,
	})
	close(l.grown)
	l.grown = make(chan struct{})
}

func (l *memLog) end() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return int64(len(l.msgs))
}

// memReader reads a memLog like a kafka.Reader positioned at an offset.
type memReader struct {
	log *memLog
	off int64
}

func (r *memReader) FetchMessage(ctx context.Context) (kafka.Message, error) {
	for {
		r.log.mu.Lock()
		if r.off < int64(len(r.log.msgs)) {
			m := r.log.msgs[r.off]
			m.HighWaterMark = int64(len(r.log.msgs))
			r.off++
			r.log.mu.Unlock()
			return m, nil
		}
		grown := r.log.grown
		r.log.mu.Unlock()
		select {
		case <-ctx.Done():
			return kafka.Message{}, ctx.Err()
		case <-grown:
		}
	}
}

func (r *memReader) Close() error { return nil }

// memStore is an S3 bucket in memory with ETag conditions. Its hooks can
// make an operation fail, before or after taking effect.
type memStore struct {
	mu      sync.Mutex
	objects map[string][]byte
	puts    int
	// before and after run around every Put and Delete; an error from
	// before stops the operation, one from after is returned although it
	// took effect (a crash after the server applied the write).
	before, after func(op, key string) error
}

func newMemStore() *memStore { return &memStore{objects: map[string][]byte{}} }

func etagOf(b []byte) string {
	h := md5.Sum(b)
	return `"` + hex.EncodeToString(h[:]) + `"`
}

func (s *memStore) hook(f func(op, key string) error, op, key string) error {
	if f == nil {
		return nil
	}
	return f(op, key)
}

func (s *memStore) Put(_ context.Context, key string, body []byte, opts objstore.PutOptions) (string, error) {
	if err := s.hook(s.before, "put", key); err != nil {
		return "", err
	}
	s.mu.Lock()
	cur, exists := s.objects[key]
	switch {
	case opts.IfNoneMatch == "*" && exists:
		s.mu.Unlock()
		return "", fmt.Errorf("put %s: %w", key, objstore.ErrPreconditionFailed)
	case opts.IfMatch != "" && (!exists || etagOf(cur) != opts.IfMatch):
		s.mu.Unlock()
		return "", fmt.Errorf("put %s: %w", key, objstore.ErrPreconditionFailed)
	}
	s.objects[key] = bytes.Clone(body)
	s.puts++
	s.mu.Unlock()
	if err := s.hook(s.after, "put", key); err != nil {
		return "", err
	}
	return etagOf(body), nil
}

func (s *memStore) Get(_ context.Context, key string) ([]byte, objstore.ObjectInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.objects[key]
	if !ok {
		return nil, objstore.ObjectInfo{}, fmt.Errorf("get %s: %w", key, objstore.ErrNotFound)
	}
	return bytes.Clone(b), objstore.ObjectInfo{Key: key, Size: int64(len(b)), ETag: etagOf(b)}, nil
}

func (s *memStore) GetRange(_ context.Context, key string, off, n int64) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.objects[key]
	if !ok {
		return nil, fmt.Errorf("get %s: %w", key, objstore.ErrNotFound)
	}
	return bytes.Clone(b[off:min(off+n, int64(len(b)))]), nil
}

func (s *memStore) Delete(_ context.Context, key string) error {
	if err := s.hook(s.before, "delete", key); err != nil {
		return err
	}
	s.mu.Lock()
	delete(s.objects, key)
	s.mu.Unlock()
	return s.hook(s.after, "delete", key)
}

func (s *memStore) List(_ context.Context, prefix string, _ objstore.ListOptions) iter.Seq2[objstore.ObjectInfo, error] {
	s.mu.Lock()
	var infos []objstore.ObjectInfo
	for k, b := range s.objects {
		if strings.HasPrefix(k, prefix) {
			infos = append(infos, objstore.ObjectInfo{Key: k, Size: int64(len(b))})
		}
	}
	s.mu.Unlock()
	sort.Slice(infos, func(i, j int) bool { return infos[i].Key < infos[j].Key })
	return func(yield func(objstore.ObjectInfo, error) bool) {
		for _, i := range infos {
			if !yield(i, nil) {
				return
			}
		}
	}
}

func (s *memStore) keys(prefix string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for k := range s.objects {
		if strings.HasPrefix(k, prefix) {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// memGroup is the consumer group's committed offset with generation fencing.
type memGroup struct {
	mu         sync.Mutex
	committed  int64
	generation int32
	commits    int
}

func (g *memGroup) commitFor(gen int32) func(context.Context, int64) error {
	return func(_ context.Context, next int64) error {
		g.mu.Lock()
		defer g.mu.Unlock()
		if gen != g.generation {
			return fmt.Errorf("%w: generation %d, group is at %d", errGenerationEnded, gen, g.generation)
		}
		g.committed = next
		g.commits++
		return nil
	}
}

func (g *memGroup) offset() int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.committed
}

// memTopic collects dead letters.
type memTopic struct {
	mu     sync.Mutex
	msgs   []kafka.Message
	before func() error
	writes atomic.Int64
}

func (t *memTopic) WriteMessages(_ context.Context, msgs ...kafka.Message) error {
	if t.before != nil {
		if err := t.before(); err != nil {
			return err
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.msgs = append(t.msgs, msgs...)
	t.writes.Add(1)
	return nil
}

func (t *memTopic) all() []kafka.Message {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]kafka.Message(nil), t.msgs...)
}

var errCrash = errors.New("injected crash")

type objstoreOpts = objstore.PutOptions
