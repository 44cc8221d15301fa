package embedded

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// What was saved survives a reopen; a torn last line (a crash mid-write)
// is dropped and later saves still read back.
func TestChatViewsSurviveReopenAndTornWrite(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	c, err := OpenChatViews(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Save(ctx, "e1", []byte(`{"seq":3}`)); err != nil {
		t.Fatal(err)
	}
	if err := c.SetCursor(ctx, 42); err != nil {
		t.Fatal(err)
	}
	if err := c.SetCursor(ctx, 7); err != nil { // never backwards
		t.Fatal(err)
	}
	c.Close()
	f, err := os.OpenFile(filepath.Join(dir, ChatViewFile), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteString(`{"id":"e1","r":{"seq":`) // torn
	f.Close()

	c, err = OpenChatViews(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := c.Cursor(ctx); got != 42 {
		t.Errorf("cursor = %d, want 42", got)
	}
	if got, _ := c.Load(ctx, "e1"); string(got) != `{"seq":3}` {
		t.Errorf("record = %s", got)
	}
	if err := c.Save(ctx, "e2", []byte(`{"seq":1}`)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	c, err = OpenChatViews(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got, _ := c.Load(ctx, "e2"); string(got) != `{"seq":1}` {
		t.Errorf("record after a torn line = %s", got)
	}
	if got, _ := c.Load(ctx, "nope"); got != nil {
		t.Errorf("unknown record = %s", got)
	}
}

// A file mostly made of superseded records is compacted on open.
func TestChatViewsCompact(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	c, err := OpenChatViews(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 1500; i++ {
		if err := c.Save(ctx, "e1", []byte(`{"seq":`+itoa(i)+`}`)); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()
	before, _ := os.Stat(filepath.Join(dir, ChatViewFile))
	c, err = OpenChatViews(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	after, _ := os.Stat(filepath.Join(dir, ChatViewFile))
	if after.Size() >= before.Size()/10 {
		t.Errorf("not compacted: %d → %d bytes", before.Size(), after.Size())
	}
	if got, _ := c.Load(ctx, "e1"); string(got) != `{"seq":1499}` {
		t.Errorf("record after compaction = %s", got)
	}
	if err := c.Save(ctx, "e2", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	s := ""
	for ; i > 0; i /= 10 {
		s = string(rune('0'+i%10)) + s
	}
	return s
}
