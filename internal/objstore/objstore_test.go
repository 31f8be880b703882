package objstore_test

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/adaptrec/adaptrec/internal/objstore"
	"github.com/adaptrec/adaptrec/internal/testenv"
)

func newStore(t *testing.T, prefix string) *objstore.Store {
	t.Helper()
	env := testenv.New(t, testenv.S3)
	cfg := env.Config().S3
	cfg.Prefix = prefix
	s, err := objstore.New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureBucket(t.Context()); err != nil {
		t.Fatal(err)
	}
	// A second call finds the bucket and succeeds.
	if err := s.EnsureBucket(t.Context()); err != nil {
		t.Fatalf("EnsureBucket on an existing bucket: %v", err)
	}
	return s
}

func TestConditionalWrites(t *testing.T) {
	s := newStore(t, "tenant-a")
	ctx := t.Context()

	etag1, err := s.Put(ctx, "state/p0", []byte("v1"), objstore.PutOptions{IfNoneMatch: "*"})
	if err != nil {
		t.Fatalf("first create-only put: %v", err)
	}
	if etag1 == "" {
		t.Fatal("create-only put returned no ETag")
	}
	if _, err := s.Put(ctx, "state/p0", []byte("v1-again"), objstore.PutOptions{IfNoneMatch: "*"}); !errors.Is(err, objstore.ErrPreconditionFailed) {
		t.Fatalf("second create-only put = %v, want ErrPreconditionFailed", err)
	}
	etag2, err := s.Put(ctx, "state/p0", []byte("v2"), objstore.PutOptions{IfMatch: etag1})
	if err != nil {
		t.Fatalf("compare-and-swap with the current ETag: %v", err)
	}
	if etag2 == etag1 {
		t.Fatalf("ETag did not change after a write with new content (%s)", etag2)
	}
	if _, err := s.Put(ctx, "state/p0", []byte("v3"), objstore.PutOptions{IfMatch: etag1}); !errors.Is(err, objstore.ErrPreconditionFailed) {
		t.Fatalf("compare-and-swap with a stale ETag = %v, want ErrPreconditionFailed", err)
	}
	body, info, err := s.Get(ctx, "state/p0")
	if err != nil {
		t.Fatal(err)
	}
	if string(body) != "v2" || info.ETag != etag2 {
		t.Fatalf("after the lost CAS the object is %q (ETag %s), want v2 (ETag %s)", body, info.ETag, etag2)
	}
}

func TestGetHeadDeleteNotFound(t *testing.T) {
	s := newStore(t, "")
	ctx := t.Context()
	if _, _, err := s.Get(ctx, "missing"); !errors.Is(err, objstore.ErrNotFound) {
		t.Fatalf("Get(missing) = %v, want ErrNotFound", err)
	}
	if _, err := s.Head(ctx, "missing"); !errors.Is(err, objstore.ErrNotFound) {
		t.Fatalf("Head(missing) = %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx, "missing"); err != nil {
		t.Fatalf("Delete(missing) = %v, want nil", err)
	}
	payload := bytes.Repeat([]byte("0123456789"), 1000)
	if _, err := s.Put(ctx, "a/b", payload, objstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	info, err := s.Head(ctx, "a/b")
	if err != nil {
		t.Fatal(err)
	}
	if info.Size != int64(len(payload)) || info.Key != "a/b" {
		t.Fatalf("Head = %+v, want size %d key a/b", info, len(payload))
	}
	ranges := []struct {
		offset, length int64
		want           string
	}{
		{15, 10, "5678901234"},
		{9995, 10, "56789"}, // a range past the end is cut short, as in S3
	}
	for _, r := range ranges {
		part, err := s.GetRange(ctx, "a/b", r.offset, r.length)
		if err != nil {
			t.Fatal(err)
		}
		if string(part) != r.want {
			t.Fatalf("GetRange(%d, %d) = %q, want %q", r.offset, r.length, part, r.want)
		}
	}
	if err := s.Delete(ctx, "a/b"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Get(ctx, "a/b"); !errors.Is(err, objstore.ErrNotFound) {
		t.Fatalf("Get after Delete = %v, want ErrNotFound", err)
	}
}

func TestListPaginatesAndStripsPrefix(t *testing.T) {
	s := newStore(t, "deploy-1/")
	ctx := t.Context()
	var want []string
	for i := range 25 {
		k := fmt.Sprintf("events/t/%03d", i)
		want = append(want, k)
		if _, err := s.Put(ctx, k, []byte{byte(i)}, objstore.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Put(ctx, "other/x", []byte("x"), objstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		prefix string
		opts   objstore.ListOptions
		want   []string
	}{
		{"all pages", "events/", objstore.ListOptions{PageSize: 4}, want},
		{"start after", "events/", objstore.ListOptions{PageSize: 7, StartAfter: "events/t/019"}, want[20:]},
		{"delimiter", "", objstore.ListOptions{Delimiter: "/"}, []string{"events/", "other/"}},
		{"no match", "nothing/", objstore.ListOptions{}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for o, err := range s.List(ctx, tt.prefix, tt.opts) {
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, o.Key)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("List(%q, %+v) = %v, want %v", tt.prefix, tt.opts, got, tt.want)
			}
		})
	}
}
