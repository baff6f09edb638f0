// Package swanconf converts a strongSwan swanctl.conf into goipsec's YAML
// configuration, saying line by line what it could not carry over.
//
// The swanctl.conf syntax is strongSwan's settings syntax: sections
// "name { ... }", settings "key = value" (the value runs to the end of the
// line, or is a double-quoted string), comments from "#" to the end of the
// line, and "include PATTERN" at any level, resolved against the including
// file's directory. The parser here is written from that description; it
// shares no code with strongSwan.
package swanconf

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Pos is where a setting or section was written.
type Pos struct {
	File string
	Line int
}

func (p Pos) String() string { return fmt.Sprintf("%s:%d", filepath.Base(p.File), p.Line) }

// Setting is one "key = value".
type Setting struct {
	Key, Value string
	Pos        Pos
}

// Section is a "name { ... }" section; the file itself is the unnamed root.
// Settings and sections keep file order; a key or section written twice is
// merged as strongSwan does (the later value wins, sections merge).
type Section struct {
	Name     string
	Pos      Pos
	Settings []*Setting
	Sections []*Section
	// refs are the sections this one inherits from ("name : ref1, ref2"),
	// as full paths from the root.
	refs []string
}

// Get returns the setting named key, or nil.
func (s *Section) Get(key string) *Setting {
	for _, kv := range s.Settings {
		if kv.Key == key {
			return kv
		}
	}
	return nil
}

// Sub returns the subsection named name, or nil.
func (s *Section) Sub(name string) *Section {
	for _, c := range s.Sections {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func (s *Section) set(kv *Setting) {
	if old := s.Get(kv.Key); old != nil {
		*old = *kv
		return
	}
	s.Settings = append(s.Settings, kv)
}

func (s *Section) sub(name string, pos Pos) *Section {
	if c := s.Sub(name); c != nil {
		return c
	}
	c := &Section{Name: name, Pos: pos}
	s.Sections = append(s.Sections, c)
	return c
}

// maxIncludeDepth bounds nested includes (and include loops).
const maxIncludeDepth = 10

// maxFileSize bounds each file read.
const maxFileSize = 4 << 20

// ParseFile reads and parses the swanctl.conf at path, following includes.
func ParseFile(path string) (*Section, error) {
	root := &Section{Pos: Pos{File: path, Line: 1}}
	if err := parseFile(root, path, 0); err != nil {
		return nil, err
	}
	return root, inherit(root, root, 0)
}

// Parse parses data, the contents of the file named name (used in
// positions and to resolve includes).
func Parse(name string, data []byte) (*Section, error) {
	root := &Section{Pos: Pos{File: name, Line: 1}}
	p := &parser{file: name, src: string(data), line: 1}
	if err := p.parse(root, 0); err != nil {
		return nil, err
	}
	return root, inherit(root, root, 0)
}

func parseFile(into *Section, path string, depth int) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("swanconf: %w", err)
	}
	if fi.Size() > maxFileSize {
		return fmt.Errorf("swanconf: %s: larger than %d bytes", path, maxFileSize)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("swanconf: %w", err)
	}
	p := &parser{file: path, src: string(data), line: 1}
	return p.parse(into, depth)
}

type parser struct {
	file string
	src  string
	off  int
	line int
}

func (p *parser) errorf(format string, args ...any) error {
	return fmt.Errorf("swanconf: %s:%d: %s", filepath.Base(p.file), p.line, fmt.Sprintf(format, args...))
}

func (p *parser) pos() Pos { return Pos{File: p.file, Line: p.line} }

// skipSpace skips blanks, newlines and comments.
func (p *parser) skipSpace() {
	for p.off < len(p.src) {
		switch c := p.src[p.off]; {
		case c == '\n':
			p.line++
			p.off++
		case c == ' ' || c == '\t' || c == '\r':
			p.off++
		case c == '#':
			for p.off < len(p.src) && p.src[p.off] != '\n' {
				p.off++
			}
		default:
			return
		}
	}
}

// skipBlank skips blanks on the current line.
func (p *parser) skipBlank() {
	for p.off < len(p.src) && (p.src[p.off] == ' ' || p.src[p.off] == '\t' || p.src[p.off] == '\r') {
		p.off++
	}
}

func isNameByte(c byte) bool {
	return c > ' ' && c != '{' && c != '}' && c != '=' && c != '#' && c != ':' && c != '"'
}

func (p *parser) name() string {
	start := p.off
	for p.off < len(p.src) && isNameByte(p.src[p.off]) {
		p.off++
	}
	return p.src[start:p.off]
}

// parse reads settings and sections into sec until '}' (depth > 0 inside
// a section) or the end of the file.
func (p *parser) parse(sec *Section, depth int) error {
	return p.body(sec, depth, false)
}

func (p *parser) body(sec *Section, depth int, nested bool) error {
	for {
		p.skipSpace()
		if p.off >= len(p.src) {
			if nested {
				return p.errorf("section %q is not closed with }", sec.Name)
			}
			return nil
		}
		if p.src[p.off] == '}' {
			if !nested {
				return p.errorf("unexpected }")
			}
			p.off++
			return nil
		}
		pos := p.pos()
		name := p.name()
		if name == "" {
			return p.errorf("unexpected %q", p.src[p.off])
		}
		p.skipBlank()
		if name == "include" && p.off < len(p.src) && p.src[p.off] != '=' && p.src[p.off] != '{' && p.src[p.off] != ':' {
			pattern, err := p.value()
			if err != nil {
				return err
			}
			if err := p.include(sec, pattern, depth); err != nil {
				return err
			}
			continue
		}
		if p.off >= len(p.src) {
			return p.errorf("%s: expected = or {", name)
		}
		switch p.src[p.off] {
		case '=':
			p.off++
			p.skipBlank()
			v, err := p.value()
			if err != nil {
				return err
			}
			sec.set(&Setting{Key: name, Value: v, Pos: pos})
		case ':':
			// "name : ref1, ref2 {": the section inherits the settings and
			// sections of others, its own taking precedence.
			p.off++
			start := p.off
			for p.off < len(p.src) && p.src[p.off] != '{' && p.src[p.off] != '\n' {
				p.off++
			}
			if p.off >= len(p.src) || p.src[p.off] != '{' {
				return p.errorf("%s: expected { after the sections it inherits from", name)
			}
			refs := List(p.src[start:p.off])
			p.off++
			sub := sec.sub(name, pos)
			sub.refs = append(sub.refs, refs...)
			if err := p.body(sub, depth, true); err != nil {
				return err
			}
		case '{':
			p.off++
			if err := p.body(sec.sub(name, pos), depth, true); err != nil {
				return err
			}
		default:
			return p.errorf("%s: expected = or {", name)
		}
	}
}

// value reads a value: a quoted string, or the rest of the line up to a
// comment or a closing brace, trimmed.
func (p *parser) value() (string, error) {
	if p.off < len(p.src) && p.src[p.off] == '"' {
		p.off++
		var b strings.Builder
		for {
			if p.off >= len(p.src) {
				return "", p.errorf("unterminated quoted string")
			}
			c := p.src[p.off]
			p.off++
			switch c {
			case '"':
				return b.String(), nil
			case '\n':
				p.line++
			case '\\':
				if p.off < len(p.src) {
					e := p.src[p.off]
					p.off++
					switch e {
					case 'n':
						b.WriteByte('\n')
					case 't':
						b.WriteByte('\t')
					case '\n':
						p.line++ // line continuation
					default:
						b.WriteByte(e)
					}
					continue
				}
			}
			if c != '\\' {
				b.WriteByte(c)
			}
		}
	}
	start := p.off
	for p.off < len(p.src) && p.src[p.off] != '\n' && p.src[p.off] != '#' && p.src[p.off] != '}' {
		p.off++
	}
	return strings.TrimSpace(p.src[start:p.off]), nil
}

func (p *parser) include(sec *Section, pattern string, depth int) error {
	if depth >= maxIncludeDepth {
		return p.errorf("include %s: nested more than %d deep", pattern, maxIncludeDepth)
	}
	if !filepath.IsAbs(pattern) {
		pattern = filepath.Join(filepath.Dir(p.file), pattern)
	}
	files, err := filepath.Glob(pattern)
	if err != nil {
		return p.errorf("include %s: %v", pattern, err)
	}
	sort.Strings(files)
	// As in strongSwan, a pattern that matches nothing is not an error.
	for _, f := range files {
		if err := parseFile(sec, f, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// List splits a comma-separated value into trimmed, non-empty items.
func List(v string) []string {
	var out []string
	for _, it := range strings.Split(v, ",") {
		if it = strings.TrimSpace(it); it != "" {
			out = append(out, it)
		}
	}
	return out
}

// inherit resolves the references of s and the sections below it:
// a section gets the settings and sections it does not have from the
// sections it references, recursively.
func inherit(root, s *Section, depth int) error {
	if depth > maxIncludeDepth {
		return fmt.Errorf("swanconf: %s: section references nested more than %d deep (a loop?)", s.Pos, maxIncludeDepth)
	}
	refs := s.refs
	s.refs = nil
	for _, r := range refs {
		t := root
		for _, name := range strings.Split(r, ".") {
			if t = t.Sub(name); t == nil {
				break
			}
		}
		if t == nil {
			return fmt.Errorf("swanconf: %s: %s: the section %s it inherits from does not exist", s.Pos, s.Name, r)
		}
		if err := inherit(root, t, depth+1); err != nil {
			return err
		}
		merge(s, t)
	}
	for _, c := range s.Sections {
		if err := inherit(root, c, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// merge copies into dst what it does not have of src.
func merge(dst, src *Section) {
	for _, kv := range src.Settings {
		if dst.Get(kv.Key) == nil {
			c := *kv
			dst.Settings = append(dst.Settings, &c)
		}
	}
	for _, sc := range src.Sections {
		d := dst.Sub(sc.Name)
		if d == nil {
			d = &Section{Name: sc.Name, Pos: sc.Pos}
			dst.Sections = append(dst.Sections, d)
		}
		merge(d, sc)
	}
}
