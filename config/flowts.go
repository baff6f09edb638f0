package config

import (
	"bytes"
	"regexp"
)

// Traffic selectors carry their protocol and port in brackets
// ("10.3.0.0/16[tcp/443]"), and brackets end plain scalars inside YAML flow
// sequences, so strict YAML would need
//
//	remote_ts: [10.2.0.0/16, "10.3.0.0/16[tcp/443]"]
//
// where swanctl.conf users (and INTERFACES.md) write the selector unquoted.
// quoteFlowSelectors accepts the unquoted form: on each line, in the flow
// list that follows a local_ts or remote_ts key, it puts quotes around the
// items shaped like a selector with brackets. Lines, and so line numbers in
// errors, stay as they were. Nothing else is touched: not lists under other
// keys, not lists that continue on the next line, not lines with a quote
// before the key (it might be inside a quoted string), not quoted items or
// comments. YAML's own error for what is left comes with a hint.

var (
	tsKey        = regexp.MustCompile(`(?:^|[\s{,])(?:local_ts|remote_ts)\s*:\s*\[`)
	selectorItem = regexp.MustCompile(`^[0-9A-Za-z.:/%_-]+\[[0-9A-Za-z/%_-]*\]$`)
)

func quoteFlowSelectors(data []byte) []byte {
	if !bytes.Contains(data, []byte("_ts")) {
		return data
	}
	lines := bytes.SplitAfter(data, []byte("\n"))
	changed := false
	for i, line := range lines {
		locs := tsKey.FindAllIndex(line, -1)
		// Rewrite from the last list to the first so that earlier
		// offsets stay valid.
		for j := len(locs) - 1; j >= 0; j-- {
			if bytes.ContainsAny(line[:locs[j][0]], `'"`) {
				continue // perhaps inside a quoted string
			}
			if out, ok := quoteList(line, locs[j][1]); ok {
				line = out
				changed = true
			}
		}
		lines[i] = line
	}
	if !changed {
		return data
	}
	return bytes.Join(lines, nil)
}

// quoteList rewrites the flow list whose first item starts at start (just
// after its '['). It reports false, changing nothing, when the list does not
// close on this line or has no item to quote.
func quoteList(line []byte, start int) ([]byte, bool) {
	type span struct{ from, to int }
	var quote []span
	depth, itemStart := 1, start
	endItem := func(end int) {
		item := bytes.TrimSpace(line[itemStart:end])
		if selectorItem.Match(item) {
			off := bytes.Index(line[itemStart:end], item)
			quote = append(quote, span{itemStart + off, itemStart + off + len(item)})
		}
	}
	for i := start; i < len(line); i++ {
		switch c := line[i]; c {
		case '"', '\'':
			// A quoted item: skip it (with \" escapes in double quotes).
			j := i + 1
			for ; j < len(line) && line[j] != c; j++ {
				if c == '"' && line[j] == '\\' {
					j++
				}
			}
			if j >= len(line) {
				return line, false
			}
			i = j
		case '#':
			if i > 0 && (line[i-1] == ' ' || line[i-1] == '\t') {
				return line, false // a comment before the list closed
			}
		case '[':
			depth++
		case ']':
			if depth--; depth == 0 {
				endItem(i)
				if len(quote) == 0 {
					return line, false
				}
				out := make([]byte, 0, len(line)+2*len(quote))
				prev := 0
				for _, q := range quote {
					out = append(out, line[prev:q.from]...)
					out = append(out, '"')
					out = append(out, line[q.from:q.to]...)
					out = append(out, '"')
					prev = q.to
				}
				return append(out, line[prev:]...), true
			}
		case ',':
			if depth == 1 {
				endItem(i)
				itemStart = i + 1
			}
		}
	}
	return line, false
}
