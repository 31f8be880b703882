// Package eventlog is the Parquet layout of adaptrec's offline event log:
// where the archiver puts each event on S3, the row schema, and readers that
// select objects by event time and stream their rows.
//
// Objects are laid out by topic and UTC event-time hour,
//
//	events/{topic}/date=YYYY-MM-DD/hour=HH/{topic}-p{partition:03d}-{firstOffset:020d}.parquet
//
// one object per (topic, partition, archiver batch, hour bucket), where
// firstOffset is the batch's first Kafka offset. The hive-style date= and
// hour= segments let Spark, DuckDB or Athena prune by time, and a reader here
// walks only the prefixes of the hours it needs. Keys are a pure function of
// the batch, so rewriting a batch after a crash overwrites the same objects.
package eventlog

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Root is the key prefix of the event log inside the store.
const Root = "events/"

const (
	dateLayout = "2006-01-02"
	ext        = ".parquet"
)

// Ref identifies one event-log object.
type Ref struct {
	Topic     string
	Partition int
	// FirstOffset is the first Kafka offset of the archiver batch that wrote
	// the object; every row's offset is at or after it.
	FirstOffset int64
	// Hour is the UTC event-time hour bucket of every row in the object.
	Hour time.Time
}

// HourOf returns the UTC hour bucket of t.
func HourOf(t time.Time) time.Time { return t.UTC().Truncate(time.Hour) }

// Key returns the object key of r.
func (r Ref) Key() string {
	var b strings.Builder
	b.Grow(len(Root) + 2*len(r.Topic) + 64)
	b.WriteString(HourPrefix(r.Topic, r.Hour))
	b.WriteString(r.Topic)
	fmt.Fprintf(&b, "-p%03d-%020d", r.Partition, r.FirstOffset)
	b.WriteString(ext)
	return b.String()
}

// TopicPrefix is the key prefix of every object of a topic.
func TopicPrefix(topic string) string { return Root + topic + "/" }

// DatePrefix is the key prefix of a topic's objects for one UTC day.
func DatePrefix(topic string, day time.Time) string {
	return TopicPrefix(topic) + "date=" + day.UTC().Format(dateLayout) + "/"
}

// HourPrefix is the key prefix of a topic's objects for one UTC hour.
func HourPrefix(topic string, hour time.Time) string {
	h := HourOf(hour)
	return DatePrefix(topic, h) + fmt.Sprintf("hour=%02d/", h.Hour())
}

// ParseKey parses an object key written by Ref.Key.
func ParseKey(key string) (Ref, error) {
	bad := func(why string) (Ref, error) {
		return Ref{}, fmt.Errorf("event log key %q: %s", key, why)
	}
	rest, ok := strings.CutPrefix(key, Root)
	if !ok {
		return bad("does not start with " + Root)
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 4 {
		return bad("want events/{topic}/date=YYYY-MM-DD/hour=HH/{name}.parquet")
	}
	topic := parts[0]
	date, ok := strings.CutPrefix(parts[1], "date=")
	if !ok {
		return bad("second segment is not date=YYYY-MM-DD")
	}
	day, err := time.Parse(dateLayout, date)
	if err != nil {
		return bad("bad date: " + err.Error())
	}
	hs, ok := strings.CutPrefix(parts[2], "hour=")
	if !ok || len(hs) != 2 {
		return bad("third segment is not hour=HH")
	}
	hour, err := strconv.Atoi(hs)
	if err != nil || hour < 0 || hour > 23 {
		return bad("bad hour " + hs)
	}
	name, ok := strings.CutSuffix(parts[3], ext)
	if !ok {
		return bad("name does not end in " + ext)
	}
	name, ok = strings.CutPrefix(name, topic+"-p")
	if !ok {
		return bad("name does not start with the topic")
	}
	ps, os, ok := strings.Cut(name, "-")
	if !ok {
		return bad("name lacks -{firstOffset}")
	}
	partition, err := strconv.Atoi(ps)
	if err != nil || partition < 0 {
		return bad("bad partition " + ps)
	}
	first, err := strconv.ParseInt(os, 10, 64)
	if err != nil || first < 0 {
		return bad("bad first offset " + os)
	}
	return Ref{
		Topic:       topic,
		Partition:   partition,
		FirstOffset: first,
		Hour:        day.Add(time.Duration(hour) * time.Hour),
	}, nil
}

// Prefixes returns the fewest key prefixes that cover every object of topic
// whose hour bucket overlaps [from, to): a whole UTC day inside the range is
// one date= prefix, the partial days at either end are listed hour by hour.
// It returns nil for an empty range.
func Prefixes(topic string, from, to time.Time) []string {
	if !from.Before(to) {
		return nil
	}
	var out []string
	h := HourOf(from)
	last := HourOf(to.Add(-time.Nanosecond))
	for !h.After(last) {
		day := h.Truncate(24 * time.Hour)
		nextDay := day.Add(24 * time.Hour)
		if h.Equal(day) && !nextDay.Add(-time.Hour).After(last) {
			out = append(out, DatePrefix(topic, day))
			h = nextDay
			continue
		}
		out = append(out, HourPrefix(topic, h))
		h = h.Add(time.Hour)
	}
	return out
}
