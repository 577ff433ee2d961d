package sqlsource

import (
	"fmt"
	"strconv"
	"strings"
)

// Dialect names.
const (
	Postgres = "postgres"
	MySQL    = "mysql"
)

// Statement is SKIPPER_MARK_DONE with its {{column}} placeholders turned into bind
// parameters: SQL holds $1..$n (postgres) or ? (mysql), Columns the column for each one.
type Statement struct {
	SQL     string
	Columns []string
}

// Translate turns each {{column}} of text into a bind parameter of dialect. Column values
// are never spliced into SQL: they travel as parameters, so no value can change the
// statement. Placeholders inside quotes or comments, and bind markers the user wrote
// themselves, are rejected because their meaning would be ambiguous.
func Translate(text, dialect string) (Statement, error) {
	parts, cols, err := split(text, dialect)
	if err != nil {
		return Statement{}, err
	}
	var b strings.Builder
	for i, p := range parts {
		b.WriteString(p)
		if i < len(cols) {
			if dialect == Postgres {
				b.WriteString("$" + strconv.Itoa(i+1))
			} else {
				b.WriteString("?")
			}
		}
	}
	return Statement{SQL: b.String(), Columns: cols}, nil
}

// split returns the SQL text around the placeholders (len(parts) == len(cols)+1).
func split(text, dialect string) (parts, cols []string, err error) {
	if dialect != Postgres && dialect != MySQL {
		return nil, nil, fmt.Errorf("unknown SQL dialect %q: use %s or %s", dialect, Postgres, MySQL)
	}
	fail := func(pos int, format string, args ...any) ([]string, []string, error) {
		return nil, nil, fmt.Errorf("SKIPPER_MARK_DONE at byte %d: %s", pos, fmt.Sprintf(format, args...))
	}
	var cur strings.Builder
	i := 0
	for i < len(text) {
		c := text[i]
		switch {
		case c == '{' && strings.HasPrefix(text[i:], "{{"):
			end := strings.Index(text[i+2:], "}}")
			if end < 0 {
				return fail(i, "unclosed {{: write {{column}}")
			}
			name := strings.TrimSpace(text[i+2 : i+2+end])
			if !isIdent(name) {
				return fail(i, "placeholder {{%s}} is not a column name: use letters, digits and _", name)
			}
			parts = append(parts, cur.String())
			cur.Reset()
			cols = append(cols, name)
			i += 2 + end + 2
		case c == '\'' || c == '"' || (c == '`' && dialect == MySQL):
			backslash := dialect == MySQL || (c == '\'' && i > 0 && (text[i-1] == 'E' || text[i-1] == 'e') && (i < 2 || !isIdentByte(text[i-2])))
			j, ok := closeQuote(text, i, c, backslash)
			if !ok {
				return fail(i, "unterminated %c quote: close it", c)
			}
			if strings.Contains(text[i:j], "{{") {
				return fail(i, "placeholder inside quotes: write {{column}} bare, it is bound as a parameter (no quotes needed)")
			}
			cur.WriteString(text[i:j])
			i = j
		case c == '$' && dialect == Postgres:
			if j, ok := dollarQuote(text, i); ok {
				if strings.Contains(text[i:j], "{{") {
					return fail(i, "placeholder inside a dollar-quoted string: write {{column}} outside it")
				}
				cur.WriteString(text[i:j])
				i = j
				continue
			}
			if i+1 < len(text) && text[i+1] >= '0' && text[i+1] <= '9' && (i == 0 || !isIdentByte(text[i-1])) {
				return fail(i, "bind marker $%c written by hand: use {{column}} placeholders only", text[i+1])
			}
			cur.WriteByte(c)
			i++
		case c == '?' && dialect == MySQL:
			return fail(i, "bind marker ? written by hand: use {{column}} placeholders only")
		case c == '-' && strings.HasPrefix(text[i:], "--"), c == '#' && dialect == MySQL:
			j := strings.IndexByte(text[i:], '\n')
			if j < 0 {
				j = len(text) - i
			}
			if strings.Contains(text[i:i+j], "{{") {
				return fail(i, "placeholder inside a comment: move it out or drop it")
			}
			cur.WriteString(text[i : i+j])
			i += j
		case c == '/' && strings.HasPrefix(text[i:], "/*"):
			j := strings.Index(text[i+2:], "*/")
			if j < 0 {
				return fail(i, "unterminated /* comment: close it with */")
			}
			end := i + 2 + j + 2
			if strings.Contains(text[i:end], "{{") {
				return fail(i, "placeholder inside a comment: move it out or drop it")
			}
			cur.WriteString(text[i:end])
			i = end
		default:
			cur.WriteByte(c)
			i++
		}
	}
	parts = append(parts, cur.String())
	return parts, cols, nil
}

// closeQuote returns the index just past the quote that closes the one at text[start].
func closeQuote(text string, start int, q byte, backslash bool) (int, bool) {
	for i := start + 1; i < len(text); i++ {
		switch text[i] {
		case '\\':
			if backslash {
				i++
			}
		case q:
			if i+1 < len(text) && text[i+1] == q { // doubled quote escapes itself
				i++
				continue
			}
			return i + 1, true
		}
	}
	return 0, false
}

// dollarQuote recognises a PostgreSQL $tag$...$tag$ string starting at text[start].
func dollarQuote(text string, start int) (int, bool) {
	if start > 0 && isIdentByte(text[start-1]) {
		return 0, false
	}
	end := strings.IndexByte(text[start+1:], '$')
	if end < 0 {
		return 0, false
	}
	tag := text[start : start+1+end+1]
	inner := tag[1 : len(tag)-1]
	if inner != "" && (!isIdent(inner) || (inner[0] >= '0' && inner[0] <= '9')) {
		return 0, false
	}
	close := strings.Index(text[start+len(tag):], tag)
	if close < 0 {
		return 0, false
	}
	return start + len(tag) + close + len(tag), true
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isIdentByte(s[i]) {
			return false
		}
	}
	return !(s[0] >= '0' && s[0] <= '9')
}

func isIdentByte(c byte) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
}
