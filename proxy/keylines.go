package proxy

import (
	"strconv"
	"strings"
)

// keyLines maps dotted configuration keys to the line that defines them.
// Keys inside arrays of tables appear twice: with their index
// ("a.b[1].c") and without it ("a.b.c", first occurrence), because
// toml.Key carries no index.
//
// BurntSushi/toml keeps key positions to itself, and a configuration
// mistake is only half reported without its line; locateKeys recovers them
// with a scan that knows just enough TOML to skip strings, comments and
// multi-line values.
type keyLines map[string]int

// find returns the line of key, or of its nearest enclosing key or table
// that has one; 0 if none does.
func (l keyLines) find(key string) int {
	for key != "" {
		if n, ok := l[key]; ok {
			return n
		}
		i := strings.LastIndexAny(key, ".[")
		if i < 0 {
			break
		}
		key = key[:i]
	}
	return 0
}

func (l keyLines) record(key string, line int) {
	if _, ok := l[key]; !ok {
		l[key] = line
	}
}

// locateKeys scans a TOML document for the lines its keys and tables are
// defined on. It never fails: what it cannot make sense of, it skips.
func locateKeys(data []byte) keyLines {
	lines := keyLines{}
	counts := map[string]int{}
	var table, plain string // current table, with and without array indexes
	var sc valueScanner

	for i, line := range strings.Split(string(data), "\n") {
		n := i + 1
		if sc.open() {
			sc.scan(line)
			continue
		}

		t := strings.TrimSpace(line)
		switch {
		case t == "" || t[0] == '#':
		case strings.HasPrefix(t, "[["):
			name := joinKey(splitKey(headerName(t[2:], "]]")))
			table = name + "[" + strconv.Itoa(counts[name]) + "]"
			plain = name
			counts[name]++
			lines.record(table, n)
			lines.record(plain, n)
		case t[0] == '[':
			table = joinKey(splitKey(headerName(t[1:], "]")))
			plain = table
			lines.record(table, n)
		default:
			k, rest, ok := cutKey(t)
			if !ok {
				continue
			}
			key := joinKey(splitKey(k))
			lines.record(joinKey([]string{table, key}), n)
			lines.record(joinKey([]string{plain, key}), n)
			sc.scan(rest)
		}
	}
	return lines
}

// headerName returns the text of a table header up to its closing
// brackets.
func headerName(s, closing string) string {
	if i := strings.Index(s, closing); i >= 0 {
		return s[:i]
	}
	return s
}

// cutKey splits "key = value" at the first '=' outside quotes.
func cutKey(s string) (key, rest string, ok bool) {
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			} else if c == '\\' && quote == '"' {
				i++
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '=':
			return s[:i], s[i+1:], true
		}
	}
	return "", "", false
}

// splitKey splits a dotted key into its parts, unquoting quoted parts.
func splitKey(s string) []string {
	var parts []string
	var cur strings.Builder
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			} else {
				cur.WriteByte(c)
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '.':
			parts = append(parts, strings.TrimSpace(cur.String()))
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	return append(parts, strings.TrimSpace(cur.String()))
}

func joinKey(parts []string) string {
	var b strings.Builder
	for _, p := range parts {
		if p == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(p)
	}
	return b.String()
}

// valueScanner follows a value across lines: it knows whether the scan is
// inside a multi-line string or an open array or inline table.
type valueScanner struct {
	ml    string // the open multi-line string's delimiter, if any
	depth int    // open brackets and braces
}

func (v *valueScanner) open() bool { return v.ml != "" || v.depth > 0 }

func (v *valueScanner) scan(s string) {
	for i := 0; i < len(s); i++ {
		if v.ml != "" {
			j := strings.Index(s[i:], v.ml)
			if j < 0 {
				return
			}
			i += j + len(v.ml) - 1
			v.ml = ""
			continue
		}

		switch c := s[i]; c {
		case '#':
			return
		case '"', '\'':
			delim := strings.Repeat(string(c), 3)
			if strings.HasPrefix(s[i:], delim) {
				v.ml = delim
				i += 2
				continue
			}
			i = skipString(s, i)
		case '[', '{':
			v.depth++
		case ']', '}':
			if v.depth > 0 {
				v.depth--
			}
		}
	}
}

// skipString returns the index of the quote that closes the one-line
// string opened at s[i].
func skipString(s string, i int) int {
	quote := s[i]
	for j := i + 1; j < len(s); j++ {
		switch s[j] {
		case '\\':
			if quote == '"' {
				j++
			}
		case quote:
			return j
		}
	}
	return len(s)
}
