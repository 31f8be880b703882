package eventlog

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestKeyRoundTrip(t *testing.T) {
	tests := []struct {
		ref  Ref
		want string
	}{
		{
			Ref{Topic: "adaptrec.interactions.v1", Partition: 3, FirstOffset: 1234, Hour: time.Date(2026, 11, 22, 7, 0, 0, 0, time.UTC)},
			"events/adaptrec.interactions.v1/date=2026-11-22/hour=07/adaptrec.interactions.v1-p003-00000000000000001234.parquet",
		},
		{
			Ref{Topic: "t", Partition: 127, FirstOffset: 0, Hour: time.Date(1999, 12, 31, 23, 0, 0, 0, time.UTC)},
			"events/t/date=1999-12-31/hour=23/t-p127-00000000000000000000.parquet",
		},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := tt.ref.Key(); got != tt.want {
				t.Fatalf("Key() = %s, want %s", got, tt.want)
			}
			back, err := ParseKey(tt.want)
			if err != nil {
				t.Fatal(err)
			}
			if back.Topic != tt.ref.Topic || back.Partition != tt.ref.Partition ||
				back.FirstOffset != tt.ref.FirstOffset || !back.Hour.Equal(tt.ref.Hour) {
				t.Fatalf("ParseKey = %+v, want %+v", back, tt.ref)
			}
		})
	}
}

func TestKeyUsesUTCHourOfAnyZone(t *testing.T) {
	tokyo := time.FixedZone("JST", 9*3600)
	at := time.Date(2026, 11, 22, 8, 30, 0, 0, tokyo) // 23:30 UTC the day before
	got := Ref{Topic: "t", Partition: 1, FirstOffset: 5, Hour: at}.Key()
	if !strings.Contains(got, "date=2026-11-21/hour=23/") {
		t.Fatalf("Key for %s = %s, want the UTC bucket date=2026-11-21/hour=23", at, got)
	}
}

func TestParseKeyRejects(t *testing.T) {
	bad := []string{
		"other/t/date=2026-11-22/hour=07/t-p003-00000000000000001234.parquet",
		"events/t/date=2026-11-22/t-p003-00000000000000001234.parquet",
		"events/t/day=2026-11-22/hour=07/t-p003-00000000000000001234.parquet",
		"events/t/date=2026-13-22/hour=07/t-p003-00000000000000001234.parquet",
		"events/t/date=2026-11-22/hour=24/t-p003-00000000000000001234.parquet",
		"events/t/date=2026-11-22/hour=07/t-p003-00000000000000001234.json",
		"events/t/date=2026-11-22/hour=07/u-p003-00000000000000001234.parquet",
		"events/t/date=2026-11-22/hour=07/t-pxyz-00000000000000001234.parquet",
		"events/t/date=2026-11-22/hour=07/t-p003-12ab.parquet",
		"events/t/date=2026-11-22/hour=07/t-p003.parquet",
	}
	for _, k := range bad {
		if ref, err := ParseKey(k); err == nil {
			t.Errorf("ParseKey(%q) = %+v, want an error", k, ref)
		}
	}
}

func TestPrefixes(t *testing.T) {
	at := func(day, hour, min int) time.Time { return time.Date(2026, 11, day, hour, min, 0, 0, time.UTC) }
	h := func(day, hour int) string { return HourPrefix("t", at(day, hour, 0)) }
	d := func(day int) string { return DatePrefix("t", at(day, 0, 0)) }
	tests := []struct {
		name     string
		from, to time.Time
		want     []string
	}{
		{"empty", at(22, 5, 0), at(22, 5, 0), nil},
		{"reversed", at(22, 6, 0), at(22, 5, 0), nil},
		{"inside one hour", at(22, 5, 10), at(22, 5, 20), []string{h(22, 5)}},
		{"end exclusive on the hour", at(22, 5, 10), at(22, 7, 0), []string{h(22, 5), h(22, 6)}},
		{"across midnight", at(21, 22, 30), at(22, 1, 30), []string{h(21, 22), h(21, 23), h(22, 0), h(22, 1)}},
		{"whole day in the middle", at(20, 23, 0), at(22, 0, 1), []string{h(20, 23), d(21), h(22, 0)}},
		{"exactly one day", at(21, 0, 0), at(22, 0, 0), []string{d(21)}},
		{"day minus one hour", at(21, 0, 0), at(21, 23, 0), func() []string {
			var out []string
			for i := range 23 {
				out = append(out, h(21, i))
			}
			return out
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Prefixes("t", tt.from, tt.to); !slices.Equal(got, tt.want) {
				t.Fatalf("Prefixes(%s, %s) =\n%v\nwant\n%v", tt.from, tt.to, got, tt.want)
			}
		})
	}
}
