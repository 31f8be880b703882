package eventlog

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/parquet-go/parquet-go"
)

// CountProducer counts the rows of obj written by producer with event time
// in [from, to). Row groups whose statistics rule the producer out, or show
// it as the only producer with times inside the range, are decided from the
// footer alone; an object with any other row group is read row by row.
// Backfills write objects of one producer, so counting a large archive costs
// footer reads, not full scans.
func CountProducer(ctx context.Context, src Source, obj Object, producer string, from, to time.Time) (int64, error) {
	f, err := parquet.OpenFile(&rangeReader{ctx: ctx, src: src, key: obj.Key}, obj.Size,
		parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true), parquet.ReadBufferSize(64<<10))
	if err != nil {
		return 0, fmt.Errorf("open %s: %w", obj.Key, err)
	}
	timeCol, ok1 := f.Schema().Lookup(ColumnEventTime)
	prodCol, ok2 := f.Schema().Lookup(ColumnProducer)
	if !ok1 || !ok2 {
		return 0, fmt.Errorf("%s lacks the %s or %s column", obj.Key, ColumnEventTime, ColumnProducer)
	}
	var n int64
	for i, rg := range f.Metadata().RowGroups {
		lo, hi, ok := rowGroupTimes(f, i, timeCol.ColumnIndex)
		if !ok || hi.Before(from) || !lo.Before(to) {
			if ok {
				continue // entirely outside the range
			}
			return countRows(ctx, src, obj, producer, from, to)
		}
		// The writer keeps exact column-chunk statistics (only the page
		// index truncates), so they decide most row groups without a read.
		st := rg.Columns[prodCol.ColumnIndex].MetaData.Statistics
		if st.MinValue != nil && (string(st.MaxValue) < producer || string(st.MinValue) > producer) {
			continue // no row of this producer
		}
		single := bytes.Equal(st.MinValue, st.MaxValue) && string(st.MinValue) == producer
		if lo.Before(from) || !hi.Before(to) || !single {
			return countRows(ctx, src, obj, producer, from, to)
		}
		n += rg.NumRows
	}
	return n, nil
}

func countRows(ctx context.Context, src Source, obj Object, producer string, from, to time.Time) (int64, error) {
	var n int64
	err := ReadObject(ctx, src, obj, from, to, func(r *Row) error {
		if r.Producer == producer {
			n++
		}
		return nil
	})
	return n, err
}
