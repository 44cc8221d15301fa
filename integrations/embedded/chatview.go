package embedded

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
)

// ChatViewFile is the chat view's file in the store directory.
const ChatViewFile = "chatview.log"

// ChatViews keeps what each execution's conversation was shown and the
// chat view's cursor, in a file beside the event log (the bot's ViewStore).
//
// The file is JSON lines, appended and fsynced one at a time:
//
//	{"cursor": N}                  the cursor moved to N
//	{"id": "<execution>", "r": {…}} an execution's record replaced
//
// Opening reads it whole (the last line may be torn by a crash; it is
// dropped) and rewrites it compacted when most of it is superseded.
type ChatViews struct {
	mu      sync.Mutex
	path    string
	f       *os.File
	cursor  uint64
	records map[string][]byte
	lines   int
}

type chatViewLine struct {
	Cursor *uint64         `json:"cursor,omitempty"`
	ID     string          `json:"id,omitempty"`
	Record json.RawMessage `json:"r,omitempty"`
}

// OpenChatViews opens (or creates) the chat view file in dir. The caller
// holds the directory's store (its lock keeps other processes out).
func OpenChatViews(dir string) (*ChatViews, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("embedded: chat view directory: %w", err)
	}
	c := &ChatViews{path: filepath.Join(dir, ChatViewFile), records: map[string][]byte{}}
	good, err := c.load()
	if err != nil {
		return nil, err
	}
	if c.lines > 1000 && c.lines > 4*len(c.records) {
		if err := c.compact(); err != nil {
			return nil, err
		}
		return c, nil
	}
	f, err := os.OpenFile(c.path, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("embedded: opening the chat view: %w", err)
	}
	// Drop a torn last line before appending after it.
	if err := f.Truncate(good); err != nil {
		f.Close()
		return nil, fmt.Errorf("embedded: chat view: %w", err)
	}
	if _, err := f.Seek(good, io.SeekStart); err != nil {
		f.Close()
		return nil, fmt.Errorf("embedded: chat view: %w", err)
	}
	c.f = f
	return c, nil
}

// load reads the file and returns the length of its intact prefix.
func (c *ChatViews) load() (int64, error) {
	f, err := os.Open(c.path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("embedded: reading the chat view: %w", err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<16)
	var good int64
	for {
		line, err := r.ReadBytes('\n')
		if len(line) == 0 || line[len(line)-1] != '\n' {
			break // end, or a torn last line
		}
		var l chatViewLine
		if json.Unmarshal(bytes.TrimSpace(line), &l) != nil {
			break
		}
		good += int64(len(line))
		c.lines++
		switch {
		case l.Cursor != nil:
			c.cursor = max(c.cursor, *l.Cursor)
		case l.ID != "":
			c.records[l.ID] = append([]byte(nil), l.Record...)
		}
		if err != nil {
			break
		}
	}
	return good, nil
}

// compact rewrites the file with only the live records.
func (c *ChatViews) compact() error {
	tmp := c.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("embedded: compacting the chat view: %w", err)
	}
	w := bufio.NewWriter(f)
	cur := c.cursor
	writeLine(w, chatViewLine{Cursor: &cur})
	for id, r := range c.records {
		writeLine(w, chatViewLine{ID: id, Record: r})
	}
	err = w.Flush()
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		f.Close()
		return fmt.Errorf("embedded: compacting the chat view: %w", err)
	}
	if err := os.Rename(tmp, c.path); err != nil {
		f.Close()
		return fmt.Errorf("embedded: compacting the chat view: %w", err)
	}
	c.f, c.lines = f, 1+len(c.records)
	return nil
}

func writeLine(w io.Writer, l chatViewLine) {
	b, _ := json.Marshal(l)
	_, _ = w.Write(append(b, '\n'))
}

func (c *ChatViews) append(l chatViewLine) error {
	b, err := json.Marshal(l)
	if err != nil {
		return err
	}
	if _, err := c.f.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("embedded: writing the chat view: %w", err)
	}
	if err := c.f.Sync(); err != nil {
		return fmt.Errorf("embedded: syncing the chat view: %w", err)
	}
	c.lines++
	return nil
}

// Cursor returns the saved cursor.
func (c *ChatViews) Cursor(context.Context) (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cursor, nil
}

// SetCursor saves the cursor; it never moves backwards.
func (c *ChatViews) SetCursor(_ context.Context, pos uint64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if pos <= c.cursor {
		return nil
	}
	if err := c.append(chatViewLine{Cursor: &pos}); err != nil {
		return err
	}
	c.cursor = pos
	return nil
}

// Load returns an execution's record, or nil.
func (c *ChatViews) Load(_ context.Context, id string) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.records[id], nil
}

// Save replaces an execution's record durably.
func (c *ChatViews) Save(_ context.Context, id string, record []byte) error {
	if !json.Valid(record) {
		return errors.New("embedded: a chat view record must be JSON")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.append(chatViewLine{ID: id, Record: record}); err != nil {
		return err
	}
	c.records[id] = append([]byte(nil), record...)
	return nil
}

// Close closes the file.
func (c *ChatViews) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.f == nil {
		return nil
	}
	err := c.f.Close()
	c.f = nil
	return err
}
