package eventlog

import (
	"bytes"
	"cmp"
	"container/heap"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"iter"
	"slices"
	"sync"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/adaptrec/adaptrec/internal/objstore"
)

// Lister lists objects by key prefix; *objstore.Store implements it.
type Lister interface {
	List(ctx context.Context, prefix string, opts objstore.ListOptions) iter.Seq2[objstore.ObjectInfo, error]
}

// Source is the read side of the object store the event log lives in;
// *objstore.Store implements it.
type Source interface {
	Lister
	Get(ctx context.Context, key string) ([]byte, objstore.ObjectInfo, error)
	GetRange(ctx context.Context, key string, offset, length int64) ([]byte, error)
}

var _ Source = (*objstore.Store)(nil)

// Object is one event-log object found by ListObjects.
type Object struct {
	Ref
	Key  string
	Size int64
	// LastModified is when the object store last wrote the object.
	LastModified time.Time
}

// ListObjects returns the objects of topic whose hour bucket overlaps
// [from, to), ordered by hour and then key. It lists only the date and hour
// prefixes of the range. Keys under the topic that do not parse are errors:
// something other than the archiver wrote there.
func ListObjects(ctx context.Context, src Lister, topic string, from, to time.Time) ([]Object, error) {
	var out []Object
	for _, prefix := range Prefixes(topic, from, to) {
		for info, err := range src.List(ctx, prefix, objstore.ListOptions{}) {
			if err != nil {
				return nil, err
			}
			ref, err := ParseKey(info.Key)
			if err != nil {
				return nil, err
			}
			if ref.Topic != topic || ref.Hour.Before(HourOf(from)) || !ref.Hour.Before(to) {
				continue
			}
			out = append(out, Object{Ref: ref, Key: info.Key, Size: info.Size, LastModified: info.LastModified})
		}
	}
	slices.SortFunc(out, func(a, b Object) int {
		if c := a.Hour.Compare(b.Hour); c != 0 {
			return c
		}
		return cmp.Compare(a.Key, b.Key)
	})
	return out, nil
}

// Stats summarises one object from its Parquet footer.
type Stats struct {
	Rows int64
	// MinTime and MaxTime bound the event times of the rows (millisecond
	// precision).
	MinTime, MaxTime time.Time
	RowGroups        int
}

// Stat reads only the footer of obj (two small ranged reads) and returns its
// row count and event-time bounds.
func Stat(ctx context.Context, src Source, obj Object) (Stats, error) {
	f, err := parquet.OpenFile(&rangeReader{ctx: ctx, src: src, key: obj.Key}, obj.Size,
		parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true), parquet.ReadBufferSize(64<<10))
	if err != nil {
		return Stats{}, fmt.Errorf("open %s: %w", obj.Key, err)
	}
	return statsOf(f, obj.Key)
}

func statsOf(f *parquet.File, key string) (Stats, error) {
	col, ok := f.Schema().Lookup(ColumnEventTime)
	if !ok {
		return Stats{}, fmt.Errorf("%s has no %s column", key, ColumnEventTime)
	}
	st := Stats{Rows: f.NumRows(), RowGroups: len(f.Metadata().RowGroups)}
	for i := range f.Metadata().RowGroups {
		lo, hi, ok := rowGroupTimes(f, i, col.ColumnIndex)
		if !ok {
			return Stats{}, fmt.Errorf("%s row group %d has no %s statistics", key, i, ColumnEventTime)
		}
		if i == 0 || lo.Before(st.MinTime) {
			st.MinTime = lo
		}
		if i == 0 || hi.After(st.MaxTime) {
			st.MaxTime = hi
		}
	}
	return st, nil
}

// rowGroupTimes returns the event-time bounds of row group i from the column
// chunk statistics.
func rowGroupTimes(f *parquet.File, i, column int) (lo, hi time.Time, ok bool) {
	rg := f.Metadata().RowGroups[i]
	if column >= len(rg.Columns) {
		return time.Time{}, time.Time{}, false
	}
	s := rg.Columns[column].MetaData.Statistics
	min, max := s.MinValue, s.MaxValue
	if len(min) != 8 || len(max) != 8 {
		return time.Time{}, time.Time{}, false
	}
	return time.UnixMilli(int64(binary.LittleEndian.Uint64(min))).UTC(),
		time.UnixMilli(int64(binary.LittleEndian.Uint64(max))).UTC(), true
}

// wholeObjectLimit is the size up to which an object is fetched with one GET
// rather than ranged reads; archiver objects are well below it.
const wholeObjectLimit = 64 << 20

// openObject opens obj for reading rows.
func openObject(ctx context.Context, src Source, obj Object) (*parquet.File, error) {
	var r io.ReaderAt
	size := obj.Size
	if size <= wholeObjectLimit {
		b, _, err := src.Get(ctx, obj.Key)
		if err != nil {
			return nil, err
		}
		r, size = bytes.NewReader(b), int64(len(b))
	} else {
		r = &rangeReader{ctx: ctx, src: src, key: obj.Key}
	}
	f, err := parquet.OpenFile(r, size, parquet.SkipBloomFilters(true))
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", obj.Key, err)
	}
	return f, nil
}

// rangeReader reads an object with ranged GETs.
type rangeReader struct {
	ctx context.Context
	src Source
	key string
}

func (r *rangeReader) ReadAt(p []byte, off int64) (int, error) {
	b, err := r.src.GetRange(r.ctx, r.key, off, int64(len(p)))
	if err != nil {
		return 0, err
	}
	n := copy(p, b)
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// cursor streams the rows of one object whose event time is in [from, to),
// skipping row groups whose statistics lie outside the range. Rows are
// sorted inside an object, so the cursor stops at the first row at or after
// to.
type cursor struct {
	key      string
	file     *parquet.File
	from, to time.Time
	timeCol  int
	group    int
	opened   int // row groups read, for tests of statistics skipping
	reader   *parquet.GenericReader[Row]
	buf      []Row
	n, i     int
	done     bool
}

const cursorBatch = 256

func newCursor(f *parquet.File, key string, from, to time.Time) (*cursor, error) {
	col, ok := f.Schema().Lookup(ColumnEventTime)
	if !ok {
		return nil, fmt.Errorf("%s has no %s column", key, ColumnEventTime)
	}
	return &cursor{key: key, file: f, from: from, to: to, timeCol: col.ColumnIndex, buf: make([]Row, cursorBatch)}, nil
}

// next returns the next row in range, or nil at the end. The row is valid
// until the following call.
func (c *cursor) next() (*Row, error) {
	for !c.done {
		if c.i < c.n {
			r := &c.buf[c.i]
			c.i++
			if r.EventTime.Before(c.from) {
				continue
			}
			if !r.EventTime.Before(c.to) {
				c.done = true
				return nil, nil
			}
			return r, nil
		}
		if c.reader != nil {
			n, err := c.reader.Read(c.buf)
			c.n, c.i = n, 0
			if errors.Is(err, io.EOF) {
				c.reader.Close()
				c.reader = nil
				if n > 0 {
					continue
				}
			} else if err != nil {
				return nil, fmt.Errorf("read %s: %w", c.key, err)
			}
			continue
		}
		if !c.openGroup() {
			c.done = true
		}
	}
	return nil, nil
}

// openGroup starts the next row group that can hold rows in range and
// reports whether there was one.
func (c *cursor) openGroup() bool {
	groups := c.file.RowGroups()
	for c.group < len(groups) {
		g := c.group
		c.group++
		lo, hi, ok := rowGroupTimes(c.file, g, c.timeCol)
		if ok && (hi.Before(c.from) || !lo.Before(c.to)) {
			if !lo.Before(c.to) {
				c.group = len(groups) // sorted: later groups are later still
			}
			continue
		}
		c.reader = parquet.NewGenericRowGroupReader[Row](groups[g])
		c.opened++
		return true
	}
	return false
}

func (c *cursor) close() {
	if c.reader != nil {
		c.reader.Close()
		c.reader = nil
	}
	c.done = true
}

// ReadObject calls fn for every row of obj whose event time is in
// [from, to), in event-time order, reading one row group at a time. The row
// and the slices it holds are only valid during the call; copy what must
// outlive it. An error from fn stops the read and is returned.
func ReadObject(ctx context.Context, src Source, obj Object, from, to time.Time, fn func(*Row) error) error {
	f, err := openObject(ctx, src, obj)
	if err != nil {
		return err
	}
	c, err := newCursor(f, obj.Key, from, to)
	if err != nil {
		return err
	}
	defer c.close()
	for {
		r, err := c.next()
		if err != nil || r == nil {
			return err
		}
		if err := fn(r); err != nil {
			return err
		}
	}
}

// Scan calls fn for every archived event of topic with event time in
// [from, to), object by object (event-time order within an object only).
// It holds one object in memory at a time.
func Scan(ctx context.Context, src Source, topic string, from, to time.Time, fn func(*Row) error) error {
	objs, err := ListObjects(ctx, src, topic, from, to)
	if err != nil {
		return err
	}
	for _, o := range objs {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := ReadObject(ctx, src, o, from, to, fn); err != nil {
			return err
		}
	}
	return nil
}

// ScanOrdered calls fn for every archived event of topic with event time in
// [from, to) in global event-time order (ties by partition and offset).
//
// Hour buckets never overlap, so it merges one hour at a time. Inside an hour
// it first reads each object's footer for its time bounds, then runs a k-way
// merge that opens an object only when the merge reaches its earliest event
// and drops it when exhausted: the objects held in memory at once are those
// whose time ranges overlap, roughly one per partition for live traffic, not
// the whole hour. Row validity is as for ReadObject.
func ScanOrdered(ctx context.Context, src Source, topic string, from, to time.Time, fn func(*Row) error) error {
	objs, err := ListObjects(ctx, src, topic, from, to)
	if err != nil {
		return err
	}
	for len(objs) > 0 {
		n := 1
		for n < len(objs) && objs[n].Hour.Equal(objs[0].Hour) {
			n++
		}
		if err := mergeHour(ctx, src, objs[:n], from, to, fn); err != nil {
			return err
		}
		objs = objs[n:]
	}
	return nil
}

type statted struct {
	Object
	Stats
}

// StatAll returns the footer statistics of objs, reading up to parallel
// footers at once.
func StatAll(ctx context.Context, src Source, objs []Object, parallel int) ([]Stats, error) {
	out := make([]Stats, len(objs))
	errs := make([]error, len(objs))
	sem := make(chan struct{}, max(parallel, 1))
	var wg sync.WaitGroup
	for i, o := range objs {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			out[i], errs[i] = Stat(ctx, src, o)
		}()
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

func mergeHour(ctx context.Context, src Source, objs []Object, from, to time.Time, fn func(*Row) error) error {
	stats, err := StatAll(ctx, src, objs, 8)
	if err != nil {
		return err
	}
	pending := make([]statted, 0, len(objs))
	for i, o := range objs {
		s := stats[i]
		if s.Rows == 0 || s.MaxTime.Before(from) || !s.MinTime.Before(to) {
			continue
		}
		pending = append(pending, statted{o, s})
	}
	slices.SortStableFunc(pending, func(a, b statted) int { return a.MinTime.Compare(b.MinTime) })

	var active rowHeap
	defer func() {
		for _, h := range active {
			h.c.close()
		}
	}()
	for {
		// Open every object that may hold a row ordered before the current
		// head: its first row is at or after its MinTime (stats are in
		// milliseconds, like the rows).
		for len(pending) > 0 && (len(active) == 0 || !pending[0].MinTime.After(active[0].row.EventTime)) {
			if err := ctx.Err(); err != nil {
				return err
			}
			o := pending[0]
			pending = pending[1:]
			f, err := openObject(ctx, src, o.Object)
			if err != nil {
				return err
			}
			c, err := newCursor(f, o.Key, from, to)
			if err != nil {
				return err
			}
			r, err := c.next()
			if err != nil {
				return err
			}
			if r != nil {
				heap.Push(&active, &headRow{c: c, row: r})
			}
		}
		if len(active) == 0 {
			return nil
		}
		h := active[0]
		if err := fn(h.row); err != nil {
			return err
		}
		r, err := h.c.next()
		if err != nil {
			return err
		}
		if r == nil {
			h.c.close()
			heap.Pop(&active)
			continue
		}
		h.row = r
		heap.Fix(&active, 0)
	}
}

type headRow struct {
	c   *cursor
	row *Row
}

type rowHeap []*headRow

func (h rowHeap) Len() int           { return len(h) }
func (h rowHeap) Less(i, j int) bool { return Compare(h[i].row, h[j].row) < 0 }
func (h rowHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *rowHeap) Push(x any)        { *h = append(*h, x.(*headRow)) }
func (h *rowHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
