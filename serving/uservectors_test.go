package serving

import (
	"testing"

	"github.com/adaptrec/adaptrec/trainer/retrieval"
)

// TestStoredUserVector: a model's stored user vector is found by user id
// and handed out in place, without allocating, and a version without
// users.emb, an unknown user and a request without a user id have none.
func TestStoredUserVector(t *testing.T) {
	users, err := retrieval.NewUserVectors([]string{"u-2", "u-1", "u-3"}, []float32{2, 2, 1, 1, 3, 3}, 2)
	if err != nil {
		t.Fatal(err)
	}
	m := &Model{users: users}
	for id, want := range map[string]float32{"u-1": 1, "u-2": 2, "u-3": 3} {
		v := m.storedUserVector(id)
		i, _ := users.Lookup(id)
		if len(v) != 2 || v[0] != want || v[1] != want || &v[0] != &users.Vector(i)[0] {
			t.Errorf("storedUserVector(%q) = %v, want user %d's vector in place", id, v, i)
		}
	}
	for _, id := range []string{"", "u-0", "u-4", "u-10"} {
		if v := m.storedUserVector(id); v != nil {
			t.Errorf("storedUserVector(%q) = %v, want nil", id, v)
		}
	}
	if v := (&Model{}).storedUserVector("u-1"); v != nil {
		t.Errorf("a version without users.emb gave %v", v)
	}
	if a := testing.AllocsPerRun(100, func() { _ = m.storedUserVector("u-3") }); a != 0 {
		t.Errorf("storedUserVector allocates %v times per call", a)
	}
}
