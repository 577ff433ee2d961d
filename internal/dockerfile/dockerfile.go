// Package dockerfile reads Dockerfiles into instructions, so tests can check images that
// cannot be built on the test machines (no container engine there).
package dockerfile

import (
	"bufio"
	"fmt"
	"os"
	"strings"
)

// Instruction is one Dockerfile instruction, continuations joined.
type Instruction struct {
	Op   string // upper case, e.g. COPY
	Args string
	Line int // where it starts
}

// Parse reads file, joining "\" continuations and dropping comments and blank lines.
func Parse(file string) ([]Instruction, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("open Dockerfile: %w", err)
	}
	defer f.Close()
	var out []Instruction
	var cur strings.Builder
	start := 0
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue // comments may sit between continuation lines too
		}
		if cur.Len() == 0 {
			start = n
		}
		if strings.HasSuffix(line, "\\") {
			cur.WriteString(strings.TrimSpace(strings.TrimSuffix(line, "\\")) + " ")
			continue
		}
		cur.WriteString(line)
		op, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, Instruction{Op: strings.ToUpper(op), Args: strings.TrimSpace(args), Line: start})
		cur.Reset()
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	if cur.Len() > 0 {
		return nil, fmt.Errorf("%s:%d: the last instruction ends with a continuation", file, start)
	}
	return out, nil
}
