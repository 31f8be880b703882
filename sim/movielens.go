package sim

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/adaptrec/adaptrec/events"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
)

// MovieLensGenres are the genres of the MovieLens 100K u.item flags, in order.
var MovieLensGenres = []string{
	"unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
	"Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
	"Romance", "Sci-Fi", "Thriller", "War", "Western",
}

// DefaultMovieLensProducer is the envelope producer of MovieLens events.
const DefaultMovieLensProducer = "sim/movielens"

// Rating is one line of u.data.
type Rating struct {
	// User and Item are the data set's ids.
	User int32
	Item int32
	// Value is the rating, 1..5.
	Value uint8
	// Time is the rating time in unix seconds.
	Time int64
}

// Movie is one line of u.item.
type Movie struct {
	// ID is the data set's item id.
	ID int32
	// Title includes the year, e.g. "Toy Story (1995)".
	Title string
	// Released is the release date; the zero time when the file has none.
	Released time.Time
	// URL is the IMDb link of the file.
	URL string
	// Genres are indexes into MovieLensGenres.
	Genres []int32
}

// MovieLens is a loaded MovieLens 100K data set.
type MovieLens struct {
	// Ratings in file order.
	Ratings []Rating
	// Movies in id order.
	Movies []Movie
	// Users is the number of distinct users who rated.
	Users int
}

// MovieLensUserID and MovieLensItemID are the ids used in events and in the
// catalogue, kept apart from generated ids.
func MovieLensUserID(u int32) string { return "ml-u" + strconv.Itoa(int(u)) }

// MovieLensItemID returns the catalogue and event id of a MovieLens movie.
func MovieLensItemID(i int32) string { return "ml-i" + strconv.Itoa(int(i)) }

// LoadMovieLens reads u.data and u.item from dir and checks that every rating
// names a known movie.
func LoadMovieLens(dir string) (*MovieLens, error) {
	read := func(name string, parse func(io.Reader, string) error) error {
		path := filepath.Join(dir, name)
		f, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("movielens: %w", err)
		}
		defer f.Close()
		return parse(f, path)
	}
	m := &MovieLens{}
	err := read("u.item", func(r io.Reader, name string) (err error) {
		m.Movies, err = ReadMovieLensMovies(r, name)
		return err
	})
	if err != nil {
		return nil, err
	}
	dataPath := filepath.Join(dir, "u.data")
	err = read("u.data", func(r io.Reader, name string) (err error) {
		m.Ratings, err = ReadMovieLensRatings(r, name)
		return err
	})
	if err != nil {
		return nil, err
	}
	known := make(map[int32]bool, len(m.Movies))
	for _, mv := range m.Movies {
		known[mv.ID] = true
	}
	users := make(map[int32]bool)
	for i, r := range m.Ratings {
		if !known[r.Item] {
			return nil, fmt.Errorf("%s:%d: item %d is not in u.item", dataPath, i+1, r.Item)
		}
		users[r.User] = true
	}
	m.Users = len(users)
	return m, nil
}

// lineError names the file and line of malformed input.
func lineError(name string, line int, format string, args ...any) error {
	return fmt.Errorf("%s:%d: %s", name, line, fmt.Sprintf(format, args...))
}

// ReadMovieLensRatings parses u.data: "user item rating unix-time",
// tab-separated. name is used in error messages. A user rating the same item
// twice is an error, because both would share one event id.
func ReadMovieLensRatings(r io.Reader, name string) ([]Rating, error) {
	sc := bufio.NewScanner(r)
	var out []Rating
	seen := make(map[[2]int32]int)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimRight(sc.Text(), "\r")
		if text == "" {
			continue
		}
		f := strings.Split(text, "\t")
		if len(f) != 4 {
			return nil, lineError(name, line, "%d tab-separated fields, want 4 (user item rating time)", len(f))
		}
		var vals [4]int64
		for i, what := range []string{"user", "item", "rating", "time"} {
			v, err := strconv.ParseInt(f[i], 10, 64)
			if err != nil {
				return nil, lineError(name, line, "%s %q is not an integer", what, f[i])
			}
			vals[i] = v
		}
		switch {
		case vals[0] < 1 || vals[0] > 1<<31-1:
			return nil, lineError(name, line, "user %d out of range", vals[0])
		case vals[1] < 1 || vals[1] > 1<<31-1:
			return nil, lineError(name, line, "item %d out of range", vals[1])
		case vals[2] < 1 || vals[2] > 5:
			return nil, lineError(name, line, "rating %d is not in 1..5", vals[2])
		case vals[3] < 0:
			return nil, lineError(name, line, "time %d is negative", vals[3])
		}
		rt := Rating{User: int32(vals[0]), Item: int32(vals[1]), Value: uint8(vals[2]), Time: vals[3]}
		key := [2]int32{rt.User, rt.Item}
		if prev, dup := seen[key]; dup {
			return nil, lineError(name, line, "user %d already rated item %d on line %d", rt.User, rt.Item, prev)
		}
		seen[key] = line
		out = append(out, rt)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s:%d: %w", name, line+1, err)
	}
	return out, nil
}

// ReadMovieLensMovies parses u.item: "id|title|release date|video release
// date|IMDb URL|19 genre flags". The file is Latin-1; titles are returned as
// UTF-8. name is used in error messages.
func ReadMovieLensMovies(r io.Reader, name string) ([]Movie, error) {
	sc := bufio.NewScanner(r)
	var out []Movie
	seen := make(map[int32]int)
	line := 0
	const fields = 5 + 19
	for sc.Scan() {
		line++
		text := strings.TrimRight(latin1(sc.Bytes()), "\r")
		if text == "" {
			continue
		}
		f := strings.Split(text, "|")
		if len(f) != fields {
			return nil, lineError(name, line, "%d |-separated fields, want %d (id, title, release date, video release date, URL, 19 genre flags)", len(f), fields)
		}
		id, err := strconv.ParseInt(f[0], 10, 32)
		if err != nil || id < 1 {
			return nil, lineError(name, line, "movie id %q is not a positive integer", f[0])
		}
		if prev, dup := seen[int32(id)]; dup {
			return nil, lineError(name, line, "movie id %d already defined on line %d", id, prev)
		}
		seen[int32(id)] = line
		mv := Movie{ID: int32(id), Title: f[1], URL: f[4]}
		if f[2] != "" {
			if mv.Released, err = time.Parse("2-Jan-2006", f[2]); err != nil {
				return nil, lineError(name, line, "release date %q is not like 01-Jan-1995", f[2])
			}
		}
		for g, flag := range f[5:] {
			switch flag {
			case "1":
				mv.Genres = append(mv.Genres, int32(g))
			case "0":
			default:
				return nil, lineError(name, line, "genre flag %d (%s) is %q, want 0 or 1", g+1, MovieLensGenres[g], flag)
			}
		}
		out = append(out, mv)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s:%d: %w", name, line+1, err)
	}
	slices.SortFunc(out, func(a, b Movie) int { return cmpInt64(int64(a.ID), int64(b.ID)) })
	return out, nil
}

// latin1 decodes ISO-8859-1 bytes; valid UTF-8 is kept as is.
func latin1(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	var sb strings.Builder
	sb.Grow(len(b) + 8)
	for _, c := range b {
		sb.WriteRune(rune(c))
	}
	return sb.String()
}

// Catalogue returns the movies as a catalogue: the genres are its categories
// (a movie without genre gets "unknown"), release dates its publish times and
// a shrunk mean rating its quality. It has no latent vectors: use it for
// metadata, not to drive the response model.
func (m *MovieLens) Catalogue() (*Catalogue, error) {
	c := &Catalogue{}
	for _, g := range MovieLensGenres {
		c.Categories = append(c.Categories, Category{Name: g, PeakHour: 21})
	}
	sum := make(map[int32]float64, len(m.Movies))
	cnt := make(map[int32]float64, len(m.Movies))
	for _, r := range m.Ratings {
		sum[r.Item] += float64(r.Value)
		cnt[r.Item]++
	}
	c.Items = make([]Item, len(m.Movies))
	for i, mv := range m.Movies {
		genres := mv.Genres
		if len(genres) == 0 {
			genres = []int32{0}
		}
		// Shrink toward 3 stars with the weight of 10 ratings, so a movie
		// rated once 5 stars is not the best in the catalogue.
		mean := (sum[mv.ID] + 3*10) / (cnt[mv.ID] + 10)
		c.Items[i] = Item{
			ID:         MovieLensItemID(mv.ID),
			Title:      mv.Title,
			Categories: slices.Clone(genres),
			Creator:    -1,
			Published:  mv.Released,
			Quality:    float32((mean - 1) / 4),
		}
	}
	if err := c.index(); err != nil {
		return nil, fmt.Errorf("movielens catalogue: %w", err)
	}
	return c, nil
}

// Events turns every rating into a UserInteractionEvent with action RATE and
// value the rating, at the rating time, in time order (ties by user, then
// item). Event ids are deterministic for the data set: 48 bits of
// milliseconds, 48 bits of a fingerprint of the ratings and a 32-bit
// sequence, the layout of events.NewID. producer defaults to
// DefaultMovieLensProducer.
func (m *MovieLens) Events(producer string) ([]*adaptrecv1.Event, error) {
	if producer == "" {
		producer = DefaultMovieLensProducer
	}
	if len(m.Ratings) > MaxHistoryEvents {
		return nil, errors.New("movielens: more ratings than event ids can number")
	}
	sorted := slices.Clone(m.Ratings)
	slices.SortFunc(sorted, func(a, b Rating) int {
		if a.Time != b.Time {
			return cmpInt64(a.Time, b.Time)
		}
		if a.User != b.User {
			return cmpInt64(int64(a.User), int64(b.User))
		}
		return cmpInt64(int64(a.Item), int64(b.Item))
	})
	// The fingerprint changes with the data, so two different data sets in
	// this format never share event ids.
	key := mix(uint64(len(sorted)))
	for _, r := range sorted {
		key = mix(key, uint64(r.User)<<32|uint64(r.Item), uint64(r.Time)<<8|uint64(r.Value))
	}
	key &= 1<<48 - 1

	slab := make([]eventSlab, len(sorted))
	out := make([]*adaptrecv1.Event, len(sorted))
	ids := make([]byte, 0, 32*len(sorted))
	for i, r := range sorted {
		ids = appendEventID(ids, r.Time*1000, key, uint32(i))
	}
	idStr := string(ids)
	for i, r := range sorted {
		s := &slab[i]
		s.ts.Seconds = r.Time
		s.env.EventId = idStr[32*i : 32*i+32]
		s.env.Type = adaptrecv1.EventType_EVENT_TYPE_INTERACTION
		s.env.SchemaVersion = events.SchemaVersion
		s.env.EventTime = &s.ts
		s.env.Producer = producer
		s.in.UserId = MovieLensUserID(r.User)
		s.in.ItemId = MovieLensItemID(r.Item)
		s.in.Action = adaptrecv1.Action_ACTION_RATE
		s.in.Value = float64(r.Value)
		s.in.Position = -1
		s.wrap.Interaction = &s.in
		s.ev.Envelope = &s.env
		s.ev.Payload = &s.wrap
		out[i] = &s.ev
	}
	return out, nil
}
