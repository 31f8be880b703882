package events

import (
	"os"
	"strings"
	"testing"
)

// TestDocsListEveryTopic keeps docs/events.md, the one documented list of
// topics, in step with Topics.
func TestDocsListEveryTopic(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../docs/events.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok1 := strings.Cut(string(doc), "<!-- topics:begin -->\n")
	table, _, ok2 := strings.Cut(rest, "<!-- topics:end -->")
	if !ok1 || !ok2 {
		t.Fatal("docs/events.md lacks the topics:begin/end markers")
	}
	if want := TopicsMarkdown(); table != want {
		t.Fatalf("docs/events.md topic table is stale; replace it with:\n%s", want)
	}
}
