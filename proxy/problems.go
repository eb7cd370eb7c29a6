package proxy

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// Problem is one thing wrong with a configuration.
type Problem struct {
	// Key is the dotted configuration key, such as
	// "metrics_service.keypairs[0].cert_file"; empty for syntax errors.
	Key string `json:"key,omitempty"`
	// Line is the key's line in the file, or 0 when it is not known.
	Line int `json:"line,omitempty"`
	// Msg says what is wrong.
	Msg string `json:"message"`
}

// Problems lists everything wrong with a configuration, so that an operator
// can fix it all in one go. It is the error that Load and New return.
type Problems struct {
	// File is the configuration file's path.
	File string
	// List holds the problems in the order found.
	List []Problem

	lines keyLines
}

// Error returns one line per problem: "file:line: key: message".
func (p *Problems) Error() string {
	var b strings.Builder
	for i, pr := range p.List {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(p.File)
		if pr.Line > 0 {
			b.WriteString(":" + strconv.Itoa(pr.Line))
		}
		b.WriteString(": ")
		if pr.Key != "" {
			b.WriteString(pr.Key + ": ")
		}
		b.WriteString(pr.Msg)
	}
	return b.String()
}

// sort orders the problems by line, those without a line last, so that
// an operator can fix the file from top to bottom.
func (p *Problems) sort() {
	slices.SortStableFunc(p.List, func(a, b Problem) int {
		switch {
		case a.Line == b.Line:
			return 0
		case a.Line == 0:
			return 1
		case b.Line == 0:
			return -1
		}
		return a.Line - b.Line
	})
}

func (p *Problems) add(key, msg string) {
	p.List = append(p.List, Problem{Key: key, Line: p.lines.find(key), Msg: msg})
}

// typeMismatch matches the plain-text errors BurntSushi/toml returns for a
// value of the wrong type; they are not ParseErrors, so the line has to be
// read from the text.
var typeMismatch = regexp.MustCompile(`^toml: line (\d+) \(last key "([^"]*)"\): (.*)$`)

func (p *Problems) addDecodeError(err error) {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		p.List = append(p.List, Problem{Key: pe.LastKey, Line: pe.Position.Line,
			Msg: pe.Message})
		return
	}
	if m := typeMismatch.FindStringSubmatch(err.Error()); m != nil {
		line, _ := strconv.Atoi(m[1])
		p.List = append(p.List, Problem{Key: m[2], Line: line, Msg: m[3]})
		return
	}
	p.List = append(p.List, Problem{Msg: strings.TrimPrefix(err.Error(), "toml: ")})
}

// addUnknownKeys reports every key the file defines that Config does not
// have. It compares spelling exactly: BurntSushi/toml falls back to a
// case-insensitive match, and "CA_certs" quietly filling ca_certs would
// teach operators a spelling that another tool will reject.
func (p *Problems) addUnknownKeys(md toml.MetaData) {
	known := configKeys()
	var reported []string
	for _, k := range md.Keys() {
		name := k.String()
		if known[name] || hasReportedPrefix(reported, name) {
			continue
		}
		reported = append(reported, name)
		p.add(name, "unknown configuration key"+suggest(name, known))
	}
}

func hasReportedPrefix(reported []string, name string) bool {
	for _, r := range reported {
		if strings.HasPrefix(name, r+".") {
			return true
		}
	}
	return false
}

// suggest names the key the operator probably meant, if one is close.
func suggest(name string, known map[string]bool) string {
	parent, leaf := "", name
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		parent, leaf = name[:i+1], name[i+1:]
	}

	best, bestDist := "", 3
	for k := range known {
		kp, kl := "", k
		if i := strings.LastIndexByte(k, '.'); i >= 0 {
			kp, kl = k[:i+1], k[i+1:]
		}
		switch {
		case kp == parent:
			if d := editDistance(strings.ToLower(leaf), kl); d < bestDist ||
				d == bestDist && k < best {
				best, bestDist = k, d
			}
		case kl == leaf && (best == "" || bestDist > 0) && parent == "":
			// A known key placed at the top level instead of in its
			// section.
			best, bestDist = k, 0
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// configKeys returns every dotted key Config accepts, tables included.
// Elements of arrays of tables share their array's path, as toml.Key does.
func configKeys() map[string]bool {
	keys := make(map[string]bool)
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for f := range t.Fields() {
			tag := f.Tag.Get("toml")
			if tag == "" || tag == "-" {
				continue
			}
			name := prefix + tag
			keys[name] = true

			ft := f.Type
			if ft.Kind() == reflect.Slice {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct && ft != reflect.TypeFor[Duration]() {
				walk(ft, name+".")
			}
		}
	}
	walk(reflect.TypeFor[Config](), "")
	return keys
}
