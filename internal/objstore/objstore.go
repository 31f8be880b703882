// Package objstore is adaptrec's thin client for S3-compatible object
// storage: the offline event log, archiver state and model artifacts live in
// one bucket behind it. Keys passed to and returned by a Store are logical:
// the configured s3.prefix is added on the way in and removed on the way out,
// so several deployments can share a bucket.
//
// Conditional writes (create-only with IfNoneMatch "*", compare-and-swap with
// IfMatch) report a lost race as ErrPreconditionFailed, which lets callers
// build atomic pointers and fence stale writers on plain S3.
package objstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/adaptrec/adaptrec/internal/config"
)

var (
	// ErrNotFound reports a missing object (or bucket).
	ErrNotFound = errors.New("object not found")
	// ErrPreconditionFailed reports a conditional write that lost: the object
	// already existed (IfNoneMatch "*") or its ETag no longer matched
	// (IfMatch). The caller re-reads and decides again.
	ErrPreconditionFailed = errors.New("precondition failed")
)

// Store is an S3 bucket seen through the configured key prefix. It is safe
// for concurrent use.
type Store struct {
	client *s3.Client
	bucket string
	prefix string
}

// New returns a Store for cfg. An endpoint selects an S3-compatible server;
// static credentials are used when set, the default AWS credential chain
// (environment, shared config, instance role) otherwise. No request is made.
func New(ctx context.Context, cfg config.S3) (*Store, error) {
	if cfg.Bucket == "" {
		return nil, errors.New("objstore: s3.bucket is required")
	}
	opts := []func(*awsconfig.LoadOptions) error{awsconfig.WithRegion(cfg.Region)}
	if cfg.AccessKeyID != "" {
		opts = append(opts, awsconfig.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, "")))
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("load AWS configuration: %w", err)
	}
	// Many parallel PUTs of event-log objects go to one host; the default
	// of 2 idle connections per host would reconnect constantly.
	httpClient := awshttp.NewBuildableClient().WithTransportOptions(func(t *http.Transport) {
		t.MaxIdleConns = 256
		t.MaxIdleConnsPerHost = 64
		t.IdleConnTimeout = 90 * time.Second
	})
	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.UsePathStyle = cfg.UsePathStyle
		// Servers other than AWS often return no checksum; validating only
		// when required keeps the SDK from logging a warning per GET.
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
		o.HTTPClient = httpClient
	})
	prefix := cfg.Prefix
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	return &Store{client: client, bucket: cfg.Bucket, prefix: prefix}, nil
}

// Bucket names the bucket the store writes to.
func (s *Store) Bucket() string { return s.bucket }

// URI returns the s3:// address of a logical key, for messages and lineage.
func (s *Store) URI(key string) string { return "s3://" + s.bucket + "/" + s.prefix + key }

// PutOptions make a Put conditional.
type PutOptions struct {
	// IfNoneMatch "*" writes only when no object exists under the key.
	IfNoneMatch string
	// IfMatch writes only when the current object has this ETag.
	IfMatch string
	// ContentType is stored with the object; application/octet-stream when
	// empty.
	ContentType string
}

// Put writes body under key and returns the new ETag. A failed condition
// returns an error wrapping ErrPreconditionFailed.
func (s *Store) Put(ctx context.Context, key string, body []byte, opts PutOptions) (string, error) {
	in := &s3.PutObjectInput{
		Bucket:        aws.String(s.bucket),
		Key:           aws.String(s.prefix + key),
		Body:          bytes.NewReader(body),
		ContentLength: aws.Int64(int64(len(body))),
	}
	if opts.IfNoneMatch != "" {
		in.IfNoneMatch = aws.String(opts.IfNoneMatch)
	}
	if opts.IfMatch != "" {
		in.IfMatch = aws.String(opts.IfMatch)
	}
	if opts.ContentType != "" {
		in.ContentType = aws.String(opts.ContentType)
	}
	out, err := s.client.PutObject(ctx, in)
	if err != nil {
		return "", fmt.Errorf("put %s: %w", s.URI(key), classify(err))
	}
	return aws.ToString(out.ETag), nil
}

// ObjectInfo describes a stored object. Key is logical (without the prefix).
type ObjectInfo struct {
	Key          string
	Size         int64
	ETag         string
	LastModified time.Time
}

// Get reads a whole object and returns its bytes and ETag.
func (s *Store) Get(ctx context.Context, key string) ([]byte, ObjectInfo, error) {
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{
		Bucket: aws.String(s.bucket),
		Key:    aws.String(s.prefix + key),
	})
	if err != nil {
		return nil, ObjectInfo{}, fmt.Errorf("get %s: %w", s.URI(key), classify(err))
	}
	defer out.Body.Close()
	size := aws.ToInt64(out.ContentLength)
	buf := bytes.NewBuffer(make([]byte, 0, max(size, 0)+bytes.MinRead))
	if _, err := buf.ReadFrom(out.Body); err != nil {
		return nil, ObjectInfo{}, fmt.Errorf("read %s: %w", s.URI(key), err)
	}
	return buf.Bytes(), ObjectInfo{
		Key:          key,
		Size:         int64(buf.Len()),
		ETag:         aws.ToString(out.ETag),
		LastModified: aws.ToTime(out.LastModified),
	}, nil
}

// GetRange reads length bytes of an object starting at offset; it lets a
// Parquet reader fetch a footer or one column chunk without the whole object.
func (s *Store) GetRange(ctx context.Context, key string, offset, length int64) ([]byte, error) {
	if length <= 0 {
		return nil, nil
	}
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{
		Bucket: aws.String(s.bucket),
		Key:    aws.String(s.prefix + key),
		Range:  aws.String(fmt.Sprintf("bytes=%d-%d", offset, offset+length-1)),
	})
	if err != nil {
		return nil, fmt.Errorf("get %s bytes %d+%d: %w", s.URI(key), offset, length, classify(err))
	}
	defer out.Body.Close()
	b := make([]byte, length)
	n, err := io.ReadFull(out.Body, b)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, fmt.Errorf("read %s bytes %d+%d: %w", s.URI(key), offset, length, err)
	}
	return b[:n], nil
}

// Head returns an object's size, ETag and modification time.
func (s *Store) Head(ctx context.Context, key string) (ObjectInfo, error) {
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{
		Bucket: aws.String(s.bucket),
		Key:    aws.String(s.prefix + key),
	})
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("head %s: %w", s.URI(key), classify(err))
	}
	return ObjectInfo{
		Key:          key,
		Size:         aws.ToInt64(out.ContentLength),
		ETag:         aws.ToString(out.ETag),
		LastModified: aws.ToTime(out.LastModified),
	}, nil
}

// Delete removes an object; deleting a missing object is not an error.
func (s *Store) Delete(ctx context.Context, key string) error {
	_, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{
		Bucket: aws.String(s.bucket),
		Key:    aws.String(s.prefix + key),
	})
	if err != nil {
		if err := classify(err); errors.Is(err, ErrNotFound) {
			return nil
		}
		return fmt.Errorf("delete %s: %w", s.URI(key), classify(err))
	}
	return nil
}

// ListOptions select a key range of a listing.
type ListOptions struct {
	// StartAfter skips every key up to and including this logical key.
	StartAfter string
	// Delimiter groups keys sharing a prefix up to the delimiter; the groups
	// are yielded as ObjectInfo with only Key set (ending in the delimiter).
	Delimiter string
	// PageSize is the keys requested per call; 1000 when zero.
	PageSize int32
}

// List yields the objects whose logical keys start with prefix, in key
// order, fetching pages as the caller consumes them. A failure is yielded
// once as the last element.
func (s *Store) List(ctx context.Context, prefix string, opts ListOptions) iter.Seq2[ObjectInfo, error] {
	return func(yield func(ObjectInfo, error) bool) {
		in := &s3.ListObjectsV2Input{
			Bucket:  aws.String(s.bucket),
			Prefix:  aws.String(s.prefix + prefix),
			MaxKeys: aws.Int32(1000),
		}
		if opts.PageSize > 0 {
			in.MaxKeys = aws.Int32(opts.PageSize)
		}
		if opts.StartAfter != "" {
			in.StartAfter = aws.String(s.prefix + opts.StartAfter)
		}
		if opts.Delimiter != "" {
			in.Delimiter = aws.String(opts.Delimiter)
		}
		pages := s3.NewListObjectsV2Paginator(s.client, in)
		for pages.HasMorePages() {
			page, err := pages.NextPage(ctx)
			if err != nil {
				yield(ObjectInfo{}, fmt.Errorf("list %s: %w", s.URI(prefix), classify(err)))
				return
			}
			for _, cp := range page.CommonPrefixes {
				if !yield(ObjectInfo{Key: strings.TrimPrefix(aws.ToString(cp.Prefix), s.prefix)}, nil) {
					return
				}
			}
			for _, o := range page.Contents {
				info := ObjectInfo{
					Key:          strings.TrimPrefix(aws.ToString(o.Key), s.prefix),
					Size:         aws.ToInt64(o.Size),
					ETag:         aws.ToString(o.ETag),
					LastModified: aws.ToTime(o.LastModified),
				}
				if !yield(info, nil) {
					return
				}
			}
		}
	}
}

// EnsureBucket creates the bucket unless it exists.
func (s *Store) EnsureBucket(ctx context.Context) error {
	_, err := s.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(s.bucket)})
	if err == nil {
		return nil
	}
	if !errors.Is(classify(err), ErrNotFound) {
		return fmt.Errorf("check bucket %s: %w", s.bucket, classify(err))
	}
	_, err = s.client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(s.bucket)})
	if err != nil {
		var owned *types.BucketAlreadyOwnedByYou
		if errors.As(err, &owned) {
			return nil
		}
		return fmt.Errorf("create bucket %s: %w", s.bucket, err)
	}
	return nil
}

// classify maps S3 errors onto the package sentinels, keeping the original
// error in the chain for its details.
func classify(err error) error {
	var status int
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
	}
	var code string
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		code = apiErr.ErrorCode()
	}
	switch {
	case status == http.StatusPreconditionFailed || code == "PreconditionFailed",
		// AWS answers 409 when two conditional writes race on one key.
		code == "ConditionalRequestConflict":
		return fmt.Errorf("%w: %w", ErrPreconditionFailed, err)
	case status == http.StatusNotFound || code == "NoSuchKey" || code == "NotFound" || code == "NoSuchBucket":
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	return err
}
