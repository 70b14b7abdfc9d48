package keepalived

import (
	"fmt"
	"strings"
)

// node is one statement: a keyword, its arguments, and the block that
// follows it, if any.
type node struct {
	line     int
	key      string
	args     []string
	children []*node
	block    bool
}

type token struct {
	text string
	line int
	// quoted tokens are never braces.
	quoted bool
}

// maxDepth bounds the nesting of blocks, so that a hostile file cannot
// exhaust the stack.
const maxDepth = 64

// tokenize splits data into tokens; a newline ends a statement, so it is
// returned as a token "\n".
func tokenize(data string) ([]token, error) {
	var toks []token
	line := 1
	for i := 0; i < len(data); {
		c := data[i]
		switch {
		case c == '\n':
			toks = append(toks, token{text: "\n", line: line})
			line++
			i++
		case c == ' ' || c == '\t' || c == '\r':
			i++
		case c == '#' || c == '!':
			for i < len(data) && data[i] != '\n' {
				i++
			}
		case c == '{' || c == '}':
			toks = append(toks, token{text: string(c), line: line})
			i++
		case c == '"':
			j := strings.IndexByte(data[i+1:], '"')
			if j < 0 {
				return nil, fmt.Errorf("%d: a string is not closed", line)
			}
			s := data[i+1 : i+1+j]
			if strings.Contains(s, "\n") {
				return nil, fmt.Errorf("%d: a string runs past the end of the line", line)
			}
			toks = append(toks, token{text: s, line: line, quoted: true})
			i += j + 2
		default:
			j := i
			for j < len(data) && !strings.ContainsRune(" \t\r\n{}#!\"", rune(data[j])) {
				j++
			}
			toks = append(toks, token{text: data[i:j], line: line})
			i = j
		}
	}
	return toks, nil
}

// parse builds the statement tree of data.
func parse(data string) ([]*node, error) {
	toks, err := tokenize(data)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks}
	nodes, err := p.block(0)
	if err != nil {
		return nil, err
	}
	if p.i < len(p.toks) {
		return nil, fmt.Errorf("%d: '}' without a block to close", p.toks[p.i].line)
	}
	return nodes, nil
}

type parser struct {
	toks []token
	i    int
}

// block reads statements until a closing brace (depth > 0) or the end.
func (p *parser) block(depth int) ([]*node, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("%d: blocks nested deeper than %d", p.toks[p.i-1].line, maxDepth)
	}
	var out []*node
	var cur *node
	for p.i < len(p.toks) {
		t := p.toks[p.i]
		switch {
		case t.text == "\n" && !t.quoted:
			cur = nil
			p.i++
		case t.text == "}" && !t.quoted:
			if depth == 0 {
				return out, nil
			}
			p.i++
			return out, nil
		case t.text == "{" && !t.quoted:
			open := t.line
			p.i++
			if cur == nil {
				// A brace on a line of its own belongs to the statement
				// before it (keepalived accepts "real_server A P\n{").
				if len(out) == 0 {
					return nil, fmt.Errorf("%d: a block without a keyword", open)
				}
				cur = out[len(out)-1]
			}
			kids, err := p.block(depth + 1)
			if err != nil {
				return nil, err
			}
			cur.children, cur.block = append(cur.children, kids...), true
			cur = nil
		case cur == nil:
			cur = &node{line: t.line, key: t.text}
			out = append(out, cur)
			p.i++
		default:
			cur.args = append(cur.args, t.text)
			p.i++
		}
	}
	if depth > 0 {
		return nil, fmt.Errorf("%d: a block is not closed at the end of the file", p.toks[len(p.toks)-1].line)
	}
	return out, nil
}
